"""The real scheduler: ``airflow standalone`` started by the test, driven through the REST API.

What an operator does in the UI: a run fails at a milestone, the failed task is cleared, the run
succeeds, and nothing completed is executed again; a task process killed outright is retried
and its attempt is recorded as abandoned.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.servers.standalone import Airflow, Deployment

COUNT = 'echo "$STATE" >> "$COUNTER"'


def _pipeline(name: str, store_url: str, tmp: Path, milestones: dict[int, str], retries: int = 0) -> str:
    lines = [
        f"pipeline: {name}",
        "cloud: local",
        "image_type: base",
        "schedule: null",
        f"store: {store_url}",
        f"defaults: {{retries: {retries}, retry_delay: 1, lease_seconds: 6}}",
        "milestones:",
    ]
    for code, command in milestones.items():
        lines.append(
            f"  {code}: {{action: command, command: {command!r}, "
            f"env: {{COUNTER: '{tmp}/{name}.count', MARK: '{tmp}/{name}.mark', PIDS: '{tmp}/{name}.pids'}}}}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def scheduler(shared_standalone: Deployment) -> tuple[Airflow, BuildStore, Path]:
    """Three command pipelines on the session's shared standalone (one store for the deployment)."""
    tmp = shared_standalone.folder / "scheduler"
    tmp.mkdir()
    store_url = shared_standalone.store_url
    fail_once = f'if [ ! -e "$MARK" ]; then touch "$MARK"; echo "nfs mount failed" >&2; exit 1; fi; {COUNT}'
    clear = {5: COUNT, 10: COUNT, 15: COUNT, 45: fail_once, 50: COUNT, 95: COUNT}
    shared_standalone.add_pipeline("clear", _pipeline("clear-demo", store_url, tmp, clear))
    hang_once = f'if [ ! -e "$MARK" ]; then touch "$MARK"; echo $PPID >> "$PIDS"; exec sleep 600; fi; {COUNT}'
    kill = {5: COUNT, 15: hang_once, 20: COUNT}
    shared_standalone.add_pipeline("kill", _pipeline("kill-demo", store_url, tmp, kill, retries=2))
    shared_standalone.add_pipeline("ui", _pipeline("ui-demo", store_url, tmp, {5: COUNT, 15: COUNT, 45: COUNT}))
    return shared_standalone.airflow, open_store(store_url), tmp


def _counts(path: Path) -> Counter[int]:
    return Counter(int(x) for x in path.read_text().split()) if path.exists() else Counter()


@pytest.mark.slow
def test_clearing_the_failed_task_resumes_there(scheduler: tuple[Airflow, BuildStore, Path]) -> None:
    airflow, store, tmp = scheduler
    dag_id = "imagebuild_clear_demo"
    airflow.wait_for_dag(dag_id)
    run_id = airflow.trigger(dag_id, {"build_id": "sched-clear-1"})
    assert airflow.wait_for_run(dag_id, run_id, {"failed", "success"}) == "failed"
    states = airflow.task_states(dag_id, run_id)
    assert states["s045_storage"] == "failed"
    assert states["s050_users"] == "upstream_failed"
    rec = store.get("sched-clear-1")
    assert (rec.current_state, rec.status, rec.completed) == (45, "failed", [0, 5, 10, 15])

    cleared = airflow.clear_failed(dag_id, run_id, ["s045_storage"])
    assert {ti["task_id"] for ti in cleared["task_instances"]} >= {"s045_storage", "s050_users"}
    assert airflow.wait_for_run(dag_id, run_id, {"failed", "success"}) == "success"
    counts = _counts(tmp / "clear-demo.count")
    assert counts == Counter({5: 1, 10: 1, 15: 1, 45: 1, 50: 1, 95: 1})
    rec = store.get("sched-clear-1")
    assert rec.delivered
    assert [a.status for a in rec.attempts_at(45)] == ["failed", "completed"]
    assert all(len(rec.attempts_at(c)) == 1 for c in (5, 10, 15, 50, 95))


