"""The store contract, run against every backend (real SQLite, files, and AWS APIs over HTTP).

DynamoDB runs twice: against moto (API coverage) and against dynalite (strict validation and
real conditional writes). S3 and the SQLite mirror run against moto.
"""

from __future__ import annotations

import pytest

from airflow_provider_imagebuild.build.catalog import STANDARD_PLAN
from airflow_provider_imagebuild.errors import Conflict, InvalidInput, NotFound
from airflow_provider_imagebuild.store import BuildStore
from tests.conftest import FakeClock

PLAN = [0, 5, 10, 15, 42, 45, 100]


def create(store: BuildStore, build_id: str = "b-1", plan: list[int] | None = PLAN) -> None:
    store.create_build(
        build_id,
        pipeline="rhel8-web",
        cloud="aws",
        image_type="webserver",
        os="rhel-8.10",
        plan=plan,
        metadata={"team": "platform"},
    )


def run_to(store: BuildStore, build_id: str, last: int, owner: str = "worker") -> None:
    rec = store.get(build_id)
    for code in rec.plan:
        if code in rec.milestones:
            continue
        if code > last:
            break
        lease = store.begin(build_id, code, owner=owner)
        store.complete(build_id, code, token=lease.token, outputs={"code": code})


def test_create_registers_milestone_zero(store: BuildStore) -> None:
    create(store)
    rec = store.get("b-1")
    assert rec.plan == PLAN
    assert rec.completed == [0]
    assert (rec.current_state, rec.status, rec.delivered) == (0, "completed", False)
    assert rec.next_state == 5
    assert rec.metadata == {"team": "platform"}


def test_create_is_idempotent_and_conflicts_on_different_parameters(store: BuildStore) -> None:
    create(store)
    version = store.get("b-1").version
    create(store)  # identical: no-op
    assert store.get("b-1").version == version
    with pytest.raises(Conflict, match="image_type"):
        store.create_build(
            "b-1",
            pipeline="rhel8-web",
            cloud="aws",
            image_type="hana",
            os="rhel-8.10",
            plan=PLAN,
            metadata={"team": "platform"},
        )
    with pytest.raises(Conflict, match="plan"):
        store.create_build(
            "b-1",
            pipeline="rhel8-web",
            cloud="aws",
            image_type="webserver",
            os="rhel-8.10",
            metadata={"team": "platform"},
        )


def test_default_plan_is_the_standard_catalog(store: BuildStore) -> None:
    create(store, plan=None)
    assert tuple(store.get("b-1").plan) == STANDARD_PLAN


def test_full_walk_delivers_with_outputs(store: BuildStore) -> None:
    create(store)
    run_to(store, "b-1", 100)
    rec = store.get("b-1")
    assert rec.delivered and rec.delivered_at
    assert rec.completed == PLAN
    assert (rec.current_state, rec.status) == (100, "completed")
    assert rec.milestones[42].outputs == {"code": 42}
    assert rec.merged_outputs() == {"code": 100}
    assert [a.state for a in rec.attempts] == PLAN
    assert all(a.status == "completed" for a in rec.attempts)
    assert rec.lease is None


def test_milestones_only_in_plan_order(store: BuildStore) -> None:
    create(store)
    with pytest.raises(Conflict, match="cannot start before milestone 5"):
        store.begin("b-1", 10, owner="w")
    run_to(store, "b-1", 10)
    with pytest.raises(Conflict, match="already completed"):
        store.begin("b-1", 5, owner="w")
    with pytest.raises(Conflict, match="cannot start before milestone 15"):
        store.begin("b-1", 45, owner="w")


def test_one_live_lease_and_the_conflict_names_the_holder(store: BuildStore) -> None:
    create(store)
    first = store.begin("b-1", 5, owner="dag/run1/s005/1")
    with pytest.raises(Conflict) as info:
        store.begin("b-1", 5, owner="dag/run2/s005/1")
    assert info.value.holder == "dag/run1/s005/1"
    assert "dag/run1/s005/1" in str(info.value)
    again = store.begin("b-1", 5, owner="dag/run1/s005/1")  # same owner: same lease, no new attempt
    assert again.token == first.token
    assert len(store.get("b-1").attempts_at(5)) == 1


