"""Abandon and the attempt cap across runs (issue 31), kept by the store on every backend.

An abandoned build is over: ``build_status`` reads ``abandoned`` from the stored record and every
later ``begin`` (Airflow, Concourse, the CLI: they all go through the store) is refused. A
milestone gets ``max_attempts`` attempts across every run (default 10); past it ``begin`` is
refused naming the cap, and a reset or a recorded grant (``allow``) gives more. Prune removes
abandoned builds that hold nothing.
"""

from __future__ import annotations

import pytest

from airflow_provider_imagebuild.build.holdings import holdings
from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.record import BuildRecord, format_ts
from airflow_provider_imagebuild.build.retention import retention_verdict
from airflow_provider_imagebuild.build.status import build_status
from airflow_provider_imagebuild.build.values import DEFAULT_MAX_ATTEMPTS
from airflow_provider_imagebuild.errors import Conflict, InvalidInput
from airflow_provider_imagebuild.store import BuildStore
from tests.conftest import FakeClock

PLAN = [0, 5, 10, 15, 100]


def _fail(store: BuildStore, build_id: str, code: int, owner: str = "w") -> None:
    lease = store.begin(build_id, code, owner=owner)
    store.fail(build_id, code, token=lease.token, error="boom")


def test_an_abandoned_build_reads_abandoned_and_refuses_every_later_begin(store: BuildStore) -> None:
    store.create_build("a-1", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    lease = store.begin("a-1", 5, owner="w")
    store.complete("a-1", 5, token=lease.token, outputs={"checkpoint_image": "ami-1"})
    _fail(store, "a-1", 10)
    _, changed = store.abandon("a-1", reason="base image withdrawn", actor="alice")
    assert changed
    stored = store.get("a-1")  # read back: the state is the store's, not the caller's
    assert build_status(stored) == "abandoned"
    assert stored.to_public()["build_status"] == "abandoned"
    assert stored.abandoned_at is not None
    event = stored.events[-1]
    assert (event.kind, event.actor) == ("abandon", "alice")
    assert "base image withdrawn" in event.detail
    with pytest.raises(Conflict, match=r"abandoned .*base image withdrawn.*start a new build id"):
        store.begin("a-1", 10, owner="w2")
    with pytest.raises(Conflict, match="abandoned"):
        store.reset("a-1", to=10, reason="try again", actor="bob")
    with pytest.raises(Conflict, match="abandoned"):
        store.skip("a-1", 10, reason="skip it", actor="bob")
    with pytest.raises(Conflict, match="abandoned"):
        store.allow("a-1", 10, attempts=2, reason="more", actor="bob")
    again, changed = store.abandon("a-1", reason="again", actor="alice")  # idempotent: nothing written
    assert not changed and again.version == stored.version


def test_abandon_waits_for_a_live_lease_and_takes_over_an_expired_one(store: BuildStore, clock: FakeClock) -> None:
    store.create_build("a-2", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    store.begin("a-2", 5, owner="worker-1", lease_seconds=60)
    with pytest.raises(Conflict, match="leased by 'worker-1'"):
        store.abandon("a-2", reason="stop", actor="alice")
    clock.advance(120)
    rec, changed = store.abandon("a-2", reason="stop", actor="alice")
    assert changed and rec.lease is None
    assert rec.attempts[-1].status == "abandoned"
    assert build_status(store.get("a-2")) == "abandoned"


def test_a_delivered_build_is_not_abandoned(store: BuildStore) -> None:
    store.create_build("a-3", pipeline="p", cloud="aws", image_type="t", plan=[0, 100])
    lease = store.begin("a-3", 100, owner="w")
    store.complete("a-3", 100, token=lease.token)
    with pytest.raises(Conflict, match="delivered"):
        store.abandon("a-3", reason="x", actor="alice")
    assert build_status(store.get("a-3")) == "delivered"


def test_released_holdings_leave_the_record_and_prune_then_removes_it(store: BuildStore, clock: FakeClock) -> None:
    store.create_build("a-4", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    lease = store.begin("a-4", 5, owner="w")
    store.set_metadata("a-4", {"host_id": "i-1"}, token=lease.token, state=5, actor="w")
    store.complete("a-4", 5, token=lease.token, outputs={"checkpoint_image": "ami-1"})
    _fail(store, "a-4", 10)
    store.abandon("a-4", reason="gone", actor="alice")
    rec = store.get("a-4")
    assert {h.id for h in holdings(rec)} == {"i-1", "ami-1"}
    verdict = retention_verdict(rec)
    assert not verdict.removable and "abandoned, still holds" in verdict.reason
    cutoff = format_ts(clock())
    assert store.prune("a-4", updated_before=cutoff) is None  # holds a host: kept
    rec = store.record_release("a-4", released=["i-1"], still_held=["checkpoint image ami-1: EC2 said no"])
    assert [h.id for h in holdings(rec)] == ["ami-1"]
    assert rec.events[-1].kind == "release" and "still held" in rec.events[-1].detail
    store.record_release("a-4", released=["ami-1"], still_held=[])
    assert holdings(store.get("a-4")) == []
    clock.advance(1)
    assert store.prune("a-4", updated_before=format_ts(clock())) is not None
    assert store.find("a-4") is None


def test_a_milestone_gets_max_attempts_across_runs_then_begin_is_refused_naming_the_cap(store: BuildStore) -> None:
    store.create_build("c-1", pipeline="p", cloud="aws", image_type="t", plan=PLAN, max_attempts=3)
    assert store.get("c-1").max_attempts == {5: 3, 10: 3, 15: 3, 100: 3}
    for run in range(3):  # three runs of different owners (Airflow tries, Concourse, a shell)
        _fail(store, "c-1", 5, owner=f"run-{run}")
    with pytest.raises(Conflict, match=r"milestone 5 .*attempt cap: 3 attempts of max_attempts 3.*build allow c-1 5"):
        store.begin("c-1", 5, owner="run-3")
    assert len(store.get("c-1").attempts_at(5)) == 3  # nothing written by the refused begin
    store.allow("c-1", 5, attempts=2, reason="mirror fixed", actor="alice")
    rec = store.get("c-1")
    assert rec.events[-1].kind == "allow" and "mirror fixed" in rec.events[-1].detail
    assert rec.events[-1].actor == "alice"
    _fail(store, "c-1", 5, owner="run-4")
    lease = store.begin("c-1", 5, owner="run-5")
    store.complete("c-1", 5, token=lease.token)
    _fail(store, "c-1", 10, owner="run-6")


def test_the_default_cap_is_ten_and_a_reset_counts_afresh(store: BuildStore) -> None:
    store.create_build("c-2", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    assert store.get("c-2").attempt_cap(5) == DEFAULT_MAX_ATTEMPTS == 10
    for n in range(10):
        _fail(store, "c-2", 5, owner=f"try-{n}")
    with pytest.raises(Conflict, match="max_attempts 10"):
        store.begin("c-2", 5, owner="try-10")
    store.reset("c-2", to=5, reason="new base image", actor="alice")
    lease = store.begin("c-2", 5, owner="try-10")
    assert lease.attempt == 11
    store.complete("c-2", 5, token=lease.token)


def test_the_caps_come_from_the_pipeline_and_follow_its_changes(store: BuildStore) -> None:
    identity = BuildIdentity("p", "aws", "t", plan=tuple(PLAN), max_attempts={10: 2})
    store.register("c-3", identity, plan_changes=True)
    assert store.get("c-3").max_attempts == {10: 2}
    store.register("c-3", BuildIdentity("p", "aws", "t", plan=tuple(PLAN), max_attempts={10: 4}), plan_changes=True)
    rec = store.get("c-3")
    assert rec.max_attempts == {10: 4} and rec.events[-1].kind == "caps"


def test_bad_grants_are_refused_naming_the_field(store: BuildStore) -> None:
    store.create_build("c-4", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    with pytest.raises(InvalidInput, match="attempts"):
        store.allow("c-4", 5, attempts=0, reason="x", actor="a")
    with pytest.raises(InvalidInput, match="reason"):
        store.allow("c-4", 5, attempts=1, reason="", actor="a")
    with pytest.raises(InvalidInput, match="max_attempts"):
        store.create_build("c-5", pipeline="p", cloud="aws", image_type="t", plan=PLAN, max_attempts=True)
    assert store.find("c-5") is None


def test_no_cap_is_raised_without_a_reason_nor_granted_without_bound(store: BuildStore) -> None:
    """Creating a build again with another --max-attempts was a silent, unrecorded raise of its cap:
    refused (same caps: a no-op); the way to more attempts is ``build allow --reason``. Grants
    stacked without bound undid the cap: at most MAX_GRANTED_AHEAD (10) attempts unused at a time."""

    def create(cap: int) -> BuildRecord:
        return store.create_build("g-1", pipeline="p", cloud="aws", image_type="t", plan=PLAN, max_attempts=cap)

    create(2)
    create(2)  # the same caps again: nothing changes
    with pytest.raises(Conflict, match=r"max_attempts 2; creating it again does not .*build allow g-1 MILESTONE"):
        create(50)
    assert store.get("g-1").max_attempts == {5: 2, 10: 2, 15: 2, 100: 2}
    _fail(store, "g-1", 5)
    _fail(store, "g-1", 5)
    assert store.allow("g-1", 5, attempts=4, reason="mirror fixed", actor="a").attempt_limit(5) == 6
    assert store.allow("g-1", 5, attempts=6, reason="still flaky", actor="b").attempt_limit(5) == 12
    with pytest.raises(Conflict, match=r"up to attempt 12 \(2 so far\): at most 10 .*MAX_GRANTED_AHEAD"):
        store.allow("g-1", 5, attempts=1, reason="more", actor="c")
    with pytest.raises(Conflict, match="MAX_GRANTED_AHEAD"):
        store.allow("g-1", 10, attempts=9, reason="ahead", actor="a")  # its cap of 2 plus 9, none used
    assert store.get("g-1").attempt_limits == {5: 12}


def test_a_plan_change_takes_the_new_caps_and_keeps_the_record_readable(store: BuildStore) -> None:
    """A DAG author removes a capped milestone and caps another after a failure: the record follows
    the spec and stays readable (a cap of a milestone no longer planned would make it corrupt)."""
    store.register("c-6", BuildIdentity("p", "aws", "t", plan=(0, 5, 10, 15, 100), max_attempts={15: 2}))
    _fail(store, "c-6", 5)
    store.allow("c-6", 5, attempts=1, reason="x", actor="a")
    changed = BuildIdentity("p", "aws", "t", plan=(0, 5, 10, 100), max_attempts={10: 3})
    store.register("c-6", changed, plan_changes=True)
    rec = store.get("c-6")
    assert rec.plan == [0, 5, 10, 100] and rec.max_attempts == {10: 3} and rec.attempt_limits == {5: 11}
