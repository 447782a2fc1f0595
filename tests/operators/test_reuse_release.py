"""What a delivery deletes of earlier builds (#32, operators/reuse.release_earlier_checkpoints): the
checkpoints their seal kept for reuse (``checkpoints_kept_for_reuse``), whatever the delivering
build's spec says now, and never one kept for a redo (``target.keep_checkpoints``). On the local
target, with real archives in real build folders."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

from airflow_provider_imagebuild.operators.reuse import release_earlier_checkpoints
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import BuildStore, open_store
from airflow_provider_imagebuild.targets.local import LocalTarget
from airflow_provider_imagebuild.targets.local_leaks import mark_build_folder

PLAN = [0, 10, 15, 95, 100]


def delivered(store: BuildStore, target: LocalTarget, build_id: str, checkpoints: tuple[int, ...] = ()) -> None:
    store.create_build(build_id, pipeline="p", cloud="local", image_type="t", plan=PLAN)
    folder = target.build_dir(build_id)
    folder.mkdir(parents=True)
    mark_build_folder(folder, "p", build_id)
    for code in PLAN[1:]:
        outputs = {}
        if code in checkpoints:
            archive = folder / f"checkpoint-{code:03d}.tar"
            archive.write_bytes(b"tar")
            outputs = {"checkpoint_image": str(archive)}
        lease = store.begin(build_id, code, owner="w")
        store.complete(build_id, code, token=lease.token, outputs=outputs)


def test_a_delivery_deletes_only_what_earlier_builds_kept_for_reuse(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    target = LocalTarget(TargetSpec(work_dir=str(tmp_path / "work")), pipeline="p", image_type="t")
    delivered(store, target, "night-1", checkpoints=(10, 15))
    # The seal kept 15 for the next build; 10 is kept for a redo (target.keep_checkpoints at the time).
    store.set_metadata("night-1", {"checkpoints_kept_for_reuse": "15@1"})
    delivered(store, target, "night-2", checkpoints=(10, 15))
    op = SimpleNamespace(made_from=None, log=logging.getLogger("test"))  # a spec without reuse: now
    release_earlier_checkpoints(op, store, store.get("night-2"), target)  # type: ignore[arg-type]
    night_1 = store.get("night-1")
    assert not (target.build_dir("night-1") / "checkpoint-015.tar").exists()
    assert (target.build_dir("night-1") / "checkpoint-010.tar").exists()
    assert night_1.metadata["checkpoints_discarded"] == "15@1"


def test_a_delivery_keeps_an_earlier_checkpoint_where_it_has_none_of_its_own(tmp_path: Path) -> None:
    """night-2 started from night-1's checkpoint after 15 (it has none after 10): night-1's after 10
    is what tomorrow's build, changed at 15, starts from, so night-2's delivery keeps it."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    target = LocalTarget(TargetSpec(work_dir=str(tmp_path / "work")), pipeline="p", image_type="t")
    delivered(store, target, "night-1", checkpoints=(10, 15))
    store.set_metadata("night-1", {"checkpoints_kept_for_reuse": "10@1,15@1"})
    delivered(store, target, "night-2", checkpoints=(15,))
    op = SimpleNamespace(made_from=None, log=logging.getLogger("test"))
    release_earlier_checkpoints(op, store, store.get("night-2"), target)  # type: ignore[arg-type]
    assert (target.build_dir("night-1") / "checkpoint-010.tar").exists()
    assert not (target.build_dir("night-1") / "checkpoint-015.tar").exists()
    assert store.get("night-1").metadata["checkpoints_discarded"] == "15@1"
