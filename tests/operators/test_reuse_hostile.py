"""Reuse (#32) attacked as a careless and a hostile user would: records that name what is not the
source build's, images gone by hand, writes that fail half-way, a first try that left a host.

Each test runs the first milestone's reuse (operators/reuse.py) of a real local-target pipeline from
the DAG factory against a real SQLite store and real files under the target's work root. The
earlier builds are recorded through the store as their milestones would record them (the chain of
fingerprints the spec gives now, checkpoint archives and a sealed image as files of the build's
folder, marked by the target's own helper) instead of built: what is attacked is the decision and
the copy, which take a second, not debootstrap and tar (tests/targets/test_contract.py builds for
real)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.checkpoints import KEPT_FOR_REUSE
from airflow_provider_imagebuild.build.reuse import ReuseChoice, shown
from airflow_provider_imagebuild.dag_factory import build_dag
from airflow_provider_imagebuild.errors import Conflict, StoreUnavailable
from airflow_provider_imagebuild.operators.reuse import release_earlier_checkpoints, reuse_earlier_work
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.spec.pipeline import load_spec
from airflow_provider_imagebuild.store.sqlite import SQLiteStore
from airflow_provider_imagebuild.targets.base import Host
from airflow_provider_imagebuild.targets.local_leaks import mark_build_folder
from tests.dags.conftest import write

PLAN = [0, 5, 10, 15, 20, 95, 100]
PIPELINE = "reuse-hostile"


class Nightly:
    """A local pipeline with ``reuse: {}`` and its store; earlier builds recorded, new ones begun."""

    def __init__(self, tmp_path: Path, store: SQLiteStore | None = None) -> None:
        folder = tmp_path / "pipelines"
        write(folder / "mark.yml", "- hosts: all\n  gather_facts: false\n  tasks: []\n")
        spec = f"""pipeline: {PIPELINE}
cloud: local
image_type: base
store: sqlite:///{tmp_path}/state.db
reuse: {{}}
checkpoints: [10, 15]
target: {{work_dir: {tmp_path}/work, catalog: {tmp_path}/catalog}}
milestones:
  5: {{action: bootstrap}}
  10: {{action: ansible, playbook: mark.yml}}
  15: {{action: ansible, playbook: mark.yml}}
  20: {{action: ansible, playbook: mark.yml}}
  95: {{action: seal}}
  100: {{action: publish}}
"""
        self.spec = load_spec(write(folder / "p.yaml", spec))
        self.tasks: dict[int, Any] = {t.state: t for t in build_dag(self.spec, folder).tasks}  # type: ignore[union-attr]
        self.store = store or SQLiteStore(tmp_path / "state.db")
        self.work = tmp_path / "work"
        self.chain = self.tasks[5].made_from.chain(PLAN[1:])  # what a new build would record now

    def earlier(self, build_id: str, upto: int = 100, pipeline: str = PIPELINE) -> Path:
        """A build of the pipeline that reached ``upto`` with today's fingerprints: its folder."""
        folder = self.work / build_id
        mark_build_folder(folder, pipeline, build_id)
        (folder / "ssh").mkdir()  # the key pair milestone 10 writes into the tree (its checkpoints trust it)
        (folder / "ssh/id_ed25519").write_text(f"private key of {build_id}\n")
        (folder / "ssh/id_ed25519.pub").write_text(f"ssh-ed25519 AAAA {build_id}\n")
        self.store.create_build(build_id, pipeline=PIPELINE, cloud="local", image_type="base", plan=PLAN)
        for code in [c for c in PLAN[1:] if c <= upto]:
            lease = self.store.begin(build_id, code, owner="w")
            made: dict[str, Any] = {}
            if code in (10, 15):
                (folder / f"checkpoint-{code:03d}.tar").write_bytes(f"tree after {code}".encode())
                made = {"checkpoint_image": str(folder / f"checkpoint-{code:03d}.tar")}
            if code == 95:
                (folder / f"{PIPELINE}-{build_id}.qcow2").write_bytes(b"sealed")
                made = {"image_id": str(folder / f"{PIPELINE}-{build_id}.qcow2")}
                kept = {KEPT_FOR_REUSE: "10@1,15@1"}  # as the seal lists them (reuse.keep_checkpoints)
                self.store.set_metadata(build_id, kept, actor="milestone 95", token=lease.token, state=95)
            fp = self.chain[code]
            self.store.complete(build_id, code, token=lease.token, outputs=made, fingerprint=fp.fingerprint,
                                inputs=fp.inputs)  # fmt: skip
        return folder

    def begin(self, build_id: str) -> MilestoneSession:
        self.store.create_build(build_id, pipeline=PIPELINE, cloud="local", image_type="base", plan=PLAN)
        return MilestoneSession(self.store, build_id, self.store.begin(build_id, 5, owner="w"))

    def reuse(self, build_id: str, session: MilestoneSession | None = None) -> Any:
        """The first milestone's reuse of a new build; the record after it, or None (it runs)."""
        session = session or self.begin(build_id)
        with session:
            return reuse_earlier_work(self.tasks[5], self.store, self.store.get(build_id), session)

    def forge(self, build_id: str, code: int, key: str, value: str) -> None:
        """Write an output into a stored record by hand, as whoever can write the store can."""
        db = sqlite3.connect(self.store.path)
        (doc,) = db.execute("SELECT doc FROM builds WHERE build_id = ?", (build_id,)).fetchone()
        record = json.loads(doc)
        record["milestones"][str(code)]["outputs"][key] = value
        record["milestones"][str(code)]["outputs"].pop("checkpoint_sha256", None)
        db.execute("UPDATE builds SET doc = ? WHERE build_id = ?", (json.dumps(record), build_id))
        db.commit()
        db.close()


