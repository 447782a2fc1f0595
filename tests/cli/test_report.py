"""``imagebuild report`` over builds made through the real store (SQLite) with a controlled clock,
so every figure is known: two delivered, one failed, one in progress, one resumed after a failure."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.store import BuildStore, open_store

START = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=2)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def run(store: BuildStore, clock: Clock, build_id: str, code: int, seconds: float, error: str | None = None) -> None:
    lease = store.begin(build_id, code, owner="w/1")
    clock.tick(seconds)
    if error:
        store.fail(build_id, code, token=lease.token, error=error)
    else:
        store.complete(build_id, code, token=lease.token)


def test_report_figures(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    clock = Clock()
    store = open_store(url, clock=clock)
    plan = [0, 5, 10, 100]
    for build_id, five, ten in (("ok-1", 10, 100), ("ok-2", 30, 300)):
        store.create_build(build_id, pipeline="web", cloud="aws", image_type="base", plan=plan)
        run(store, clock, build_id, 5, five)
        run(store, clock, build_id, 10, ten)
        run(store, clock, build_id, 100, 1)
    store.create_build("bad-1", pipeline="web", cloud="aws", image_type="base", plan=plan)
    run(store, clock, "bad-1", 5, 20)
    run(store, clock, "bad-1", 10, 5, error="AccessDenied: not allowed\nmore detail")
    store.create_build("resumed-1", pipeline="web", cloud="aws", image_type="base", plan=plan)
    run(store, clock, "resumed-1", 5, 20)
    run(store, clock, "resumed-1", 10, 5, error="connection reset by peer")
    run(store, clock, "resumed-1", 10, 200)  # the resume: 5 (20 s) was not run again
    run(store, clock, "resumed-1", 100, 1)
    store.create_build("running-1", pipeline="web", cloud="aws", image_type="base", plan=plan)
    store.begin("running-1", 5, owner="w/2")
    store.create_build("other-1", pipeline="db", cloud="aws", image_type="base", plan=plan)

    got = CliRunner().invoke(cli, ["--store", url, "report", "--pipeline", "web", "--json"])
    assert got.exit_code == 0, got.output
    report = json.loads(got.output)
    assert (report["builds"], report["delivered"], report["failed"], report["in_progress"]) == (5, 3, 1, 1)
    assert report["success_rate"] == 0.75
    by_code = {m["code"]: m for m in report["milestones"]}
    assert by_code[5]["runs"] == 4 and by_code[5]["p50_s"] == 20.0 and by_code[5]["failures"] == 0
    assert by_code[10]["failures"] == 2 and by_code[10]["p50_s"] == 200.0 and by_code[10]["p90_s"] == 280.0
    assert {e["error"] for e in by_code[10]["top_errors"]} == {"AccessDenied: not allowed", "connection reset by peer"}
    assert report["most_failing"] == [10] and report["retries_spent"] == 2
    assert report["time_saved_by_resumes_s"] == 20.0  # resumed-1's milestone 5, not run again
    assert sum(report["delivered_per_day"].values()) == 3

    table = CliRunner().invoke(cli, ["--store", url, "report", "--pipeline", "web"])
    assert table.exit_code == 0 and "success rate 75%" in table.output and "2x" not in table.output
    old = CliRunner().invoke(cli, ["--store", url, "report", "--since", "1h", "--json"])
    assert json.loads(old.output)["builds"] == 0  # all created two days ago
    bad = CliRunner().invoke(cli, ["--store", url, "report", "--since", "a month"])
    assert bad.exit_code == 2 and "--since: must be a number of days or hours" in bad.output

    listed = CliRunner().invoke(cli, ["--store", url, "build", "list", "--state", "5", "--image-type", "base",
                                      "--json"])  # fmt: skip
    assert [b["build_id"] for b in json.loads(listed.output)] == ["running-1"]
    recent = CliRunner().invoke(cli, ["--store", url, "build", "list", "--since", "1h", "--json"])
    assert json.loads(recent.output) == []
    shown = json.loads(CliRunner().invoke(cli, ["--store", url, "build", "show", "running-1", "--json"]).output)
    assert shown["eta"] is not None  # from the delivered builds' medians of 5, 10 and 100
    done = json.loads(CliRunner().invoke(cli, ["--store", url, "build", "show", "ok-1", "--json"]).output)
    assert done["eta"] is None
