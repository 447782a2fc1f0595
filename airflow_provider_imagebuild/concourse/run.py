"""One milestone of a spec, run outside Airflow: what a Concourse step (or any shell job) calls.

``imagebuild milestone run SPEC MILESTONE --build-id ID`` builds the spec's DAG with the same factory
the DAG file uses and executes that milestone's task in this process, so a step does exactly what
the Airflow task does: the skip of a milestone already reached, the lease (begin, heartbeats,
take-over of an expired one), the action through the same target code (build host launch or
reconnect, replays, checkpoints, Packer, Ansible, seal, publish), and complete or fail recorded
in the store. Nothing of Airflow's scheduler or metadata database is used: the task gets a small
context of its own (who runs it: ``concourse/<pipeline>/<task>/try-<n>``).

SIGTERM (Concourse aborting the step, or a timeout) stops the running tool the way Airflow's
``on_kill`` does, and the attempt is recorded as failed.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from airflow_provider_imagebuild.build.ids import check_build_id
from airflow_provider_imagebuild.errors import InvalidInput


@dataclass
class StandaloneTaskInstance:
    """The parts of Airflow's task instance a milestone operator reads."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int
    pushed: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


@dataclass
class StandaloneDagRun:
    conf: dict[str, Any]
    run_id: str


def standalone_context(engine: str, build_id: str, task_id: str, try_number: int = 1) -> dict[str, Any]:
    """A task context for running a milestone operator outside Airflow (``engine`` names who
    runs it in the lease owner, as Airflow's owner names the DAG run)."""
    ti = StandaloneTaskInstance(engine, build_id, task_id, try_number)
    return {"ti": ti, "dag_run": StandaloneDagRun({"build_id": build_id}, build_id)}


def milestone_task(spec_path: Path, state: int) -> Any:
    """The task of milestone ``state`` in the spec's DAG (as the DAG file builds it)."""
    from airflow_provider_imagebuild.dag_factory import build_dag
    from airflow_provider_imagebuild.spec.pipeline import load_spec

    spec = load_spec(spec_path)
    dag = build_dag(spec, spec_path.parent)
    for task in dag.tasks:
        if getattr(task, "state", None) == state:
            return task
    raise InvalidInput("MILESTONE", f"milestone {state} is not in the plan of {spec_path} ({spec.pipeline})")


def run_milestone(spec_path: Path, state: int, build_id: str, *, engine: str, try_number: int = 1) -> dict[str, Any]:
    """Run one milestone's task to its end; its outputs (raises as the task would)."""
    check_build_id(build_id, "--build-id")
    task = milestone_task(spec_path, state)
    context = standalone_context(engine, build_id, task.task_id, try_number)

    def stop(signum: int, frame: FrameType | None) -> None:
        task.on_kill()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        # The task's work without Airflow's guard against execute() outside its Task Runner (it
        # would warn on every step): there is no Task Runner here, by design.
        outputs: dict[str, Any] = task.execute_milestone(context)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return outputs