@pytest.mark.slow
def test_killed_task_is_retried_and_its_attempt_abandoned(scheduler: tuple[Airflow, BuildStore, Path]) -> None:
    airflow, store, tmp = scheduler
    dag_id = "imagebuild_kill_demo"
    airflow.wait_for_dag(dag_id)
    run_id = airflow.trigger(dag_id, {"build_id": "sched-kill-1"})
    pids = tmp / "kill-demo.pids"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not pids.exists():
        time.sleep(0.5)
    assert pids.exists(), "milestone 15 never started"
    task_pid = int(pids.read_text().split()[0])  # the task process that runs the command
    os.kill(task_pid, signal.SIGKILL)
    assert airflow.wait_for_run(dag_id, run_id, {"failed", "success"}) == "success"
    rec = store.get("sched-kill-1")
    assert rec.delivered
    attempts = rec.attempts_at(15)
    assert [a.status for a in attempts] == ["abandoned", "completed"], attempts
    assert "try-1" in attempts[0].owner and "try-2" in attempts[1].owner
    assert _counts(tmp / "kill-demo.count") == Counter({5: 1, 15: 1, 20: 1})


@pytest.mark.slow
def test_the_image_builds_api_reads_and_acts_with_airflows_permissions(
    scheduler: tuple[Airflow, BuildStore, Path],
) -> None:
    """The plugin's JSON API on the real API server: Airflow authenticates the caller (bearer
    token), its auth manager decides (a viewer reads, an admin acts), every action is recorded
    with the user's name, and redo resets the build and triggers a run that delivers it again."""
    airflow, store, tmp = scheduler
    dag_id = "imagebuild_ui_demo"
    airflow.wait_for_dag(dag_id)
    run_id = airflow.trigger(dag_id, {"build_id": "ui-1"})
    assert airflow.wait_for_run(dag_id, run_id, {"failed", "success"}) == "success"
    anonymous, viewer, admin = (airflow.as_user(u) for u in (None, "viewer", "admin"))

    assert anonymous.get("/imagebuild/api/builds").status_code == 401
    listed = viewer.get("/imagebuild/api/builds", params={"pipeline": "ui-demo", "status": "completed", "state": 100})
    assert listed.status_code == 200, listed.text
    row = next(b for b in listed.json()["builds"] if b["build_id"] == "ui-1")
    assert (row["current_state"], row["status"], row["delivered"], row["dag_id"]) == (100, "completed", True, dag_id)
    assert row["progress"] == {"done": 5, "total": 5, "skipped": 0} and row["current_title"] == "Image delivered"
    assert viewer.get("/imagebuild/api/builds", params={"limit": 0}).status_code == 422
    shown = viewer.get("/imagebuild/api/builds/ui-1").json()
    assert shown["delivered"] and shown["may_act"] is False and shown["completed"] == [0, 5, 15, 45, 100]
    assert viewer.get("/imagebuild/api/builds/nope").status_code == 404
    version = store.get("ui-1").version
    refused = viewer.post("/imagebuild/api/builds/ui-1/reset", json={"to": 15, "reason": "try"})
    assert refused.status_code == 403 and store.get("ui-1").version == version

    assert admin.post("/imagebuild/api/builds/ui-1/reset", json={"to": 15}).status_code == 422
    assert admin.post("/imagebuild/api/builds/ui-1/reset", json={"to": 15, "reason": ""}).status_code == 422
    assert admin.post("/imagebuild/api/builds/nope/reset", json={"to": 15, "reason": "x"}).status_code == 404
    reset = admin.post("/imagebuild/api/builds/ui-1/reset", json={"to": 15, "reason": "disk image was wrong"})
    assert reset.status_code == 200, reset.text
    assert reset.json()["next_state"] == 15
    skipped = admin.post("/imagebuild/api/builds/ui-1/skip", json={"state": 15, "reason": "checked by hand"})
    assert skipped.status_code == 200 and skipped.json()["next_state"] == 45
    again = admin.post("/imagebuild/api/builds/ui-1/skip", json={"state": 15, "reason": "again"})
    assert again.status_code == 409
    redo = admin.post("/imagebuild/api/builds/ui-1/redo", json={"from": 15, "reason": "rebuild with the fix"})
    assert redo.status_code == 200, redo.text
    assert airflow.wait_for_run(dag_id, redo.json()["dag_run_id"], {"failed", "success"}) == "success"
    rec = store.get("ui-1")
    assert rec.delivered and not rec.skipped
    events = [(e.kind, e.actor, e.detail) for e in rec.events if e.kind in ("reset", "skip")]
    assert [(k, a) for k, a, _ in events] == [("reset", "admin (ui)"), ("skip", "admin (ui)"), ("reset", "admin (ui)")]
    assert "disk image was wrong" in events[0][2] and "redo from 15: rebuild with the fix" in events[2][2]
    counts = _counts(tmp / "ui-demo.count")
    assert counts == Counter({5: 1, 15: 2, 45: 2})  # 15 ran again after the redo; 5 never did