def test_nothing_changed_but_the_image_was_deleted_by_hand_builds_instead(tmp_path: Path) -> None:
    n = Nightly(tmp_path)
    image = n.earlier("night-1") / f"{PIPELINE}-night-1.qcow2"
    again = n.reuse("night-2")  # nothing changed: night-1's image delivered again
    assert again.delivered and again.milestones[95].outputs["image_id"] == str(image)
    third = n.reuse("night-3")  # night-2 delivered night-1's image: proven night-1's, delivered again
    assert third.delivered and third.milestones[95].outputs["image_id"] == str(image)
    image.unlink()  # by hand: no retention recorded it
    rec = n.reuse("night-4")
    assert not rec.delivered, "delivered an image that is gone"
    # It builds from night-1's checkpoint after 15 (its own copy) instead: 20, 95 and 100 run.
    assert [(a.state, a.kind, a.reused_from) for a in rec.attempts if a.state] == [
        (c, "reused", {"build_id": "night-1", "state": c}) for c in (5, 10, 15)
    ]
    assert rec.milestones[15].outputs["checkpoint_image"] == str(n.work / "night-4/checkpoint-015.tar")


class AnswerLost(SQLiteStore):
    """A store whose reuse write is made but whose answer never arrives (a DynamoDB or S3 timeout
    after the conditional write went through), or that refuses the write before making it."""

    refuse = False

    def reuse(self, build_id: str, state: int, **kwargs: Any) -> Any:
        if self.refuse:
            raise Conflict("refused before any write")
        super().reuse(build_id, state, **kwargs)
        raise StoreUnavailable("the store did not answer (the write went through)")


def test_a_copy_the_store_may_have_recorded_is_kept_and_one_it_refused_is_deleted(tmp_path: Path) -> None:
    store = AnswerLost(tmp_path / "state.db")
    n = Nightly(tmp_path, store)
    n.earlier("night-1", upto=20)  # failed at 95: nothing delivered, its checkpoints are usable
    with pytest.raises(StoreUnavailable):
        n.reuse("night-2")
    recorded = store.get("night-2")
    copy = Path(recorded.milestones[15].outputs["checkpoint_image"])
    assert copy.parent == n.work / "night-2" and copy.is_file(), "the copy the record names was deleted"
    store.refuse = True
    with pytest.raises(Conflict):
        n.reuse("night-3")
    assert not (n.work / "night-3/checkpoint-015.tar").exists(), "a copy no record names was left"


def test_a_build_whose_first_try_left_a_build_host_does_not_reuse(tmp_path: Path) -> None:
    n = Nightly(tmp_path)
    n.earlier("night-1", upto=20)
    session = n.begin("night-2")
    # The first try bootstrapped a host (recorded) and failed after it; this is the retry's lease.
    host = Host(str(n.work / "night-2/rootfs"), "", "base.tar", 5, 5)
    session.set_metadata(host.to_metadata(), actor="milestone 5")
    assert n.reuse("night-2", session) is None, "reused milestones the host the next one reconnects to lacks"
    assert not (n.work / "night-2/checkpoint-015.tar").exists()


def test_a_forged_checkpoint_is_never_copied_and_the_next_candidate_is_tried(tmp_path: Path) -> None:
    n = Nightly(tmp_path)
    n.earlier("night-1", upto=20)
    # Newer, so tried first: a record of this pipeline naming a build folder another pipeline's
    # build of that id marked (the work root is shared), and one naming no file a path can be.
    other = n.earlier("other-pipelines", upto=20, pipeline="someone-else")
    n.earlier("night-2", upto=20)
    n.forge("night-2", 15, "checkpoint_image", f"{n.work}/night-2/checkpoint-015.tar\x00")
    rec = n.reuse("night-3")
    assert [a.reused_from for a in rec.attempts if a.state == 15] == [{"build_id": "night-1", "state": 15}]
    assert (other / "checkpoint-015.tar").stat().st_nlink == 1, "another pipeline's checkpoint was linked"


