"""Resume through real Airflow: ``dag.test()`` on a SQLite metadata DB in a temporary AIRFLOW_HOME.

A 21-milestone pipeline of ``command`` milestones counts every execution in a file; milestone 45
fails on the first run. Running again with the same build id (what clearing does) must redo
only 45 onwards.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.catalog import STANDARD_PLAN
from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write

COMMAND = 'echo "$STATE" >> "$COUNTER"; echo "::output:: seen_$STATE_KEY=$STATE"'
FAILING = 'if [ -e "$FAIL_MARK" ]; then rm "$FAIL_MARK"; echo "disk layout broken" >&2; exit 3; fi; ' + COMMAND


def _spec(tmp_path: Path, store_url: str) -> str:
    lines = [
        "pipeline: resume-demo",
        "cloud: local",
        "image_type: base",
        "schedule: null",
        f"store: {store_url}",
        "include_standard: true",
        "defaults: {retries: 0}",
        "milestones:",
    ]
    for code in STANDARD_PLAN[1:]:
        command = FAILING if code == 45 else COMMAND
        lines.append(
            f"  {code}: {{action: command, command: {command!r}, "
            f"env: {{COUNTER: '{tmp_path}/counter', FAIL_MARK: '{tmp_path}/fail-45'}}}}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def pipeline(airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    store_url = f"sqlite:///{tmp_path}/state.db"
    write(tmp_path / "pipelines/resume.yaml", _spec(tmp_path, store_url))
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return {
        "dag": bag.dags["imagebuild_resume_demo"],
        "store": open_store(store_url),
        "counter": tmp_path / "counter",
        "mark": tmp_path / "fail-45",
    }


def _counts(path: Path) -> Counter[int]:
    return Counter(int(line) for line in path.read_text().split())


@pytest.mark.slow
def test_failed_milestone_resumes_and_nothing_achieved_is_redone(pipeline: dict[str, Any]) -> None:
    dag, store = pipeline["dag"], pipeline["store"]
    pipeline["mark"].touch()
    when = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
    first = dag.test(logical_date=when, run_conf={"build_id": "nightly-1"})
    assert first.state == "failed"
    rec = store.get("nightly-1")
    assert rec.completed == [c for c in STANDARD_PLAN if c < 45]
    assert (rec.current_state, rec.status) == (45, "failed")
    assert "exited with status 3" in (rec.attempts_at(45)[0].error or "")

    second = dag.test(logical_date=when, run_conf={"build_id": "nightly-1"})  # the cleared run again
    assert second.state == "success"
    counts = _counts(pipeline["counter"])
    assert all(counts[c] == 1 for c in STANDARD_PLAN[1:] if c != 45), counts
    assert counts[45] == 1  # the failing try exits before it counts; the store shows both tries
    rec = store.get("nightly-1")
    assert rec.delivered
    assert [(a.attempt, a.status) for a in rec.attempts_at(45)] == [(1, "failed"), (2, "completed")]
    assert all(len(rec.attempts_at(c)) == 1 for c in STANDARD_PLAN if c != 45)
    assert rec.milestones[45].outputs == {"seen_storage": "45"}
    # Each attempt records what it was made from (#32), chained on the milestone before it; the
    # failed try at 45 started from the same inputs as the one that completed it.
    plan = rec.plan
    for before, code in pairwise(plan[1:]):
        done = rec.completed_attempt(code)
        assert done is not None and done.inputs is not None and done.fingerprint
        assert done.inputs["previous"] == rec.fingerprint_of(before), code
        assert {"spec", "pipeline", "env:COUNTER", "env:FAIL_MARK"} <= set(done.inputs)
    failed, redone = rec.attempts_at(45)
    assert failed.fingerprint == redone.fingerprint and failed.inputs == redone.inputs
    assert rec.attempts_at(5)[0].inputs["previous"] == ""  # the first milestone after registration


@pytest.mark.slow
def test_a_new_run_with_an_old_build_id_resumes_that_build(pipeline: dict[str, Any]) -> None:
    dag, store = pipeline["dag"], pipeline["store"]
    pipeline["mark"].touch()
    assert (
        dag.test(logical_date=datetime(2026, 11, 2, tzinfo=timezone.utc), run_conf={"build_id": "old-build"}).state
        == "failed"
    )
    later = dag.test(logical_date=datetime(2026, 11, 3, tzinfo=timezone.utc), run_conf={"build_id": "old-build"})
    assert later.state == "success"
    counts = _counts(pipeline["counter"])
    assert max(counts.values()) == 1 and len(counts) == len(STANDARD_PLAN) - 1
    rec = store.get("old-build")
    assert rec.delivered
    run_of = {code: done.owner.split("/")[1] for code, done in rec.milestones.items() if code > 0}
    before = {run_of[c] for c in run_of if c < 45}
    after = {run_of[c] for c in run_of if c >= 45}
    assert len(before) == 1 and len(after) == 1 and before != after  # old run up to 40, new run from 45


@pytest.mark.slow
def test_bad_build_id_fails_without_retries_or_writes(pipeline: dict[str, Any]) -> None:
    run = pipeline["dag"].test(run_conf={"build_id": "../etc"})
    assert run.state == "failed"
    assert pipeline["store"].list_builds() == []
    assert not pipeline["counter"].exists()


def test_failure_switch_names_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_imagebuild.operators.base import injected_failure

    monkeypatch.setenv("IMAGEBUILD_FAIL_AT", "45, 70, 85@1")
    assert injected_failure(45, 1) and injected_failure(45, 2) and injected_failure(70, 1)
    assert not injected_failure(4, 1) and not injected_failure(50, 1)
    assert injected_failure(85, 1) and not injected_failure(85, 2)  # a flaky failure: first attempt only
    monkeypatch.delenv("IMAGEBUILD_FAIL_AT")
    assert not injected_failure(45, 1)


@pytest.mark.slow
def test_a_second_run_on_a_held_build_fails_fast_naming_the_holder(pipeline: dict[str, Any]) -> None:
    """Double trigger: somebody else (here a shell job through the store) holds the build's lease."""
    dag, store = pipeline["dag"], pipeline["store"]
    store.create_build("held-1", pipeline="resume-demo", cloud="local", image_type="base", plan=list(STANDARD_PLAN))
    store.begin("held-1", 5, owner="concourse/nightly/42", lease_seconds=600)
    run = dag.test(run_conf={"build_id": "held-1"})
    assert run.state == "failed"
    rec = store.get("held-1")
    assert rec.lease is not None and rec.lease.owner == "concourse/nightly/42"
    assert len(rec.attempts_at(5)) == 1  # the second run wrote no attempt
    assert not pipeline["counter"].exists()  # and ran nothing


