"""Airflow's CeleryExecutor for real: PostgreSQL, Redis, the api-server, scheduler and
dag-processor, and two Celery workers as separate processes on loopback (tests/servers/scaleout.py),
with the DynamoDB state store on dynalite through the ``imagebuild_state`` connection, as
docker-compose.yaml wires it. Four builds run at once; one worker is SIGKILLed with every process
under it while it runs a milestone: Airflow finds the task lost (no heartbeat) and runs it again on
the other worker, which takes over the build's lease, and every build is delivered with exactly
one completed attempt per milestone. The shortened form of ``make scaleout``
(benchmarks/scaleout_bench.py), which adds the local pipeline, a scheduler restart, a Redis outage
and a build triggered twice.

Real: everything above. Nothing is faked; the pipeline's milestones are shell commands (they
append a marker per run to a file, so that runs are counted, and sleep as real work would).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.conftest import unique
from tests.dags.conftest import write
from tests.servers.scaleout import (
    celery_cluster,
    command_pipeline,
    mark_problems,
    read_marks,
    store_env,
    store_problems,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAG_ID = "imagebuild_scaleout_cmd"
BUILDS = [f"so-{i}" for i in range(4)]
SLOW = 10  # the milestone a worker dies in
SLEEPS = {5: 1, SLOW: 15, 15: 1, 100: 0}
# How soon a task whose worker died is found: no heartbeat for 20 s, looked for every 5 s.
DETECTION = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # A task the killed worker had taken from the queue but not started (Celery's prefetch, acked
    # late) stays queued until Redis redelivers it, hours later: the scheduler requeues a task queued
    # this long instead (default 600 s, as long as the test's wait).
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
}


def test_two_celery_workers_deliver_builds_and_survive_a_killed_worker(tmp_path: Path, dynalite_url: str) -> None:
    marks = tmp_path / "marks"
    pipelines = tmp_path / "pipelines"
    write(pipelines / "scaleout.yaml", command_pipeline("scaleout-cmd", marks, SLEEPS, max_active_runs=len(BUILDS)))
    store_url = f"dynamodb://{unique('scaleout')}?region=us-east-1&endpoint_url={dynalite_url}"
    store = open_store(store_url)
    store.init()
    env = {**store_env(store_url), **DETECTION}
    with celery_cluster(tmp_path / "cluster", pipelines, workers=2, extra_env=env) as cluster:
        airflow = cluster.airflow
        airflow.wait_for_dag(DAG_ID)
        runs = {build: airflow.trigger(DAG_ID, {"build_id": build}) for build in BUILDS}

        deadline, victim = time.monotonic() + 180, None
        while victim is None and time.monotonic() < deadline:
            victim = cluster.running(f"sleep {SLEEPS[SLOW]}", ("worker1", "worker2"))
            time.sleep(0.5)
        assert victim, f"no worker ran milestone {SLOW}; see {cluster.home}"
        killed_at = cluster.kill_machine(victim)

        states = {b: airflow.wait_for_run(DAG_ID, r, {"success", "failed"}, timeout=600) for b, r in runs.items()}
    assert set(states.values()) == {"success"}, states

    found = read_marks(marks)
    assert not mark_problems(found, victim, killed_at) + store_problems(store, BUILDS, killed_at)
    cut = {m.build for m in found if (m.code, m.worker) == (SLOW, victim) and m.at < killed_at}
    again = [m for m in found if m.code == SLOW and m.build in cut and m.at > killed_at]
    # What the killed worker was running ran again, on the other worker.
    assert cut and again and victim not in {m.worker for m in again}, (cut, again)
    print(f"\nmilestone {SLOW} ran again {min(m.at for m in again) - killed_at:.1f} s after its worker was SIGKILLed")
