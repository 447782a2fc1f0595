"""``spec check`` like a compiler, at the spec loader: every error of a file, each with its line and
column and the key path as the spec writes it; the nearest key for an unknown one (or this cloud's
word for another cloud's setting); durations as people write them wherever seconds are taken; and
``cloud: local`` refusing the AWS settings its target has no use for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.plan import plan_from_spec
from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, parse_spec

BASE: dict[str, Any] = {"pipeline": "web", "cloud": "local", "image_type": "base"}


def _problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as refused:
        parse_spec(raw, "web.yaml")
    return [(p.path, p.reason) for p in refused.value.problems]


def test_every_error_of_a_file_is_reported_with_its_line_and_column(tmp_path: Path) -> None:
    text = """\
pipeline: web
cloud: local
image_type: base
base: &retry {retries: 2}
defaults: {retry_delay: soon, retries: -1}
milestones:
  15:
    <<: *retry
    action: command
    comand: [echo, hi]
  20: {action: command, command: "true", execution_timeout: 0}
  0: {action: noop}
"""
    path = tmp_path / "web.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as refused:
        load_spec(path)
    lines = text.splitlines()

    def at(line: int, word: str) -> tuple[int, int]:
        return line, lines[line - 1].index(word) + 1

    found = [(p.line, p.column, p.path) for p in refused.value.problems]
    assert found == [
        (*at(4, "base"), "base"),  # an unknown key: where the key stands
        (*at(5, "soon"), "defaults.retry_delay"),  # a bad value: where the value stands
        (*at(5, "-1"), "defaults.retries"),
        (*at(10, "comand"), "milestones.15.comand"),
        (*at(11, "0}"), "milestones.20.execution_timeout"),
        (*at(12, "{"), "milestones.0"),
    ], refused.value.problems
    reasons = {p.path: p.reason for p in refused.value.problems}
    assert reasons["milestones.15.comand"] == "unknown key; did you mean 'command'?"
    assert "'soon' is not a duration" in reasons["defaults.retry_delay"]
    assert str(refused.value).startswith(f"{path}: base: unknown key (also: defaults.retry_delay, ")


def test_checks_across_keys_are_all_reported() -> None:
    raw = {
        **BASE,
        "store": "sqlite:////tmp/x.db",
        "store_conn_id": "imagebuild_state",
        "checkpoints": [42],
        "milestones": {5: {"action": "bootstrap"}, 15: {"action": "packer", "template": "t.pkr.hcl"}},
    }
    assert [path for path, _ in _problems(raw)] == ["", "milestones.15", "checkpoints"]  # each, not the first


@pytest.mark.parametrize(
    ("raw", "where", "reason"),
    [
        ({"shedule": "@daily"}, "shedule", "unknown key; did you mean 'schedule'?"),
        ({"milestones": {45: {"action": "ansible", "playbok": "x.yml"}}}, "milestones.45.playbok", "'playbook'?"),
        ({"milestones": {45: {"action": "pakcer"}}}, "milestones.45.action", "did you mean 'packer'?"),
        ({"cloud": "azure", "target": {"instance_type": "Standard_D2s_v5"}}, "target.instance_type", "'vm_size'"),
        ({"cloud": "azure", "target": {"region": "westeurope"}}, "target.region", "azure calls it 'location'"),
        ({"cloud": "gcp", "target": {"instance_type": "e2-medium"}}, "target.instance_type", "'machine_type'"),
        ({"cloud": "openstack", "target": {"instance_type": "m1.small"}}, "target.instance_type", "'flavor'"),
        ({"cloud": "aws", "target": {"vm_size": "Standard_D2s_v5"}}, "target.vm_size", "'instance_type'"),
        ({"cloud": "vsphere", "target": {"source_image": "rhel8"}}, "target.source_image", "'template'"),
        ({"cloud": "azure", "target": {"locaton": "westeurope"}}, "target.locaton", "did you mean 'location'?"),
    ],
)
def test_an_unknown_key_names_the_nearest_known_one(raw: dict[str, Any], where: str, reason: str) -> None:
    problems = dict(_problems({**BASE, **raw}))
    assert reason in problems[where], problems


@pytest.mark.parametrize(
    "key",
    ["aws_conn_id", "region", "source_image", "instance_type", "subnet_id", "security_group_ids", "key_name",
     "ssh_user", "publish_regions", "share_accounts", "ssm_parameter"],
)  # fmt: skip
def test_cloud_local_refuses_the_aws_settings(key: str) -> None:
    value = {"security_group_ids": [], "publish_regions": [], "share_accounts": []}.get(key, "eu-west-1")
    problems = _problems({**BASE, "target": {key: value, "work_dir": "/tmp/w"}})
    reason = "unknown key for cloud local (an aws setting; the local target builds on the worker)"
    assert problems[0] == (f"target.{key}", reason)
    aws = parse_spec({**BASE, "cloud": "aws", "target": {"region": "eu-west-1"}})  # the same key on aws: fine
    assert aws.target.region == "eu-west-1"


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("90s", 90), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("1m30s", 90), (45, 45), ("PT5M", 300)],
)
def test_durations_as_people_write_them_wherever_seconds_are_taken(written: Any, seconds: int) -> None:
    lease = written if 5 <= seconds <= 86400 else "10m"  # each field keeps its bounds
    boot = written if 30 <= seconds <= 7200 else "30m"
    spec = parse_spec(
        {
            **BASE,
            "defaults": {"retry_delay": written, "max_retry_delay": written, "execution_timeout": written},
            "target": {"boot": {"timeout": boot}},
            "milestones": {42: {"action": "command", "key": "c", "command": "true", "lease_seconds": lease}},
        }
    )
    assert spec.defaults.retry_delay == spec.defaults.max_retry_delay == spec.defaults.execution_timeout == seconds
    assert spec.milestones[42].lease_seconds == (seconds if lease == written else 600)
    assert isinstance(spec.milestones[42].lease_seconds, int)
    assert spec.target.boot.timeout == (seconds if boot == written else 1800)
    step = next(s for s in plan_from_spec(spec).steps if s.code == 42)
    assert step.policy.execution_timeout == seconds


@pytest.mark.parametrize(
    ("extra", "where", "reason"),
    [
        ({"defaults": {"retry_delay": "5 minutes"}}, "defaults.retry_delay", "is not a duration"),
        ({"defaults": {"execution_timeout": "0s"}}, "defaults.execution_timeout", "greater than 0"),
        ({"defaults": {"lease_seconds": "1.5s"}}, "defaults.lease_seconds", "not a whole number of seconds"),
        ({"defaults": {"lease_seconds": "2d"}}, "defaults.lease_seconds", "less than or equal to 86400"),
        ({"target": {"boot": {"timeout": "3h"}}}, "target.boot.timeout", "less than or equal to 7200"),
        ({"defaults": {"retry_delay": True}}, "defaults.retry_delay", "not a boolean"),
    ],
)
def test_a_bad_duration_names_its_key(extra: dict[str, Any], where: str, reason: str) -> None:
    problems = dict(_problems({**BASE, **extra}))
    assert reason in problems[where], problems


def test_every_problem_of_default_args_is_reported() -> None:
    raw = {**BASE, "default_args": {"retires": 2, "trigger_rule": "all_done", "retry_delay": "soon", "pool": ""}}
    problems = dict(_problems(raw))
    assert problems["default_args.retires"] == "unknown Airflow setting; did you mean 'retries'?"
    assert problems["default_args.trigger_rule"].startswith("cannot be set in a spec")
    assert "'soon' is not a duration" in problems["default_args.retry_delay"]
    assert "must be a pool name" in problems["default_args.pool"]
