"""Which earlier build a new one reuses (#32, build/reuse.py), recorded by ``store.reuse`` on every
backend, and what a reused build can be sent back to (build/checkpoints.py resume_problem).

Records are made through the store as milestones make them (begin, complete with a fingerprint and
inputs); the chain a new build "would record now" is a dict of the same fingerprints, changed from
a milestone on where a test says an input changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_imagebuild.build.checkpoints import resume_problem
from airflow_provider_imagebuild.build.fingerprint import MilestoneFingerprint
from airflow_provider_imagebuild.build.reuse import (
    checkpoint_sources,
    delivered_unchanged,
    taken,
    unchanged_source,
)
from airflow_provider_imagebuild.errors import Conflict, CorruptRecord, InvalidInput
from airflow_provider_imagebuild.operators.reuse import fresh
from airflow_provider_imagebuild.store import BuildStore, open_store

PLAN = [0, 5, 10, 15, 20, 95, 100]
CHECKPOINTS = {10: "ckpt-10", 15: "ckpt-15"}


def fp(code: int, night: int = 1, changed_at: int = 999) -> str:
    """Milestone ``code``'s fingerprint on ``night``: what changed at ``changed_at`` changes it and,
    the chain, every later one."""
    return f"{code:02d}{night if code >= changed_at else 1:02d}".ljust(64, "0")


def chain(changed_at: int = 999, night: int = 2) -> dict[int, MilestoneFingerprint]:
    return {c: MilestoneFingerprint(c, fp(c, night, changed_at), {"previous": ""}) for c in PLAN[1:]}


def build(store: BuildStore, build_id: str, upto: int = 100, pipeline: str = "p", **outputs: str) -> None:
    """A build of ``pipeline`` that reached ``upto``, each milestone with its night-1 fingerprint."""
    store.create_build(build_id, pipeline=pipeline, cloud="local", image_type="t", plan=PLAN)
    for code in [c for c in PLAN[1:] if c <= upto]:
        lease = store.begin(build_id, code, owner="w")
        made = {"checkpoint_image": f"{build_id}/{CHECKPOINTS[code]}"} if code in CHECKPOINTS else {}
        if code == 95:
            made = {"image_id": f"{build_id}/image", **outputs}
        store.complete(build_id, code, token=lease.token, outputs=made, fingerprint=fp(code),
                       inputs={"previous": "", "file:a.yml": "0" * 40})  # fmt: skip


@pytest.fixture
def sqlite(tmp_path: Path) -> BuildStore:
    return open_store(f"sqlite:///{tmp_path}/s.db")


def new(store: BuildStore, build_id: str = "new") -> tuple:
    store.create_build(build_id, pipeline="p", cloud="local", image_type="t", plan=PLAN)
    return store.get(build_id), store.scan_builds()[0]


def test_the_furthest_matching_checkpoint_of_the_newest_build_is_chosen(sqlite: BuildStore) -> None:
    build(sqlite, "old")
    build(sqlite, "newer", upto=15)  # failed after 15: its checkpoints count all the same
    build(sqlite, "other", pipeline="q")
    rec, builds = new(sqlite)
    choices = checkpoint_sources(builds, rec, chain(changed_at=20))
    assert [(c.source.build_id, c.upto, c.checkpoint.image) for c in choices if c.checkpoint] == [
        ("newer", 15, "newer/ckpt-15"),
        ("old", 15, "old/ckpt-15"),
    ]
    # 15 changed: the checkpoint after 10 is the furthest that matches.
    assert [(c.source.build_id, c.upto) for c in checkpoint_sources(builds, rec, chain(changed_at=15))] == [
        ("newer", 10),
        ("old", 10),
    ]
    assert checkpoint_sources(builds, rec, chain(changed_at=5)) == []  # the first milestone changed: cold


def test_deleted_checkpoints_abandoned_builds_and_unknown_fingerprints_are_not_reused(sqlite: BuildStore) -> None:
    build(sqlite, "sealed")
    sqlite.set_metadata("sealed", {"checkpoints_discarded": "15@1"})  # the seal deleted the one after 15
    build(sqlite, "given-up", upto=15)
    sqlite.abandon("given-up", reason="r")
    build(sqlite, "shell", upto=15)
    lease = sqlite.begin("shell", 20, owner="w")
    sqlite.complete("shell", 20, token=lease.token)  # no fingerprint: nothing after it matches
    rec, builds = new(sqlite)
    assert [(c.source.build_id, c.upto) for c in checkpoint_sources(builds, rec, chain())] == [
        ("shell", 15),
        ("sealed", 10),
    ]


def test_nothing_changed_reuses_the_newest_delivered_build_not_a_retired_one(sqlite: BuildStore) -> None:
    build(sqlite, "night-1")
    build(sqlite, "night-2")
    build(sqlite, "failed", upto=95)
    rec, builds = new(sqlite)
    whole = unchanged_source(builds, rec, chain())
    assert whole is not None and whole.source.build_id == "night-2" and whole.checkpoint is None
    assert unchanged_source(builds, rec, chain(changed_at=100)) is None  # the publish settings changed
    sqlite.record_retirement("night-1", retired=["night-1/image (catalog)"], reason="keep_last 1")
    rec, builds = new(sqlite, "new-2")
    again = unchanged_source(builds, rec, chain())  # another image's retirement does not matter
    assert again is not None and again.source.build_id == "night-2"
    # night-2's image retired, recorded on the newest delivered build (night-3 delivered it again).
    lease = sqlite.begin("new-2", 5, owner="w")
    sqlite.reuse("new-2", 5, token=lease.token, source="night-2", taken=taken(again, PLAN, 5))
    sqlite.record_retirement("new-2", retired=["night-2/image (catalog)"], reason="keep_days 1h")
    rec, builds = new(sqlite, "new-3")
    assert unchanged_source(builds, rec, chain()) is None  # night-1's is retired, night-2's and new-2's too


def test_what_is_taken_is_recorded_as_reused_attempts_on_every_backend(store: BuildStore) -> None:
    build(store, "src")
    store.create_build("dst", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    rec = store.get("dst")
    choice = checkpoint_sources([store.get("src")], rec, chain(changed_at=20))[0]
    lease = store.begin("dst", 5, owner="w")
    items = taken(choice, PLAN, 5, {"checkpoint_image": "dst/copy-15"})
    done = store.reuse("dst", 5, token=lease.token, source="src", taken=items)
    assert [(a.state, a.kind, a.reused_from, a.fingerprint) for a in done.attempts if a.state] == [
        (c, "reused", {"build_id": "src", "state": c}, fp(c)) for c in (5, 10, 15)
    ]
    assert done.milestones[15].outputs == {"checkpoint_image": "dst/copy-15"}
    assert "checkpoint_image" not in done.milestones[10].outputs  # the source's green image is not dst's
    assert (done.current_state, done.status, done.lease, done.next_state) == (15, "completed", None, 20)
    assert store.get("dst").to_public()["attempts"][1]["reused_from"] == {"build_id": "src", "state": 5}
    assert done.events[-1].kind == "reuse" and "from build src" in done.events[-1].detail
    with pytest.raises(Conflict):
        store.reuse("dst", 5, token=lease.token, source="src", taken=items)  # the lease is over


def test_a_reuse_that_is_not_the_plan_from_the_lease_on_is_refused_and_nothing_written(sqlite: BuildStore) -> None:
    build(sqlite, "src")
    sqlite.create_build("dst", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    lease = sqlite.begin("dst", 5, owner="w")
    version = sqlite.get("dst").version
    one = (5, {}, fp(5), {"previous": ""})
    fifteen = (15, {}, fp(15), {"previous": ""})
    for source, items, error in [
        ("dst", [one], InvalidInput),  # its own
        ("src", [one, fifteen], InvalidInput),  # 10 left out
        ("src", [], InvalidInput),
        ("../x", [one], InvalidInput),
        ("src", [(5, {}, "not-a-fingerprint", {})], InvalidInput),
    ]:
        with pytest.raises(error):
            sqlite.reuse("dst", 5, token=lease.token, source=source, taken=items)
    assert sqlite.get("dst").version == version


def test_a_forged_reused_from_makes_the_record_corrupt(tmp_path: Path) -> None:
    import json
    import sqlite3

    store = open_store(f"sqlite:///{tmp_path}/s.db")
    build(store, "src", upto=5)
    db = sqlite3.connect(tmp_path / "s.db")
    (doc,) = db.execute("SELECT doc FROM builds WHERE build_id = 'src'").fetchone()
    record = json.loads(doc)
    record["attempts"][1]["reused_from"] = {"build_id": "../../etc", "state": 5}
    db.execute("UPDATE builds SET doc = ? WHERE build_id = 'src'", (json.dumps(record),))
    db.commit()
    with pytest.raises(CorruptRecord, match=r"attempts\[1\]\.reused_from\.build_id"):
        store.get("src")


def test_a_reused_build_is_sent_back_only_where_it_has_something_to_start_from(sqlite: BuildStore) -> None:
    build(sqlite, "src")
    rec, builds = new(sqlite)
    whole = unchanged_source(builds, rec, chain())
    lease = sqlite.begin("new", 5, owner="w")
    assert fresh(sqlite.get("new"), 5) and not fresh(sqlite.get("new"), 10)
    done = sqlite.reuse("new", 5, token=lease.token, source="src", taken=taken(whole, PLAN, 5))
    assert done.delivered and delivered_unchanged(done) == "src"
    assert "image_id" in done.milestones[95].outputs and "checkpoint_image" not in done.merged_outputs()
    problem = resume_problem(sqlite.get("new"), 15)
    assert problem and "reused from build src" in problem and "Redo from 5" in problem
    with pytest.raises(Conflict, match="Redo from 5"):
        sqlite.reset("new", to=15, reason="again")
    reset = sqlite.reset("new", to=5, reason="for real")  # from the first milestone: everything runs
    assert reset.next_state == 5
    sqlite.begin("new", 5, owner="w")
    assert not fresh(sqlite.get("new"), 5)  # a reset build runs for real, it never reuses again


def test_a_packer_image_that_was_also_the_checkpoint_is_the_new_builds_copy_in_both_roles(sqlite: BuildStore) -> None:
    """A pipeline without a seal publishes its last Packer milestone's image, recorded as its image
    and its checkpoint: a build starting from its copy publishes the copy, never the source's nor nothing."""
    plan = [0, 10, 100]
    sqlite.create_build("src", pipeline="p", cloud="aws", image_type="t", plan=plan)
    for code, made in ((10, {"image_id": "ami-src", "checkpoint_image": "ami-src", "images": {"eu": "ami-src"}}),
                       (100, {"published": True})):  # fmt: skip
        lease = sqlite.begin("src", code, owner="w")
        sqlite.complete("src", code, token=lease.token, outputs=made, fingerprint=fp(code), inputs={"previous": ""})
    sqlite.create_build("new", pipeline="p", cloud="aws", image_type="t", plan=plan)
    now = {c: MilestoneFingerprint(c, fp(c, 2, changed_at=100), {"previous": ""}) for c in plan[1:]}  # publish changed
    (choice,) = checkpoint_sources(sqlite.scan_builds()[0], sqlite.get("new"), now)
    ((code, outputs, _, _),) = taken(choice, plan, 10, {"checkpoint_image": "ami-copy"})
    assert (code, outputs) == (10, {"image_id": "ami-copy", "checkpoint_image": "ami-copy"})