def test_heartbeat_extends_and_needs_the_token(store: BuildStore, clock: FakeClock) -> None:
    create(store)
    lease = store.begin("b-1", 5, owner="w", lease_seconds=60)
    clock.advance(50)
    renewed = store.heartbeat("b-1", 5, token=lease.token)
    assert renewed.expires_at > lease.expires_at
    clock.advance(50)  # past the original expiry, within the renewed one
    with pytest.raises(Conflict, match="leased by 'w'"):
        store.begin("b-1", 5, owner="other")
    with pytest.raises(Conflict, match="does not hold"):
        store.heartbeat("b-1", 5, token="0" * 32)
    with pytest.raises(InvalidInput, match="lease is for milestone 5"):
        store.heartbeat("b-1", 10, token=lease.token)


def test_failure_keeps_the_state_and_a_retry_is_attempt_two(store: BuildStore) -> None:
    create(store)
    run_to(store, "b-1", 15)
    lease = store.begin("b-1", 42, owner="w")
    rec = store.fail("b-1", 42, token=lease.token, error="license server timeout")
    assert (rec.current_state, rec.status) == (42, "failed")
    assert rec.completed == [0, 5, 10, 15]
    retry = store.begin("b-1", 42, owner="w2")
    assert retry.attempt == 2
    store.complete("b-1", 42, token=retry.token)
    rec = store.get("b-1")
    assert [(a.attempt, a.status) for a in rec.attempts_at(42)] == [(1, "failed"), (2, "completed")]
    assert rec.attempts_at(42)[0].error == "license server timeout"


def test_expired_lease_is_taken_over_and_the_stale_writer_refused(store: BuildStore, clock: FakeClock) -> None:
    create(store)
    stale = store.begin("b-1", 5, owner="killed-worker", lease_seconds=30)
    clock.advance(31)
    fresh = store.begin("b-1", 5, owner="new-worker", lease_seconds=30)
    assert fresh.attempt == 2
    for late in (
        lambda: store.complete("b-1", 5, token=stale.token),
        lambda: store.fail("b-1", 5, token=stale.token, error="late"),
        lambda: store.heartbeat("b-1", 5, token=stale.token),
    ):
        with pytest.raises(Conflict, match="stale lease token") as info:
            late()
        assert info.value.holder == "new-worker"
    store.complete("b-1", 5, token=fresh.token, outputs={"by": "new"})
    rec = store.get("b-1")
    assert [(a.owner, a.status) for a in rec.attempts_at(5)] == [
        ("killed-worker", "abandoned"),
        ("new-worker", "completed"),
    ]
    assert "expired" in (rec.attempts_at(5)[0].error or "")
    assert rec.milestones[5].outputs == {"by": "new"}
    assert any(e.kind == "takeover" for e in rec.events)


def test_expired_but_not_taken_over_lease_may_still_finish(store: BuildStore, clock: FakeClock) -> None:
    create(store)
    lease = store.begin("b-1", 5, owner="slow", lease_seconds=10)
    clock.advance(20)
    store.complete("b-1", 5, token=lease.token)
    assert store.get("b-1").completed == [0, 5]


def test_complete_and_fail_retried_with_the_same_token_are_idempotent(store: BuildStore) -> None:
    create(store)
    lease = store.begin("b-1", 5, owner="w")
    store.complete("b-1", 5, token=lease.token, outputs={"ami": "ami-1"})
    version = store.get("b-1").version
    store.complete("b-1", 5, token=lease.token, outputs={"ami": "ami-1"})  # lost response, retried
    rec = store.get("b-1")
    assert rec.version == version and len(rec.attempts_at(5)) == 1
    lease = store.begin("b-1", 10, owner="w")
    store.fail("b-1", 10, token=lease.token, error="x")
    version = store.get("b-1").version
    store.fail("b-1", 10, token=lease.token, error="x")
    assert store.get("b-1").version == version


