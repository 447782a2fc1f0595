"""The trigger form of a generated DAG: ``build_id`` resumes a build, ``redo_from`` redoes it from a
milestone with a ``reason``; bad values fail the first task naming the param, and nothing is written.

Through real Airflow (``dag.test(run_conf=...)`` on the session's SQLite metadata DB) with a small
pipeline of ``command`` milestones that count their runs in a file; milestone 15 fails while a
marker file exists.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write


def _spec(tmp_path: Path) -> str:
    count = f'echo "$STATE" >> {tmp_path}/counter'
    return f"""\
pipeline: form-demo
cloud: local
image_type: base
schedule: "@daily"
store: sqlite:///{tmp_path}/state.db
defaults: {{retries: 0}}
milestones:
  15: {{action: command, command: '{count}; if [ -e {tmp_path}/fail ]; then rm {tmp_path}/fail; exit 3; fi'}}
  42: {{key: license_check, title: License check, action: command, command: '{count}'}}
  70: {{action: command, command: '{count}'}}
"""


@pytest.fixture
def form(airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    write(tmp_path / "pipelines/form.yaml", _spec(tmp_path))
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return {
        "dag": bag.dags["imagebuild_form_demo"],
        "store": open_store(f"sqlite:///{tmp_path}/state.db"),
        "counter": tmp_path / "counter",
        "fail": tmp_path / "fail",
    }


def _counts(path: Path) -> Counter[int]:
    return Counter(int(line) for line in path.read_text().split()) if path.exists() else Counter()


def _states(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_the_dag_has_a_trigger_form_of_build_id_redo_from_and_reason(form: dict[str, Any]) -> None:
    """Parsed from the DAG file: optional params (a scheduled DAG needs valid defaults), the
    milestones of this plan only, each shown with its title, and docs saying how to resume."""
    dag = form["dag"]
    assert dag.params.validate() == {"build_id": None, "redo_from": None, "reason": None}
    build_id, redo_from, reason = (dag.params.get_param(name) for name in ("build_id", "redo_from", "reason"))
    assert "empty for a new build" in (build_id.description or "")
    assert "failed build's id" in (build_id.description or "")
    assert redo_from.schema["enum"] == [None, 15, 42, 70, 100]
    assert redo_from.schema["values_display"]["42"] == "42 · License check"
    assert reason.schema["type"] == ["null", "string"] and "recorded" in (reason.description or "")
    assert "build_id=<id>" in dag.doc_md and "Redo from milestone" in dag.doc_md


def test_redo_from_outside_the_plan_is_refused_by_the_form(form: dict[str, Any]) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="redo_from"):
        form["dag"].test(run_conf={"build_id": "x-1", "redo_from": 45})
    assert form["store"].list_builds() == []


@pytest.mark.slow
def test_a_failed_build_resumes_from_the_form(
    form: dict[str, Any], caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain trigger fails at 15; its log says how to resume from the form; a run with that
    build id (as the form sends it: every param, the empty ones null) resumes at 15."""
    dag, store = form["dag"], form["store"]
    form["fail"].touch()
    with caplog.at_level(logging.INFO):
        assert dag.test().state == "failed"
    (build,) = store.list_builds()
    build_id = build.build_id
    log = caplog.text + "".join(capsys.readouterr())
    assert f"resume it in a new run from the trigger form: Trigger DAG w/ config: build_id={build_id}" in log, log

    run = dag.test(run_conf={"build_id": build_id, "redo_from": None, "reason": None})
    assert run.state == "success"
    assert len(store.list_builds()) == 1
    assert store.get(build_id).delivered
    assert _counts(form["counter"]) == Counter({15: 2, 42: 1, 70: 1})  # the failed try counted, then the resume


@pytest.mark.slow
def test_redo_from_the_form_resets_with_the_reason_and_the_user(form: dict[str, Any]) -> None:
    dag, store = form["dag"], form["store"]
    assert dag.test(run_conf={"build_id": "form-1"}).state == "success"
    run = dag.test(run_conf={"build_id": "form-1", "redo_from": 42, "reason": "license list updated"})
    assert run.state == "success"
    assert _counts(form["counter"]) == Counter({15: 1, 42: 2, 70: 2})
    rec = store.get("form-1")
    (reset,) = [e for e in rec.events if e.kind == "reset"]
    assert f"redo from 42 (run {run.run_id}): license list updated" in reset.detail
    assert reset.actor == "dag_test"  # the run's triggering user (dag.test's)
    assert rec.delivered


@pytest.mark.slow
@pytest.mark.parametrize(
    ("conf", "says"),
    [
        ({"build_id": "../etc"}, "build_id: must not contain '..'"),
        ({"build_id": "theirs-1"}, "build_id: build theirs-1 belongs to pipeline other-pipeline"),
        ({"build_id": "nobody-1", "redo_from": 70}, "build_id: no build nobody-1 in"),
        ({"redo_from": 70, "reason": "again"}, "redo_from: needs build_id"),
        ({"build_id": "form-2", "redo_form": 70}, "redo_form: is not a param of this DAG; did you mean 'redo_from'?"),
        ({"build_id": "form-2", "reason": "bell\x07"}, "reason: must not contain control characters"),
    ],
)
def test_bad_form_values_fail_the_first_task_naming_the_param_and_write_nothing(
    form: dict[str, Any],
    conf: dict[str, Any],
    says: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = form["store"]
    store.create_build("theirs-1", pipeline="other-pipeline", cloud="local", image_type="base", plan=[0, 15, 100])
    before = store.get("theirs-1").version
    with caplog.at_level(logging.INFO):
        run = form["dag"].test(run_conf=conf)
    assert run.state == "failed"
    states = _states(run)
    assert states["s000_initialize"] == "failed" and states["s015_base_config"] == "upstream_failed"
    log = caplog.text + "".join(capsys.readouterr())
    assert f"invalid input: {says}" in log, log
    assert [b.build_id for b in store.list_builds()] == ["theirs-1"]  # nothing written
    assert store.get("theirs-1").version == before
    assert not form["counter"].exists()


def test_a_redo_without_a_triggering_user_is_recorded_as_the_trigger_form() -> None:
    from airflow_provider_imagebuild.operators.trigger import FORM_ACTOR, form_actor

    assert form_actor({"dag_run": SimpleNamespace(triggering_user_name=None)}) == FORM_ACTOR == "trigger form"
    assert form_actor({"dag_run": SimpleNamespace(triggering_user_name="alice")}) == "alice"
