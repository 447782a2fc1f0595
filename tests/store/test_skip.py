"""Stepping over a milestone on purpose: a person's recorded decision, not Airflow's "Mark success".

"Mark success" on a task records nothing in the build, so the next milestone used to fail with
"cannot start milestone 15 before milestone 10 is completed" and no way forward. A skip is
recorded (status ``skipped``, the reason, who decided), counts as done for the plan's order, and
is refused for what must not be stepped over (registration, seal, publish). Every backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.errors import Conflict, InvalidInput
from airflow_provider_imagebuild.plan import plan_from_spec
from airflow_provider_imagebuild.spec.pipeline import parse_spec
from airflow_provider_imagebuild.store import BuildStore

PLAN = [0, 5, 10, 15, 95, 100]


def test_a_skip_is_recorded_and_counts_as_done(store: BuildStore) -> None:
    store.create_build("s-1", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    lease = store.begin("s-1", 5, owner="w")
    store.complete("s-1", 5, token=lease.token, outputs={"image_id": "ami-1"})
    with pytest.raises(Conflict, match=r"Mark success.*imagebuild build skip s-1 10 --reason"):
        store.begin("s-1", 15, owner="w")  # what a "Mark success" on 10 leads to: the way forward is named
    with pytest.raises(Conflict, match="is not next: milestone 10"):
        store.skip("s-1", 15, reason="later one")
    with pytest.raises(InvalidInput, match="reason"):
        store.skip("s-1", 10, reason="  ")
    rec = store.skip("s-1", 10, reason="flaky green-image check, verified by hand (OPS-12)", actor="alice")
    assert rec.completed == [0, 5, 10] and rec.skipped == [10] and rec.next_state == 15
    assert rec.reached(5) and not rec.reached(10)
    done = rec.milestones[10]
    assert done.skipped and done.outputs == {} and done.owner == "alice" and "OPS-12" in (done.skip_reason or "")
    assert [(a.kind, a.status) for a in rec.attempts_at(10)] == [("skip", "skipped")]
    assert rec.events[-1].kind == "skip" and rec.events[-1].actor == "alice"
    assert rec.merged_outputs() == {"image_id": "ami-1"}
    with pytest.raises(Conflict, match="already skipped"):
        store.skip("s-1", 10, reason="again")
    lease = store.begin("s-1", 15, owner="w")  # the next milestone may start now
    store.complete("s-1", 15, token=lease.token)
    for code in (95, 100):
        with pytest.raises(InvalidInput, match=r"cannot be skipped"):
            store.skip("s-1", code, reason="no")
    store.reset("s-1", to=10, reason="run it for real")
    assert 10 not in store.get("s-1").milestones  # a reset undoes a skip like any milestone


def test_a_skip_waits_for_a_live_lease(store: BuildStore) -> None:
    store.create_build("s-2", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    store.begin("s-2", 5, owner="worker/run/s005/try-1", lease_seconds=60)
    with pytest.raises(Conflict, match="leased by 'worker/run/s005/try-1'"):
        store.skip("s-2", 5, reason="stuck")


def test_specs_say_what_may_be_skipped() -> None:
    raw = {
        "pipeline": "p",
        "cloud": "local",
        "image_type": "t",
        "milestones": {
            15: {"action": "command", "command": "true", "skippable": False},
            70: {"action": "command", "command": "true"},
            95: {"action": "command", "command": "true", "skippable": True},
        },
    }
    plan = plan_from_spec(parse_spec(raw))
    assert plan.identity.not_skippable == (0, 15, 100)


def test_cli_skip(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"

    def imagebuild(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--store", url, "build", *args], env={"COLUMNS": "200"})
        return result.exit_code, result.output

    create = ["create", "c", "--pipeline", "p", "--cloud", "local", "--image-type", "t", "--states", "0,5,10,100"]
    assert imagebuild(*create)[0] == 0
    assert imagebuild("skip", "c", "10", "--reason", "x")[0] == 3  # not next
    assert imagebuild("skip", "c", "5", "--reason", "")[0] == 2
    code, out = imagebuild("skip", "c", "5", "--reason", "kickstart done by hand")
    assert code == 0 and "next milestone 10" in out
    code, out = imagebuild("show", "c")
    assert "skipped" in out and "kickstart done by hand" in out
    code, out = imagebuild("skip", "c", "100", "--reason", "x")
    assert code == 2 and "cannot be skipped" in out
