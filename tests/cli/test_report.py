"""``imagebuild report`` over builds made through the real store (SQLite) with a controlled clock,
so every figure is known: two delivered, one failed, one in progress, one resumed after a failure."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

import pytest
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


class Use(Protocol):
    def __call__(self, build_id: str, code: int, hours: float, error: str | None = None, **more: float) -> None: ...


def _priced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cost: str) -> tuple[str, BuildStore, Use]:
    """A store on a test clock, the pipeline ``web``'s spec with that ``cost:`` block, and ``used``:
    one attempt of ``hours`` on a t3.micro (failed with ``error``; a completed 10 keeps a checkpoint)."""
    url = f"sqlite:///{tmp_path}/s.db"
    clock = Clock()
    store = open_store(url, clock=clock)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines/web.yaml").write_text(f"pipeline: web\ncloud: aws\nimage_type: base\ncost: {cost}\n")
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))

    def used(build_id: str, code: int, hours: float, error: str | None = None, **more: float) -> None:
        lease = store.begin(build_id, code, owner="w/1")
        clock.tick(hours * 3600)
        usage = {"host_size": "t3.micro", "host_hours": hours, **more}
        if error:
            store.fail(build_id, code, token=lease.token, error=error, usage=usage)
        else:
            store.complete(build_id, code, token=lease.token, usage=usage,
                           outputs={"checkpoint_image": f"ami-{build_id}"} if code == 10 else None)  # fmt: skip

    return url, store, used


def test_report_costs_builds_milestones_failures_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 31: priced with the pipeline's spec's cost: block where it has one (web), the cloud's
    example prices where not (db); every figure worked out by hand."""
    url, store, used = _priced(
        tmp_path, monkeypatch, "{host_per_hour: {t3.micro: 1.0}, storage_gb_month: 0, transfer_gb: 0.5}"
    )

    plan = [0, 5, 10, 100]
    store.create_build("c-1", pipeline="web", cloud="aws", image_type="base", plan=plan)
    used("c-1", 5, 0.5)
    used("c-1", 10, 0.25, error="connection reset by peer")
    used("c-1", 10, 1.0)  # the resume: 5 is not run again
    used("c-1", 100, 0.0, transfer_gb=2)
    store.create_build("c-2", pipeline="db", cloud="aws", image_type="base", plan=plan)
    used("c-2", 5, 1.0)  # no cost: block: aws's example t3.micro price

    got = CliRunner().invoke(cli, ["--store", url, "report", "--json"])
    assert got.exit_code == 0, got.output
    report = json.loads(got.output)
    cost = report["cost"]
    assert cost["per_build"] == {"c-1": 2.75, "c-2": 0.0104} and cost["total"] == 2.7604
    assert cost["prices"] == {"db": "example", "web": "spec"} and cost["currency"] == "USD"
    assert cost["unmetered_attempts"] == 0
    assert report["cost_of_failures"] == 0.25  # c-1's failed attempt at 10
    assert report["cost_saved_by_resumes"] == 0.5  # c-1's milestone 5, which a rerun would repeat
    by_code = {m["code"]: m for m in report["milestones"]}
    assert (by_code[10]["cost_p50"], by_code[100]["cost_p50"]) == (1.25, 1.0)
    assert (by_code[5]["cost_p50"], by_code[5]["cost_p90"]) == (0.2552, 0.45104)  # 0.0104 and 0.5

    table = CliRunner().invoke(cli, ["--store", url, "report"])
    assert table.exit_code == 0, table.output
    assert "cost 2.76 USD" in table.output and "failures cost 0.2500 USD; resumes saved 0.5000 USD" in table.output


def test_a_reused_milestone_costs_nothing_and_says_what_reuse_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#32: r-2 took milestones 5 and 10 from r-1 (their fingerprint chain matched) and ran only 100:
    it costs 100's quarter hour, its reused attempts are not unmetered ones, the 1.5 hours r-1 paid
    for 5 and 10 are what reuse saved, and the milestones' durations and costs are over the builds
    that ran them (r-1 alone for 5 and 10)."""
    url, store, used = _priced(tmp_path, monkeypatch, "{host_per_hour: {t3.micro: 1.0}, storage_gb_month: 0}")

    plan = [0, 5, 10, 100]
    store.create_build("r-1", pipeline="web", cloud="aws", image_type="base", plan=plan)
    used("r-1", 5, 0.5)
    used("r-1", 10, 1.0)
    used("r-1", 100, 0.25)
    store.create_build("r-2", pipeline="web", cloud="aws", image_type="base", plan=plan)
    lease = store.begin("r-2", 5, owner="w/1")
    taken = [(5, {}, "0" * 64, {"previous": ""}), (10, {"checkpoint_image": "ami-r-2-copy"}, "1" * 64, {})]
    store.reuse("r-2", 5, token=lease.token, source="r-1", taken=taken)
    used("r-2", 100, 0.25)

    got = CliRunner().invoke(cli, ["--store", url, "report", "--json"])
    assert got.exit_code == 0, got.output
    report = json.loads(got.output)
    cost = report["cost"]
    assert cost["per_build"] == {"r-1": 1.75, "r-2": 0.25}
    assert cost["unmetered_attempts"] == 0 and cost["reused_milestones"] == 2 and cost["reuse_saving_unknown"] == 0
    assert report["cost_saved_by_reuse"] == 1.5
    by_code = {m["code"]: m for m in report["milestones"]}
    assert (by_code[5]["runs"], by_code[5]["p50_s"], by_code[10]["cost_p50"]) == (1, 1800.0, 1.0)
    table = CliRunner().invoke(cli, ["--store", url, "report"])
    assert "reuse saved 1.50 USD (2 reused)" in table.output, table.output
    # the build that ran them pruned: what r-2 saved is not known, and not guessed (nor taken from
    # another pipeline's build of the same id)
    store.prune("r-1", updated_before="9999")
    store.create_build("r-1", pipeline="db", cloud="aws", image_type="base", plan=plan)
    used("r-1", 5, 3.0)
    used("r-1", 10, 1.0)
    report = json.loads(CliRunner().invoke(cli, ["--store", url, "report", "--json"]).output)
    assert report["cost_saved_by_reuse"] == 0 and report["cost"]["reuse_saving_unknown"] == 1