def test_reset_reruns_from_a_milestone(store: BuildStore, clock: FakeClock) -> None:
    create(store)
    run_to(store, "b-1", 42)
    rec = store.reset("b-1", to=15, reason="base config changed", actor="alice")
    assert rec.completed == [0, 5, 10]
    assert (rec.current_state, rec.status, rec.next_state) == (10, "completed", 15)
    assert rec.events[-1].kind == "reset" and "base config changed" in rec.events[-1].detail
    run_to(store, "b-1", 100)
    rec = store.get("b-1")
    assert [a.attempt for a in rec.attempts_at(15)] == [1, 2]
    assert rec.delivered


def test_reset_refuses_a_live_lease_and_milestone_zero(store: BuildStore, clock: FakeClock) -> None:
    create(store)
    store.begin("b-1", 5, owner="w", lease_seconds=60)
    with pytest.raises(Conflict, match="leased by 'w'"):
        store.reset("b-1", to=5, reason="x")
    with pytest.raises(InvalidInput, match="registration"):
        store.reset("b-1", to=0, reason="x")
    clock.advance(61)
    store.reset("b-1", to=5, reason="worker vanished")
    assert store.get("b-1").attempts_at(5)[0].status == "abandoned"


@pytest.mark.parametrize("bad", [7, 105, -5, True, "ten", 5.0, None])
def test_bad_codes_are_refused_and_nothing_is_written(store: BuildStore, bad: object) -> None:
    create(store)
    version = store.get("b-1").version
    with pytest.raises(InvalidInput, match="state"):
        store.begin("b-1", bad, owner="w")  # type: ignore[arg-type]
    assert store.get("b-1").version == version


def test_list_filters(store: BuildStore, clock: FakeClock) -> None:
    create(store, "b-1")
    store.create_build("b-2", pipeline="sles-hana", cloud="azure", image_type="hana")
    store.create_build("b-3", pipeline="rhel8-web", cloud="aws", image_type="webserver", plan=[0, 100])
    middle = clock()
    lease = store.begin("b-3", 100, owner="w")
    store.fail("b-3", 100, token=lease.token, error="quota")
    assert {r.build_id for r in store.list_builds()} == {"b-1", "b-2", "b-3"}
    assert [r.build_id for r in store.list_builds(status="failed")] == ["b-3"]
    assert [r.build_id for r in store.list_builds(cloud="azure")] == ["b-2"]
    assert {r.build_id for r in store.list_builds(pipeline="rhel8-web")} == {"b-1", "b-3"}
    assert [r.build_id for r in store.list_builds(updated_after=middle)] == ["b-3"]
    assert {r.build_id for r in store.list_builds(updated_before=middle)} == {"b-1", "b-2"}
    with pytest.raises(InvalidInput, match="status"):
        store.list_builds(status="done")


def test_history_is_complete_and_ordered(store: BuildStore, clock: FakeClock) -> None:
    create(store)
    lease = store.begin("b-1", 5, owner="w")
    store.fail("b-1", 5, token=lease.token, error="boom")
    lease = store.begin("b-1", 5, owner="w")
    store.complete("b-1", 5, token=lease.token)
    rows = store.history("b-1")
    assert [(r["type"], r.get("state"), r.get("status")) for r in rows] == [
        ("attempt", 0, "completed"),
        ("event", 0, None),
        ("attempt", 5, "failed"),
        ("attempt", 5, "completed"),
    ]
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)


