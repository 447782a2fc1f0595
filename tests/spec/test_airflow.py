"""Airflow's own settings in a spec (spec/airflow_options): ``default_args`` with Airflow's names,
``access_control`` with Airflow's DAG permissions, and a milestone's ``pool``, ``queue``,
``priority_weight`` and ``pool_slots``; validated at parse time, errors naming the key path, the
nearest known name for a typo, and ``imagebuild spec check`` refusing them the same way."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.spec.airflow_options import DAG_PERMISSIONS
from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec
from tests.cli.test_cli import run
from tests.dags.conftest import write

BASE: dict[str, Any] = {"pipeline": "p", "cloud": "local", "image_type": "base"}


def test_default_args_take_airflows_names_and_durations() -> None:
    spec = parse_spec(
        {
            **BASE,
            "default_args": {
                "owner": "platform",
                "email": ["images@example.org"],
                "email_on_failure": True,
                "retries": 3,
                "retry_delay": "5m",
                "retry_exponential_backoff": True,
                "max_retry_delay": "PT2H",
                "execution_timeout": 5400,
                "depends_on_past": False,
                "queue": "builds",
                "pool": "cloud_api",
                "priority_weight": 10,
            },
        }
    )
    assert spec.default_args is not None
    assert spec.default_args.airflow_default_args() == {
        "owner": "platform",
        "email": ["images@example.org"],
        "email_on_failure": True,
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(hours=2),
        "execution_timeout": timedelta(minutes=90),
        "depends_on_past": False,
        "queue": "builds",
        "pool": "cloud_api",
        "priority_weight": 10,
    }


def test_access_control_and_milestone_placement_are_accepted() -> None:
    spec = parse_spec(
        {
            **BASE,
            "access_control": {"ImageOps": ["can_read", "can_edit"], "Viewer": {"DAG Runs": ["can_create"]}},
            "milestones": {
                45: {"action": "noop", "pool": "disk", "pool_slots": 2, "queue": "big", "priority_weight": 5}
            },
        }
    )
    assert spec.access_control == {
        "ImageOps": {"DAGs": frozenset({"can_read", "can_edit"})},
        "Viewer": {"DAG Runs": frozenset({"can_create"})},
    }
    assert spec.milestones[45].placement() == {"pool": "disk", "pool_slots": 2, "queue": "big", "priority_weight": 5}


@pytest.mark.parametrize(
    ("extra", "where", "reason"),
    [
        ({"default_args": {"retires": 3}}, "default_args.retires", "unknown Airflow setting; did you mean 'retries'?"),
        ({"default_args": {"ownr": "me"}}, "default_args.ownr", "did you mean 'owner'?"),
        ({"default_args": {"trigger_rule": "all_done"}}, "default_args.trigger_rule", "cannot be set in a spec"),
        ({"default_args": {"start_date": "2026-01-01"}}, "default_args.start_date", "top-level start_date"),
        ({"default_args": {"retry_delay": "soon"}}, "default_args.retry_delay", "is not a duration"),
        ({"default_args": {"execution_timeout": 0}}, "default_args.execution_timeout", "must be a positive duration"),
        ({"default_args": {"retries": -1}}, "default_args.retries", "greater than or equal to 0"),
        ({"default_args": {"email": "ops"}}, "default_args.email", "'ops' is not an e-mail address"),
        ({"default_args": {"weight_rule": "sideways"}}, "default_args.weight_rule", "'downstream'"),
        ({"default_args": {"pool_slots": 0}}, "default_args.pool_slots", "greater than or equal to 1"),
        ({"default_args": ["owner"]}, "default_args", "must be a mapping"),
        (
            {"default_args": {"retries": 2}, "defaults": {"retries": 1}},
            "default_args.retries",
            "also given as defaults.retries",
        ),
        ({"access_control": {"Op": ["can_raed"]}}, "access_control.Op.DAGs", "did you mean 'can_read'?"),
        ({"access_control": {"Op": {"DAG Run": ["can_create"]}}}, "access_control.Op.DAG Run", "'DAG Runs'"),
        ({"access_control": {"Op": {"DAG Runs": ["can_edit"]}}}, "access_control.Op.DAG Runs", "not a DAG Runs"),
        ({"access_control": {"Op": "can_read"}}, "access_control.Op", "list of actions"),
        ({"milestones": {45: {"pool_slots": 0}}}, "milestones.45.pool_slots", "greater than or equal to 1"),
        ({"milestones": {45: {"pool": ""}}}, "milestones.45.pool", "must be a pool name, not empty"),
        ({"milestones": {45: {"queue": " big"}}}, "milestones.45.queue", "without surrounding blanks"),
        ({"milestones": {45: {"priority_weight": "high"}}}, "milestones.45.priority_weight", "valid integer"),
        ({"milestones": {45: {"priority_weight": 1.5}}}, "milestones.45.priority_weight", "valid integer"),
        ({"milestones": {45: {"pool_slot": 2}}}, "milestones.45.pool_slot", "unknown key"),
    ],
)
def test_bad_airflow_settings_name_the_key_path_and_the_reason(extra: dict[str, Any], where: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, **extra}, "web.yaml")
    assert caught.value.path == where, str(caught.value)
    assert reason in caught.value.reason, str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_permissions_are_airflows() -> None:
    from airflow.security.permissions import RESOURCE_DAG, RESOURCE_DAG_RUN, RESOURCE_DETAILS_MAP

    airflows = {r: frozenset(RESOURCE_DETAILS_MAP[r]["actions"]) for r in (RESOURCE_DAG, RESOURCE_DAG_RUN)}
    assert airflows == DAG_PERMISSIONS


def test_spec_check_refuses_bad_airflow_settings_with_the_field_path(tmp_path: Path) -> None:
    good = "pipeline: {name}\ncloud: local\nimage_type: base\n"
    folder = tmp_path / "pipelines"
    write(folder / "a.yaml", good.format(name="alpha") + "default_args: {owner: ops, retry_delay: 2m, queue: local}\n")
    write(folder / "b.yaml", good.format(name="beta") + "default_args: {retry_dealy: 60}\n")
    write(folder / "c.yaml", good.format(name="gamma") + "milestones:\n  15: {action: noop, pool_slots: 0}\n")
    checked = run("spec", "check", str(folder))
    assert checked.returncode == 2
    assert checked.stdout.splitlines() == [
        f"ok {folder / 'a.yaml'}: DAG imagebuild_alpha, 2 milestones",
        "1 ok, 2 invalid",
    ]
    errors = checked.stderr.splitlines()
    assert len(errors) == 2, errors
    assert errors[0] == (
        f"{folder / 'b.yaml'}:4:16: default_args.retry_dealy: unknown Airflow setting; did you mean 'retry_delay'?"
    )
    assert (
        errors[1] == f"{folder / 'c.yaml'}:5:34: milestones.15.pool_slots: Input should be greater than or equal to 1"
    )
    assert "Traceback" not in checked.stderr


def test_spec_check_reports_every_access_control_problem_at_its_line(tmp_path: Path) -> None:
    """A team fixing its roles sees every wrong role, resource and action at once, each as
    ``FILE:LINE:COLUMN: key.path: message`` (the first alone made it fix, rerun, fix again)."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    spec = tmp_path / "web.yaml"
    spec.write_text(
        "pipeline: web\ncloud: local\nimage_type: base\n"
        "access_control:\n"
        "  Op: [can_raed, can_edit, can_fly]\n"
        "  Viewer: {DAG Run: [can_create], DAGs: [can_read]}\n"
        "  Auditor: can_read\n"
    )
    got = CliRunner().invoke(cli, ["spec", "check", str(spec)])
    assert got.exit_code == 2, got.output
    errors = [line for line in got.stderr.splitlines() if line.startswith(str(spec))]
    assert errors == [
        f"{spec}:5:7: access_control.Op.DAGs: 'can_raed' (did you mean 'can_read'?), 'can_fly' (did you mean "
        "'can_delete'?) are not DAGs permissions (can_delete, can_edit, can_read)",
        f"{spec}:6:21: access_control.Viewer.DAG Run: not a DAG resource (DAGs or DAG Runs); did you mean 'DAG Runs'?",
        f"{spec}:7:12: access_control.Auditor: must be a list of actions or a mapping of resource to actions",
    ]


def test_unprintable_role_and_resource_names_are_named_on_one_line(tmp_path: Path) -> None:
    """A role or resource holding a newline or an escape would print its key path over several
    lines (or recolour the terminal): such names are shown quoted, every bad role in one problem."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    spec = tmp_path / "web.yaml"
    spec.write_text(
        "pipeline: web\ncloud: local\nimage_type: base\n"
        "access_control:\n"
        '  "Op\\nX\\u001b[31m": [can_read]\n'
        '  "": [can_read]\n'
        "  7: [can_read]\n"
        '  Viewer: {"DAG\\nRuns": [can_read]}\n'
    )
    got = CliRunner().invoke(cli, ["spec", "check", str(spec)])
    assert got.exit_code == 2, got.output
    errors = [line for line in got.stderr.splitlines() if line.startswith(str(spec))]
    assert errors == [
        f"{spec}:5:3: access_control: role names must be non-empty strings without surrounding blanks or control "
        "characters, got 'Op\\nX\\x1b[31m', '', 7",
        f"{spec}:8:11: access_control.Viewer: resource 'DAG\\nRuns': not a DAG resource (DAGs or DAG Runs); "
        "did you mean 'DAG Runs'?",
    ]
    assert "\x1b" not in got.stderr