def test_a_log_line_shows_a_recorded_id_escaped_and_cut(tmp_path: Path) -> None:
    from airflow_provider_imagebuild.build.checkpoints import Checkpoint

    n = Nightly(tmp_path)
    n.earlier("night-1", upto=15)
    forged = "/w/night-1/checkpoint-015.tar\n[info] milestone 100 delivered" + "x" * 5000
    line = ReuseChoice(n.store.get("night-1"), 15, Checkpoint(15, forged)).describe()
    assert "\n" not in line and len(line) < 300 and f"({len(forged)} characters)" in line
    assert shown("a\x1b[2Jb") == "a\\x1b[2Jb"


def test_a_delivery_deletes_only_checkpoints_earlier_builds_kept_for_reuse(tmp_path: Path) -> None:
    n = Nightly(tmp_path)
    first = n.earlier("night-1")
    # night-1's record says (as a Packer-only pipeline's does) that its checkpoint after 15 is the
    # image it delivered; someone-elses's is forged into this pipeline's store.
    n.forge("night-1", 15, "checkpoint_image", str(first / f"{PIPELINE}-night-1.qcow2"))
    rec = n.reuse("night-2")  # nothing changed: delivered again
    assert rec.delivered
    other = n.earlier("someone-elses", pipeline="someone-else")  # another pipeline's, same work root
    n.earlier("forged")  # a record naming the delivering build's own checkpoint as its own
    n.forge("forged", 15, "checkpoint_image", str(n.work / "night-3/checkpoint-015.tar"))
    n.earlier("night-3")  # delivered last
    latest = n.store.get("night-3")
    release_earlier_checkpoints(n.tasks[100], n.store, latest, n.tasks[100].get_target())
    assert (first / f"{PIPELINE}-night-1.qcow2").is_file(), "the image night-1 (and night-2) delivered was deleted"
    assert not (first / "checkpoint-010.tar").exists()  # kept for reuse only: night-3's are newer
    assert (other / "checkpoint-010.tar").is_file() and (other / "checkpoint-015.tar").is_file()
    assert (n.work / "night-3/checkpoint-015.tar").is_file()


def test_a_forged_delivered_build_of_another_pipelines_folder_is_not_delivered_again(tmp_path: Path) -> None:
    n = Nightly(tmp_path)
    # This pipeline's store says build "theirs" delivered; the folder of that id under the shared
    # work root is another pipeline's build (its mark), sealed image and checkpoints included.
    theirs = n.earlier("theirs", pipeline="someone-else")
    assert n.reuse("night-2") is None, "another pipeline's image was delivered as this pipeline's"
    assert (theirs / f"{PIPELINE}-theirs.qcow2").stat().st_nlink == 1
    assert not list((n.work / "night-2").glob("checkpoint-*"))


ADOPT = """
import sys
from airflow_provider_imagebuild.build.checkpoints import Checkpoint
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.local import LocalTarget

store, work, image = open_store(sys.argv[1]), sys.argv[2], sys.argv[3]
target = LocalTarget(TargetSpec(work_dir=work), pipeline=sys.argv[4], image_type="base")
target.adopt_checkpoint(store.get("night-2"), store.get("night-1"), Checkpoint(15, image))
"""


