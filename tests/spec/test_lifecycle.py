"""A spec's ``on_failure:`` block and per-milestone ``max_attempts`` (issue 31): parsed and checked
at parse time, every error naming the key path; the plan hands the caps to every build's record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_imagebuild.plan import plan_from_spec
from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec

BASE: dict[str, Any] = {"pipeline": "p", "cloud": "local", "image_type": "base"}


def test_on_failure_and_max_attempts_are_read_with_their_defaults() -> None:
    spec = parse_spec(
        {
            **BASE,
            "on_failure": {"park": False, "abandon_after": "7d"},
            "milestones": {45: {"action": "command", "command": ["true"], "max_attempts": 3}},
        }
    )
    assert spec.on_failure.park is False
    assert spec.on_failure.abandon_after == timedelta(days=7)
    assert spec.milestones[45].max_attempts == 3
    plain = parse_spec({**BASE, "milestones": {45: {"action": "noop"}}})
    assert plain.on_failure.park is None  # the target's default
    assert plain.on_failure.abandon_after is None  # never
    assert plain.milestones[45].max_attempts is None  # the store's default, 10
    assert parse_spec({**BASE, "on_failure": {"abandon_after": 86400}}).on_failure.abandon_after == timedelta(days=1)


def test_the_plan_gives_every_build_its_milestones_caps() -> None:
    spec = parse_spec({**BASE, "milestones": {45: {"action": "noop", "max_attempts": 4}, 60: {"action": "noop"}}})
    identity = plan_from_spec(spec).identity
    assert dict(identity.max_attempts) == {45: 4}


@pytest.mark.parametrize(
    ("extra", "where", "reason"),
    [
        ({"on_failure": {"park": "sometimes"}}, "on_failure.park", "valid boolean"),
        ({"on_failure": {"abandon_after": "a week"}}, "on_failure.abandon_after", "is not a duration"),
        ({"on_failure": {"abandon_after": "10m"}}, "on_failure.abandon_after", "at least 1h"),
        ({"on_failure": {"abandon": "7d"}}, "on_failure.abandon", "unknown key"),
        ({"milestones": {45: {"max_attempts": 0}}}, "milestones.45.max_attempts", "greater than or equal to 1"),
        ({"milestones": {45: {"max_attempts": 5000}}}, "milestones.45.max_attempts", "less than or equal to 1000"),
        ({"milestones": {45: {"max_attempts": "many"}}}, "milestones.45.max_attempts", "valid integer"),
    ],
)
def test_bad_on_failure_settings_name_the_key_path(extra: dict[str, Any], where: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, **extra}, "web.yaml")
    assert caught.value.path == where, str(caught.value)
    assert reason in caught.value.reason, str(caught.value)
    assert "\n" not in str(caught.value)
