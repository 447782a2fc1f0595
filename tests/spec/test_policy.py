"""A spec's ``policy:`` block (#33): read with its defaults, every bad value one line naming its key
path, and checked only where milestone 90 runs a playbook on the build host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, parse_spec
from airflow_provider_imagebuild.spec.policy import parse_floor

BASE: dict[str, Any] = {
    "pipeline": "p",
    "cloud": "local",
    "image_type": "base",
    "milestones": {90: {"action": "ansible", "playbook": "90.yml"}},
}


def test_a_policy_is_read_with_its_defaults() -> None:
    spec = parse_spec({**BASE, "policy": {"forbid": ["telnet*"], "versions": ["openssl>=3.0.15", "sudo > 1:1.9"]}})
    assert spec.policy is not None and spec.policy.forbid == ["telnet*"]
    assert [parse_floor(f) for f in spec.policy.versions] == [("openssl", ">=", "3.0.15"), ("sudo", ">", "1:1.9")]
    assert (spec.policy.licenses, spec.policy.unlicensed, spec.policy.advisories) == (None, "allow", [])
    assert parse_spec(BASE).policy is None


@pytest.mark.parametrize(
    ("policy", "where", "reason"),
    [
        ({"versions": ["openssl => 3.0.15"]}, "policy.versions.0", "is not a version floor like 'openssl >= 3.0.15'"),
        ({"versions": ["openssl < 3"]}, "policy.versions.0", "operators: >=, >"),
        ({"forbid": ["tel net"]}, "policy.forbid.0", "is not a package name or pattern"),
        ({"require": ["../etc"]}, "policy.require.0", "is not a package name or pattern"),
        ({"unlicensed": "maybe"}, "policy.unlicensed", "'allow' or 'deny'"),
        ({"ignore": ["CVE 1"]}, "policy.ignore.0", "should match pattern"),
        ({"advisories": ["a file.json"]}, "policy.advisories.0", "should match pattern"),
        ({"release": "Bookworm!"}, "policy.release", "should match pattern"),
        ({"allow": ["x"]}, "policy.allow", "unknown key"),
    ],
)
def test_bad_policy_values_name_the_key_path(policy: dict[str, Any], where: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, "policy": policy}, "web.yaml")
    assert caught.value.path == where, str(caught.value)
    assert reason in caught.value.reason, str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_advisory_file_that_is_not_there_is_named_when_the_spec_loads(tmp_path: Path) -> None:
    """Not at milestone 90 an hour later: the spec check finds it, as it finds a missing playbook."""
    (tmp_path / "90.yml").write_text("- hosts: all\n  tasks: []\n")
    (tmp_path / "osv.json").write_text("[]")
    policy = {"advisories": ["osv.json", "https://advisories.example.internal/osv.json", "missing.json"]}
    (tmp_path / "web.yaml").write_text(yaml.safe_dump({**BASE, "policy": policy}))
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "web.yaml")
    assert caught.value.path == "policy.advisories[2]" and caught.value.reason.startswith("file missing.json not found")
    assert [p.path for p in caught.value.problems] == ["policy.advisories[2]"]  # the file and the URL pass


@pytest.mark.parametrize("ninety", [None, {"action": "command", "command": ["true"]}])
def test_a_policy_needs_milestone_90_on_the_build_host(ninety: dict[str, Any] | None) -> None:
    milestones = {90: ninety} if ninety else {45: {"action": "noop"}}
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, "milestones": milestones, "policy": {"require": ["sudo"]}}, "web.yaml")
    assert caught.value.path == "policy" and "give milestone 90 an ansible action" in caught.value.reason
