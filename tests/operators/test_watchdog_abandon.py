"""The watchdog abandons failed builds nobody resumed past their spec's ``on_failure.abandon_after``
(issue 31) and says so: the build's holdings are deleted through the pipeline's target, its record
reads ``abandoned`` (refusing every later begin), and every recipient of the pipeline's ``notify``
hears ``abandoned`` whatever its ``on`` lists. A failed build younger than the limit, a running or
a delivered one is left alone.

Real: the watchdog operator, a SQLite store, the local target's files, and the webhook notifier
posting to an HTTP sink on loopback."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from airflow_provider_imagebuild.build.status import build_status
from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.spec.pipeline import parse_spec
from airflow_provider_imagebuild.store import open_store
from tests.cli.test_lifecycle_cli import _holding_build
from tests.helpers import task_context
from tests.operators.test_notify import Sink, sink

__all__ = ["sink"]


def test_the_watchdog_abandons_failed_builds_past_abandon_after_and_says_so(
    tmp_path: Path,
    sink: Sink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_imagebuild.dag_factory import build_watchdog_dag
    from airflow_provider_imagebuild.operators.watchdog import WatchdogOperator, Watched

    monkeypatch.setenv(
        "AIRFLOW_CONN_BUILDS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": sink.port})
    )
    url = f"sqlite:///{tmp_path}/state.db"
    work = tmp_path / "work"
    now = datetime.now(timezone.utc)
    old = _holding_build(url, work, "old-1", work / "x" / "checkpoint-010.tar", clock=lambda: now - timedelta(days=8))
    young = _holding_build(
        url, work, "young-1", work / "x" / "checkpoint-010.tar", clock=lambda: now - timedelta(days=2)
    )
    spec = parse_spec(
        {
            "pipeline": "p",
            "cloud": "local",
            "image_type": "base",
            "store": url,
            "target": {"work_dir": str(work), "catalog": str(tmp_path / "cat")},
            "on_failure": {"abandon_after": "7d"},
            "notify": {"on": ["delivered"], "to": [{"webhook": {"http_conn_id": "builds_hook", "endpoint": "/hook"}}]},
        }
    )
    dag = build_watchdog_dag([spec])
    [task] = dag.tasks
    assert isinstance(task, WatchdogOperator) and task.watched[0].abandon_after == timedelta(days=7)
    marked = WatchdogOperator(task_id="w", watched=[Watched("p", url, None, spec.notify, spec)]).execute(
        task_context("-", "w")
    )
    assert marked == {"abandoned": ["old-1"]}
    store = open_store(url)
    rec = store.get("old-1")
    assert build_status(rec) == "abandoned"
    event = next(e for e in rec.events if e.kind == "abandon")
    assert (
        event.actor == "imagebuild_watchdog"
        and "not resumed for 8d" in event.detail
        and "abandon_after: 7d" in event.detail
    )
    assert not any(path.exists() for path in old.values())  # its host, checkpoint and staged image are gone
    assert all(path.exists() for path in young.values())  # failed 2 days ago: kept
    assert build_status(store.get("young-1")) == "failed"
    with pytest.raises(Conflict, match="abandoned"):
        store.begin("old-1", 100, owner="late")
    [(path, body)] = sink.received  # "abandoned" is sent although notify.on lists only delivered
    assert path == "/hook" and body["event"] == "abandoned" and body["build_id"] == "old-1"
    assert "deleted build host" in body["error"]
    again = WatchdogOperator(task_id="w", watched=[Watched("p", url, None, spec.notify, spec)]).execute(
        task_context("-", "w")
    )
    assert again == {} and len(sink.received) == 1  # abandoned once, said once
