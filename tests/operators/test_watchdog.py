"""The stuck-build watchdog DAG: real DagBag, real store (SQLite) written with a controlled clock,
the real HTTP notifier posting to a loopback sink. A build whose lease expired and one far past
its milestone's usual time are marked and announced once; a healthy one is left alone."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write
from tests.helpers import task_context
from tests.operators.test_notify import Sink


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_stuck_builds_are_marked_and_announced_once(
    tmp_path: Path, airflow_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    sink = Sink()
    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                               "port": sink.port, "schema": "http"}))  # fmt: skip
    url = f"sqlite:///{tmp_path}/state.db"
    write(
        tmp_path / "pipelines/watched.yaml",
        f"""pipeline: watched
cloud: local
image_type: base
store: {url}
notify: {{on: [stuck], stuck_after: 3, to: [{{webhook: {{http_conn_id: builds_hook}}}}]}}
milestones: {{5: {{action: command, command: "true"}}}}
""",
    )
    now = datetime.now(timezone.utc)
    clock = Clock(now - timedelta(hours=2))
    store = open_store(url, clock=clock)
    plan = [0, 5, 100]
    for i in range(3):  # history: milestone 5 takes 10 s
        store.create_build(f"done-{i}", pipeline="watched", cloud="local", image_type="base", plan=plan)
        for code, seconds in ((5, 10), (100, 1)):
            lease = store.begin(f"done-{i}", code, owner="w/1")
            clock.now += timedelta(seconds=seconds)
            store.complete(f"done-{i}", code, token=lease.token)
    clock.now = now - timedelta(seconds=100)
    for build_id, lease_seconds in (("hung-1", 3600), ("dead-1", 5)):
        store.create_build(build_id, pipeline="watched", cloud="local", image_type="base", plan=plan)
        store.begin(build_id, 5, owner="w/2", lease_seconds=lease_seconds)
    clock.now = now - timedelta(seconds=5)
    store.create_build("fine-1", pipeline="watched", cloud="local", image_type="base", plan=plan)
    store.begin("fine-1", 5, owner="w/3", lease_seconds=3600)

    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    watchdog = bag.dags["imagebuild_watchdog"]
    assert watchdog.timetable.expression == "*/10 * * * *"
    [task] = watchdog.tasks
    marked = task.execute(task_context("-", task.task_id))
    assert sorted(marked["watched"]) == ["dead-1", "hung-1"]
    stuck = {body["build_id"]: body for _, body in sink.received}
    assert set(stuck) == {"dead-1", "hung-1"} and {b["event"] for b in stuck.values()} == {"stuck"}
    assert "lease" in stuck["dead-1"]["error"] and "3 x its p90 of 10 s" in stuck["hung-1"]["error"]
    assert store.get("hung-1").metadata["stuck.5"].startswith("5@1: milestone 5 has run")

    assert task.execute(task_context("-", task.task_id)) == {}  # marked already: not again
    assert len(sink.received) == 2
    sink.close()


def test_one_bad_record_or_store_never_stops_the_watch_of_the_others(
    tmp_path: Path, airflow_home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A record whose lease says it expires "soon", and a pipeline whose store cannot be read, are
    reported (by build id and field, or by pipeline, never with the record's content); the stuck
    build beside them is still marked and announced, and the run fails only afterwards."""
    import logging
    import sqlite3

    from airflow.dag_processing.dagbag import DagBag

    sink = Sink()
    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                               "port": sink.port, "schema": "http"}))  # fmt: skip
    (tmp_path / "not-a-db").write_text("plain text, not SQLite")
    for name, url in (("a-unreadable", f"sqlite:///{tmp_path}/not-a-db"), ("watched", f"sqlite:///{tmp_path}/s.db")):
        write(
            tmp_path / f"pipelines/{name}.yaml",
            f"""pipeline: {name}
cloud: local
image_type: base
store: {url}
notify: {{on: [stuck], to: [{{webhook: {{http_conn_id: builds_hook}}}}]}}
milestones: {{5: {{action: command, command: "true"}}}}
""",
        )
    now = datetime.now(timezone.utc)
    store = open_store(f"sqlite:///{tmp_path}/s.db", clock=Clock(now - timedelta(seconds=100)))
    for build_id in ("bad-1", "dead-1"):
        store.create_build(build_id, pipeline="watched", cloud="local", image_type="base", plan=[0, 5, 100])
        store.begin(build_id, 5, owner="w/2", lease_seconds=5)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE builds SET doc = json_set(doc, '$.lease.expires_at', 'soon') WHERE build_id = 'bad-1'")

    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    [task] = bag.dags["imagebuild_watchdog"].tasks
    with caplog.at_level(logging.INFO), pytest.raises(Exception, match="a-unreadable") as failed:
        task.execute(task_context("-", task.task_id))
    assert "watched" not in str(failed.value)  # only the pipeline that could not be read
    assert [body["build_id"] for _, body in sink.received] == ["dead-1"]
    assert store.get("dead-1").metadata["stuck.5"].startswith("5@1: its lease")
    task_log = caplog.text + "".join(capsys.readouterr())
    assert "bad-1" in task_log and "lease.expires_at" in task_log and "soon" not in task_log
    sink.close()