def test_secrets_are_redacted_before_they_are_stored(store: BuildStore) -> None:
    create(store)
    secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----"
    error = (
        f"aws_secret_access_key={secret_key} key AKIAIOSFODNN7EXAMPLE password=hunter22 "
        f"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig\n{pem}\ndb postgres://app:s3cr3tpw@db/x"
    )
    lease = store.begin("b-1", 5, owner="w")
    store.fail("b-1", 5, token=lease.token, error=error)
    lease = store.begin("b-1", 5, owner="w")
    store.complete("b-1", 5, token=lease.token, outputs={"log": f"token={secret_key}", "ami": "ami-0abc"})
    stored = repr(store.get("b-1").to_doc())
    for secret in (
        secret_key,
        "AKIAIOSFODNN7EXAMPLE",
        "hunter22",
        "eyJhbGciOiJIUzI1NiJ9",
        "MIIEowIBAAKCAQEA7",
        "s3cr3tpw",
    ):
        assert secret not in stored
    assert "ami-0abc" in stored


def test_replay_is_recorded_in_history(store: BuildStore) -> None:
    create(store)
    run_to(store, "b-1", 15)
    lease = store.begin("b-1", 42, owner="w")
    store.record_replay("b-1", 42, token=lease.token, replayed=15)
    store.complete("b-1", 42, token=lease.token)
    rec = store.get("b-1")
    assert [(a.kind, a.status) for a in rec.attempts_at(15)] == [("run", "completed"), ("replay", "completed")]
    assert rec.completed[-1] == 42
    with pytest.raises(InvalidInput, match="not completed"):
        lease = store.begin("b-1", 45, owner="w")
        store.record_replay("b-1", 45, token=lease.token, replayed=100)


def test_not_found_and_bad_ids(store: BuildStore) -> None:
    with pytest.raises(NotFound):
        store.get("missing")
    with pytest.raises(NotFound):
        store.begin("missing", 5, owner="w")
    for bad in ("../x", "a/b", "", "x" * 200, "bäd", ".hidden", "a..b"):
        with pytest.raises(InvalidInput, match="build_id"):
            store.create_build(bad, pipeline="p", cloud="aws", image_type="t")
    assert store.list_builds() == []


def test_init_is_idempotent(store: BuildStore) -> None:
    create(store)
    store.init()
    store.init()
    assert store.get("b-1").completed == [0]


def test_metadata_updates(store: BuildStore) -> None:
    create(store)
    rec = store.set_metadata("b-1", {"ticket": "OPS-1"}, actor="alice")
    assert rec.metadata == {"team": "platform", "ticket": "OPS-1"}
    with pytest.raises(InvalidInput, match="metadata"):
        store.set_metadata("b-1", {"bad key": "x"})


def test_prune_deletes_only_finished_unchanged_builds(store: BuildStore, clock: FakeClock) -> None:
    """The conditional delete every backend implements: a finished build not changed since the
    cutoff goes; one in progress, one with a live lease, one changed after the cutoff, and one a
    concurrent writer changes between the listing and the delete stay."""
    from airflow_provider_imagebuild.build.record import format_ts

    for build_id in ("old-done", "old-failed", "running", "raced"):
        create(store, build_id)
    run_to(store, "old-done", 100)
    run_to(store, "old-failed", 5)
    lease = store.begin("old-failed", 10, owner="w")
    store.fail("old-failed", 10, token=lease.token, error="broke")
    run_to(store, "raced", 100)
    run_to(store, "running", 5)
    store.begin("running", 10, owner="w")
    clock.advance(3600)
    cutoff = format_ts(clock())
    listed = {r.build_id: r for r in store.scan_builds()[0]}
    store.reset("raced", to=100, reason="a person redoes the publish")  # after the listing
    assert store.prune("old-done", updated_before=cutoff) == listed["old-done"]
    assert store.prune("old-failed", updated_before=cutoff) is not None
    assert store.prune("running", updated_before=cutoff) is None
    assert store.prune("raced", updated_before=cutoff) is None  # changed since: kept
    assert store.prune("never-was", updated_before=cutoff) is None
    assert sorted(r.build_id for r in store.scan_builds()[0]) == ["raced", "running"]
    assert store.find("old-done") is None
