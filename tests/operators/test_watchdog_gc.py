"""The watchdog runs the leak collector for a pipeline whose spec says ``on_failure.gc`` (issue 31):
once per ``every`` (each period's first watchdog run), a dry run unless ``apply``; what it found
goes to every notify recipient as ``leaks`` (a pipeline's event), whatever ``notify.on`` lists.

Real: the watchdog operator, a SQLite store, the local target's files under its work root, and the
webhook notifier posting to an HTTP sink on loopback; the collector's clock runs an hour ahead
(:func:`tests.helpers.gc_minutes_later`), so the planted folder is old enough to be a leak."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.local_leaks import mark_build_folder
from airflow_provider_imagebuild.watchdog import gc_due
from tests.helpers import gc_minutes_later, task_context
from tests.operators.test_notify import Sink, sink

__all__ = ["sink"]


def _spec(url: str, work: Path, tmp_path: Path, gc: dict[str, Any]) -> Any:
    return parse_spec({
        "pipeline": "p", "cloud": "local", "image_type": "base", "store": url,
        "target": {"work_dir": str(work), "catalog": str(tmp_path / "cat")},
        "on_failure": {"gc": gc},
        "notify": {"on": ["delivered"], "to": [{"webhook": {"http_conn_id": "builds_hook", "endpoint": "/hook"}}]},
    })  # fmt: skip


def _watch(spec: Any, url: str, **context: Any) -> dict[str, list[str]]:
    from airflow_provider_imagebuild.operators.watchdog import WatchdogOperator, Watched

    operator = WatchdogOperator(task_id="w", watched=[Watched("p", url, None, spec.notify, spec)])
    return operator.execute({**task_context("-", "w"), **context})


def test_the_watchdog_reports_leaks_on_its_schedule_and_deletes_them_only_when_asked(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_BUILDS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": sink.port})
    )
    url, work = f"sqlite:///{tmp_path}/state.db", tmp_path / "work"
    store = open_store(url)
    store.create_build("known-1", pipeline="p", cloud="local", image_type="base", plan=[0, 10, 100])
    mark_build_folder(work / "known-1", "p", "known-1")
    (work / "known-1/rootfs").mkdir()
    lease = store.begin("known-1", 10, owner="w")
    store.set_metadata("known-1", {"host_id": str(work / "known-1/rootfs")}, token=lease.token, state=10)
    store.fail("known-1", 10, token=lease.token, error="boom")  # its recorded host: what a resume starts from
    lost = work / "lost-1"
    mark_build_folder(lost, "p", "lost-1")
    (lost / "rootfs").mkdir()
    (lost / "checkpoint-010.tar").write_bytes(b"tar")
    gc_minutes_later(monkeypatch, 60)

    daily = _spec(url, work, tmp_path, {"every": "1d", "older_than": "30m"})
    noon = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    assert _watch(daily, url, data_interval_start=noon, data_interval_end=noon + timedelta(minutes=10)) == {}
    assert sink.received == []  # not its turn: nothing collected, nothing said

    dry = _spec(url, work, tmp_path, {"every": "10m", "older_than": "30m"})
    assert _watch(dry, url) == {"leaks": ["p: 2"]}
    [(path, notice)] = sink.received
    assert path == "/hook" and notice["event"] == "leaks" and notice["pipeline"] == "p" and notice["build_id"] == ""
    assert (
        notice["error"].startswith("2 leaked resource(s) older than 30m")
        and "dry run, nothing deleted" in notice["error"]
    )
    assert (
        f"host {lost / 'rootfs'} (unknown to the store" in notice["error"]
        and "builds?pipeline=p" in notice["build_page"]
    )
    assert (lost / "rootfs").is_dir() and (lost / "checkpoint-010.tar").is_file()

    applied = _spec(url, work, tmp_path, {"every": "10m", "older_than": "30m", "apply": True})
    assert _watch(applied, url) == {"leaks": ["p: 2"]}
    assert "; deleted 2:" in sink.received[-1][1]["error"]
    assert not lost.exists() and (work / "known-1/rootfs").is_dir()
    assert _watch(applied, url) == {"leaks": ["p: 0"]} and len(sink.received) == 2  # nothing left: nothing said


def test_gc_is_due_once_per_period_and_its_settings_are_checked() -> None:
    six = timedelta(hours=6)
    at = datetime(2026, 12, 5, 5, 55, tzinfo=timezone.utc)
    assert gc_due(six, at, at + timedelta(minutes=10))  # 06:00 falls in this run's interval
    assert not gc_due(six, at + timedelta(minutes=10), at + timedelta(minutes=20))
    base = {"pipeline": "p", "cloud": "local", "image_type": "base"}
    for gc, key in (({"every": "5m"}, "every"), ({"older_than": "1m"}, "older_than"), ({"every": "soon"}, "every")):
        with pytest.raises(SpecError, match=rf"on_failure\.gc\.{key}"):
            parse_spec({**base, "on_failure": {"gc": gc}})
