"""The watchdog applies a pipeline's retention when its spec says ``retention.every`` (issue 31):
once per period (each period's first watchdog run, as ``on_failure.gc``), deleting and recording as
``imagebuild retention --apply`` does, with the watchdog as the actor.

Real: the watchdog operator, a SQLite store, the local target's catalog with stand-in images."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.dag_factory import WATCHDOG_DAG_ID, load_pipelines
from airflow_provider_imagebuild.spec.pipeline import SpecError, TargetSpec, parse_spec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.local import LocalTarget
from tests.cli.test_retention import _deliver
from tests.helpers import task_context


def _watch(spec: Any, url: str, start: datetime) -> dict[str, list[str]]:
    from airflow_provider_imagebuild.operators.watchdog import WatchdogOperator, Watched

    operator = WatchdogOperator(task_id="w", watched=[Watched("p", url, None, None, spec)])
    interval = {"data_interval_start": start, "data_interval_end": start + timedelta(minutes=10)}
    return operator.execute({**task_context("-", "w"), **interval})


def test_the_watchdog_applies_retention_once_per_period_as_the_watchdog(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    target = {"work_dir": str(tmp_path / "work"), "catalog": str(tmp_path / "catalog")}
    spec = parse_spec({"pipeline": "p", "cloud": "local", "image_type": "base", "store": url, "target": target,
                       "retention": {"keep_last": 1, "every": "1d"},
                       "milestones": {95: {"action": "seal"}, 100: {"action": "publish"}}})  # fmt: skip
    local = LocalTarget(TargetSpec(**target), pipeline="p", image_type="base")
    old, newest = _deliver(url, local, "n1"), _deliver(url, local, "n2")

    noon = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)
    assert _watch(spec, url, noon) == {} and old.is_dir()  # not its turn
    midnight = datetime(2026, 12, 5, 23, 55, tzinfo=timezone.utc)
    assert _watch(spec, url, midnight) == {"retired": ["p: 1"]}
    assert not old.exists() and newest.is_dir()
    [event] = [e for e in open_store(url).history("n1") if e["type"] == "event" and e["kind"] == "retire"]
    assert event["actor"] == "imagebuild_watchdog" and event["detail"].startswith(f"retired {old}")
    assert _watch(spec, url, midnight + timedelta(days=1)) == {"retired": ["p: 0"]}


def test_retention_every_is_the_pipelines_and_a_pipeline_with_it_is_watched(tmp_path: Path) -> None:
    base = {"pipeline": "p", "cloud": "local", "image_type": "base"}
    with pytest.raises(SpecError, match=r"retention\.every: .*at least 1h"):
        parse_spec({**base, "retention": {"keep_last": 1, "every": "10m"}})
    with pytest.raises(SpecError, match=r"publish\.0\.retention\.every"):
        parse_spec({**base, "publish": [{"catalog": {}, "retention": {"keep_last": 1, "every": "1d"}}],
                    "milestones": {100: {"action": "publish"}}})  # fmt: skip
    (tmp_path / "p.yaml").write_text("pipeline: p\ncloud: local\nimage_type: base\n"
                                     "retention: {keep_last: 3, every: 1d}\n")  # fmt: skip
    assert WATCHDOG_DAG_ID in load_pipelines(tmp_path, namespace={}, strict=True)
