"""Custom milestones keep their titles everywhere: a spec's ``42: {key: license_check, title: License
check}`` reads ``42 · License check`` in the CLI's tables and in the errors the store's rules give,
never ``custom 42``; the record keeps the titles, so no reader needs the spec."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.plan import plan_from_spec
from airflow_provider_imagebuild.spec.pipeline import parse_spec
from airflow_provider_imagebuild.store import open_store

SPEC = {
    "pipeline": "web",
    "cloud": "local",
    "image_type": "base",
    "include_standard": False,
    "milestones": {
        5: {"action": "noop"},
        42: {"action": "command", "key": "license_check", "title": "License check", "command": ["true"]},
        45: {"action": "noop", "title": "Disks for the database"},
    },
}


def invoke(url: str, *args: str) -> tuple[int, str, str]:
    got = CliRunner().invoke(cli, ["--store", url, *args])
    return got.exit_code, got.stdout, got.stderr


def test_a_pipelines_titles_reach_the_cli_and_the_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url)
    store.init()
    plan = plan_from_spec(parse_spec(SPEC))
    assert plan.codes == [0, 5, 42, 45, 100]
    store.register("b-1", plan.identity, owner="dag/run/s000_initialize/try-1", plan_changes=True)

    code, _, err = invoke(url, "build", "skip", "b-1", "42", "--reason", "not today")
    assert code == 3 and "milestone 42 (License check)" in err and "custom" not in err
    store.complete("b-1", 5, token=store.begin("b-1", 5, owner="w/1").token)
    lease = store.begin("b-1", 42, owner="w/1")
    code, _, err = invoke(url, "build", "begin", "b-1", "42", "--owner", "someone-else")
    assert code == 3 and "milestone 42 (License check)" in err
    store.fail("b-1", 42, token=lease.token, error="GPL found")

    _, table, _ = invoke(url, "build", "show", "b-1")
    assert "License check" in table and "Disks for the database" in table and "custom" not in table
    _, listed, _ = invoke(url, "build", "list")
    assert "42 · License check" in listed
    shown = json.loads(invoke(url, "build", "show", "b-1", "--json")[1])
    assert shown["milestone_titles"]["42"] == "License check" and shown["milestone_titles"]["5"] == (
        "OS installation started"
    )
    report = json.loads(invoke(url, "report", "--json")[1])
    assert [m["title"] for m in report["milestones"] if m["code"] == 42] == ["License check"]


def test_a_renamed_milestone_is_taken_when_the_dag_registers_again(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.init()
    store.register("b-1", plan_from_spec(parse_spec(SPEC)).identity, plan_changes=True)
    renamed = {**SPEC, "milestones": {**SPEC["milestones"], 42: {**SPEC["milestones"][42], "title": "Licences"}}}
    rec = store.register("b-1", plan_from_spec(parse_spec(renamed)).identity, plan_changes=True)
    assert rec.title(42) == "Licences" and store.get("b-1").label(42) == "42 · Licences"


def test_the_cli_names_custom_milestones_of_a_build_it_creates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    args = ["build", "create", "b-2", "--pipeline", "p", "--cloud", "aws", "--image-type", "t"]
    code, _, err = invoke(url, *args, "--states", "0,42,100", "--title", "42=License check", "--json")
    assert code == 0, err
    code, _, err = invoke(url, "build", "should-run", "b-2", "100")
    assert code == 3 and "before 42 (License check)" in err
    code, _, err = invoke(url, *args, "--states", "0,100", "--title", "42=License check")
    assert code == 2 and "titles[42]" in err and "not in the plan" in err
    code, _, err = invoke(url, *args, "--title", "License check")
    assert code == 2 and "--title" in err and "MILESTONE=TITLE" in err
    _, out, _ = invoke(url, "build", "list")
    assert "0 · Build registered" in out