def test_a_copy_killed_half_way_leaves_nothing_the_retry_or_gc_cannot_find(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from airflow_provider_imagebuild.build.checkpoints import Checkpoint
    from airflow_provider_imagebuild.targets.local_leaks import LocalLeaks

    n = Nightly(tmp_path)
    source = n.earlier("night-1", upto=20)
    archive = source / "checkpoint-015.tar"
    with archive.open("r+b") as f:
        f.truncate(128 << 20)  # 128 MiB (sparse): reading it for its digest takes the copy a moment
    n.store.create_build("night-2", pipeline=PIPELINE, cloud="local", image_type="base", plan=PLAN)
    folder = n.work / "night-2"
    argv = [sys.executable, "-c", ADOPT, f"sqlite:///{n.store.path}", str(n.work), str(archive), PIPELINE]
    worker = subprocess.Popen(argv, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(folder.glob(".checkpoint-015.tar*")):  # linked, being checked: killed now
        assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read() if worker.stderr else ""
        time.sleep(0.002)
    worker.kill()
    worker.wait()
    target = n.tasks[5].get_target()
    left = {p.name for p in folder.iterdir()} - {".imagebuild-build", "checkpoint-015.tar", "ssh"}  # ssh: the key taken
    assert left and {r.id for r in LocalLeaks.owned_resources(target)} >= {str(folder / name) for name in left}
    copied = target.adopt_checkpoint(n.store.get("night-2"), n.store.get("night-1"), Checkpoint(15, str(archive)))
    assert copied["checkpoint_image"] == str(folder / "checkpoint-015.tar")
    kept = {".imagebuild-build", "checkpoint-015.tar", "ssh"}
    assert {p.name for p in folder.iterdir()} == kept, "the killed try's part"


def test_a_file_under_the_copys_name_is_taken_only_when_it_is_the_sources_archive(tmp_path: Path) -> None:
    """The source recorded no digest (a record from before digests, or written by hand), and the new
    build's folder holds an archive under the copy's name that a pruned build of the same id left."""
    n = Nightly(tmp_path)
    n.earlier("night-1", upto=20)
    stale = n.work / "night-2/checkpoint-015.tar"
    mark_build_folder(stale.parent, PIPELINE, "night-2")
    stale.write_bytes(b"a pruned build's tree")
    rec = n.reuse("night-2")
    assert rec.milestones[15].outputs["checkpoint_image"] == str(stale)
    assert stale.read_bytes() == b"tree after 15", "the new build would start from another build's tree"


def test_a_build_folder_that_is_a_symlink_is_neither_copied_from_nor_deleted_in(tmp_path: Path) -> None:
    n = Nightly(tmp_path)
    elsewhere = n.earlier("night-1")  # delivered, its checkpoints kept for reuse
    moved = elsewhere.rename(tmp_path / "elsewhere")
    (n.work / "night-1").symlink_to(moved)  # someone with the work root's permissions pointed it away
    n.earlier("night-2")  # delivered after it
    release_earlier_checkpoints(n.tasks[100], n.store, n.store.get("night-2"), n.tasks[100].get_target())
    assert (moved / "checkpoint-010.tar").is_file() and (moved / "checkpoint-015.tar").is_file()


def test_a_try_whose_lease_was_taken_over_copies_nothing(tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    n = Nightly(tmp_path)
    n.earlier("night-1", upto=20)
    session = n.begin("night-2")
    later = SQLiteStore(n.store.path, clock=lambda: datetime.now(timezone.utc) + timedelta(hours=1))
    later.begin("night-2", 5, owner="the next try")  # this try was paused past its lease's expiry
    session.beat()  # its heartbeat learns it
    with pytest.raises(Conflict, match="lease was lost"):
        n.reuse("night-2", session)
    assert not list((n.work / "night-2").glob("*checkpoint-*")), "a try without the lease copied a checkpoint"


def test_a_key_folder_that_is_a_symlink_is_never_taken(tmp_path: Path) -> None:
    """The source build's ``ssh/`` pointed elsewhere (someone with the work root's permissions): the
    new build would take whatever key files are there as the key its boot checks log in with. That
    checkpoint is refused; the next candidate, whose key folder is its own, is taken."""
    n = Nightly(tmp_path)
    n.earlier("night-1", upto=20)
    planted = n.earlier("night-2", upto=20)  # newer: tried first
    (planted / "ssh").rename(tmp_path / "their-keys")
    (planted / "ssh").symlink_to(tmp_path / "their-keys")
    rec = n.reuse("night-3")
    assert [a.reused_from for a in rec.attempts if a.state == 15] == [{"build_id": "night-1", "state": 15}]
    assert (n.work / "night-3/ssh/id_ed25519").read_text() == "private key of night-1\n"


def test_a_copy_failing_with_an_empty_message_tries_the_next_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error whose message is empty (``ValueError()``, ``KeyError()``: a library's) is logged by
    its type: the log line must not fail itself (it took the first of no lines), so the next
    candidate is tried and the failed one is named."""
    from airflow_provider_imagebuild.targets.local import LocalTarget

    n = Nightly(tmp_path)
    n.earlier("night-1", upto=20)
    n.earlier("night-2", upto=20)  # newer: tried first, and its copy fails
    adopt = LocalTarget.adopt_checkpoint

    def failing_for_night_2(self: LocalTarget, build: Any, source: Any, checkpoint: Any) -> Any:
        if source.build_id == "night-2":
            raise ValueError()
        return adopt(self, build, source, checkpoint)

    monkeypatch.setattr(LocalTarget, "adopt_checkpoint", failing_for_night_2)
    rec = n.reuse("night-3")
    assert [a.reused_from for a in rec.attempts if a.state == 15] == [{"build_id": "night-1", "state": 15}]
