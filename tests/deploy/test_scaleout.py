"""Airflow's CeleryExecutor for real: PostgreSQL, Redis, the api-server, scheduler and
dag-processor, and two Celery workers as separate processes on loopback (tests/servers/scaleout.py),
with the DynamoDB state store on dynalite through the ``imagebuild_state`` connection, as
docker-compose.yaml wires it. One worker is SIGKILLed while it runs a milestone: Airflow finds
the task lost and runs it again on the other worker (Celery redelivers the unacknowledged task, or
the scheduler's heartbeat timeout fails it and a retry follows; either way the store lets it take
the lease), and every build is delivered with exactly one completed attempt per milestone.

Real: everything above. Nothing is faked; the pipeline's milestones are shell commands (they
append a marker per run to a file, so that runs are counted, and sleep as real work would).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import psutil
import pytest

from airflow_provider_imagebuild.store import open_store
from tests.conftest import unique
from tests.dags.conftest import write
from tests.servers.scaleout import celery_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "imagebuild_scaleout_cmd"
BUILDS = [f"so-{i}" for i in range(4)]
SLOW = 10  # the milestone a worker dies in


def spec(marks: Path) -> str:
    step = "echo $BUILD_ID:$STATE:$(date +%s.%N) >> " + str(marks) + "; sleep {s}"
    return f"""pipeline: scaleout-cmd
cloud: local
image_type: t
defaults: {{retries: 2, retry_delay: 2, lease_seconds: 10}}
milestones:
  5: {{action: command, command: "{step.format(s=1)}"}}
  {SLOW}: {{action: command, command: "{step.format(s=15)}"}}
  15: {{action: command, command: "{step.format(s=1)}"}}
  100: {{action: command, command: "{step.format(s=0)}"}}
"""


def running_in(worker: psutil.Process, pattern: str) -> bool:
    """Whether a process of the worker's tree runs ``pattern`` (exited and zombie ones skipped)."""
    for proc in [worker, *worker.children(recursive=True)]:
        try:
            if pattern in " ".join(proc.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def test_two_celery_workers_deliver_builds_and_survive_a_killed_worker(tmp_path: Path, dynalite_url: str) -> None:
    marks = tmp_path / "marks"
    pipelines = tmp_path / "pipelines"
    write(pipelines / "scaleout.yaml", spec(marks))
    store_url = f"dynamodb://{unique('scaleout')}?region=us-east-1&endpoint_url={dynalite_url}"
    store = open_store(store_url)
    store.init()
    env = {
        "AIRFLOW_CONN_IMAGEBUILD_DEFAULT": json.dumps(
            {"conn_type": "imagebuild_state", "extra": {"store_url": store_url, "aws_conn_id": "aws_state_store"}}
        ),
        "AIRFLOW_CONN_AWS_STATE_STORE": json.dumps(
            {"conn_type": "aws", "login": "local", "password": "local", "extra": {"region_name": "us-east-1"}}
        ),
        "IMAGEBUILD_STORE_CONN_ID": "imagebuild_default",
        # How soon a task whose worker died is found: no heartbeat for 20 s, looked for every 5 s.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }
    with celery_cluster(tmp_path / "cluster", pipelines, workers=2, extra_env=env) as cluster:
        airflow = cluster.airflow
        airflow.wait_for_dag(DAG_ID)
        runs = {build: airflow.trigger(DAG_ID, {"build_id": build}) for build in BUILDS}

        # Kill the worker that runs the slow milestone of some build (its sleep is in the worker's tree).
        deadline, victim = time.monotonic() + 180, None
        while victim is None and time.monotonic() < deadline:
            for name in ("worker1", "worker2"):
                if running_in(psutil.Process(cluster.procs[name].pid), "sleep 15"):
                    victim = name
                    break
            time.sleep(0.5)
        assert victim, f"no worker ran milestone {SLOW}; see {cluster.home}"
        # The machine dies: the worker and every process under it (the task runner puts the task
        # in a session of its own, so the worker's process group alone would leave it running).
        worker = psutil.Process(cluster.procs[victim].pid)
        tree = [worker, *worker.children(recursive=True)]
        killed_at = time.time()
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        cluster.procs.pop(victim).wait(30)

        states = {b: airflow.wait_for_run(DAG_ID, r, {"success", "failed"}, timeout=600) for b, r in runs.items()}
    assert set(states.values()) == {"success"}, states

    runs_of: dict[str, list[float]] = {}
    for line in marks.read_text().split():
        build, code, at = line.split(":")
        runs_of.setdefault(f"{build}:{code}", []).append(float(at))
    twice = {key: at for key, at in runs_of.items() if len(at) > 1}
    # Only what the killed worker was running ran again: milestone SLOW of one or two builds.
    assert twice and all(key.endswith(f":{SLOW}") for key in twice), runs_of
    for build in BUILDS:
        rec = store.get(build)
        assert rec.delivered, build
        for code in rec.plan:
            attempts = rec.attempts_at(code)
            done = [a for a in attempts if a.status == "completed"]
            assert len(done) == 1, (build, code, [(a.attempt, a.status, a.owner) for a in attempts])
            assert all(a.status in ("completed", "abandoned", "failed") for a in attempts), attempts
    again = min(max(at) for at in twice.values())
    print(f"\nmilestone {SLOW} ran again {again - killed_at:.1f} s after its worker was SIGKILLed ({sorted(twice)})")