@pytest.mark.slow
def test_a_build_survives_an_edit_of_its_spec(pipeline: dict[str, Any], tmp_path: Path) -> None:
    """The DAG author fixes a failing pipeline by adding milestone 42 and dropping 60, then runs it
    again with the same build id: 0..40 are skipped, 42 and 45 run, 60 is gone, the build is
    delivered, and the plan change is in the build's events. A change to a completed milestone
    is refused, naming it."""
    from airflow.dag_processing.dagbag import DagBag

    dag, store = pipeline["dag"], pipeline["store"]
    pipeline["mark"].touch()
    assert dag.test(run_conf={"build_id": "edited-1"}).state == "failed"
    spec = tmp_path / "pipelines/resume.yaml"
    text = spec.read_text().replace("include_standard: true", "include_standard: false")  # every code is listed
    line_60 = next(line for line in text.splitlines() if line.startswith("  60:"))
    added = line_60.replace("  60: {", "  42: {key: license_check, ")
    spec.write_text(text.replace(line_60 + "\n", added + "\n"))
    edited = DagBag(dag_folder=str(ROOT / "dags")).dags["imagebuild_resume_demo"]
    assert "s042_license_check" in edited.task_dict and "s060_app_deploy" not in edited.task_dict

    assert edited.test(run_conf={"build_id": "edited-1"}).state == "success"
    counts = _counts(pipeline["counter"])
    assert counts[42] == 1 and counts[60] == 0 and all(counts[c] == 1 for c in STANDARD_PLAN[1:] if c != 60)
    rec = store.get("edited-1")
    assert rec.delivered and 42 in rec.plan and 60 not in rec.plan
    plan_events = [e.detail for e in rec.events if e.kind == "plan"]
    assert len(plan_events) == 1 and plan_events[0].endswith(": +42, -60"), plan_events

    spec.write_text(text.replace("  15: {", "  16: {key: base_config_2, "))  # 15 is done: refused
    again = DagBag(dag_folder=str(ROOT / "dags")).dags["imagebuild_resume_demo"]
    assert again.test(run_conf={"build_id": "edited-1"}).state == "failed"
    assert store.get("edited-1").plan == rec.plan  # nothing changed
    from airflow_provider_imagebuild.errors import Conflict

    with pytest.raises(Conflict, match=r"milestone 15 \(Base configuration\) is completed.*build reset"):
        store.register("edited-1", again.task_dict["s000_initialize"].identity, plan_changes=True)


@pytest.mark.slow
def test_a_completed_milestone_is_redone_with_redo_from(pipeline: dict[str, Any]) -> None:
    """``{"build_id": ..., "redo_from": 70}`` reruns the integration tests of a delivered build and
    everything after them, recorded as a reset; nothing before 70 runs again. A bad value fails
    the run at once, without retries or writes."""
    dag, store = pipeline["dag"], pipeline["store"]
    assert dag.test(run_conf={"build_id": "redo-1"}).state == "success"
    assert dag.test(run_conf={"build_id": "redo-1", "redo_from": 70}).state == "success"
    counts = _counts(pipeline["counter"])
    assert all(counts[c] == (2 if c >= 70 else 1) for c in STANDARD_PLAN[1:]), counts
    rec = store.get("redo-1")
    assert rec.delivered
    resets = [e.detail for e in rec.events if e.kind == "reset"]
    assert len(resets) == 1 and resets[0].startswith("reset to 70: redo from 70 (run ")
    assert "no reason given" in resets[0]
    version = rec.version
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="redo_from"):  # not in the plan: the trigger form refuses it
        dag.test(run_conf={"build_id": "redo-1", "redo_from": 42})
    assert store.get("redo-1").version == version
