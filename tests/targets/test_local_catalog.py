"""The local image catalog: publish, ``latest`` and retention (``target.catalog_keep``).

Publish is exercised here on small stand-in image files; the whole pipeline (real debootstrap,
mkfs and qemu-img) publishes a real qcow2 in ``tests/operators/test_local_pipeline.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import file_hash
from airflow_provider_imagebuild.targets.local import LocalTarget


def _published(tmp_path: Path, build_id: str, target: LocalTarget) -> tuple[BuildRecord, dict[str, object]]:
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    created = store.create_build(build_id, pipeline="nightly", cloud="local", image_type="base", plan=[0, 95, 100])
    image = target.image_path(created)
    image.parent.mkdir(parents=True)
    image.write_bytes(build_id.encode() * 1000)
    lease = store.begin(build_id, 95, owner="test")
    store.complete(build_id, 95, token=lease.token, outputs={"image_id": str(image), "image_sha256": file_hash(image)})
    build = store.get(build_id)
    return build, target.publish(build, str(image))


def _target(tmp_path: Path, keep: int | None) -> LocalTarget:
    settings = TargetSpec(catalog=str(tmp_path / "catalog"), work_dir=str(tmp_path / "work"), catalog_keep=keep)
    return LocalTarget(settings, pipeline="nightly", image_type="base")


def test_catalog_keeps_the_newest_versions(tmp_path: Path) -> None:
    target = _target(tmp_path, keep=2)
    folder = tmp_path / "catalog" / "nightly"
    pruned = []
    for night in range(1, 5):
        build, outputs = _published(tmp_path, f"night-{night}", target)
        pruned.append(outputs.get("catalog_pruned"))
        assert (folder / "latest").resolve() == folder / "versions" / build.build_id
        meta = json.loads((folder / "latest" / "metadata.json").read_text())
        image = folder / "latest" / meta["image"]
        assert meta["build_id"] == build.build_id and meta["sha256"] == file_hash(image)
    assert pruned == [None, None, ["night-1"], ["night-2"]]
    assert sorted(p.name for p in (folder / "versions").iterdir()) == ["night-3", "night-4"]


def test_republishing_keeps_what_was_just_published(tmp_path: Path) -> None:
    """A retried publish of an older build makes it the newest version; it is never pruned."""
    target = _target(tmp_path, keep=1)
    first, _ = _published(tmp_path, "night-1", target)
    _published(tmp_path, "night-2", target)
    again = target.publish(first, str(target.image_path(first)))
    folder = tmp_path / "catalog" / "nightly"
    assert again["catalog_pruned"] == ["night-2"]
    assert sorted(p.name for p in (folder / "versions").iterdir()) == ["night-1"]
    assert (folder / "latest").resolve() == folder / "versions" / "night-1"


def test_without_catalog_keep_nothing_is_removed(tmp_path: Path) -> None:
    target = _target(tmp_path, keep=None)
    for night in range(1, 4):
        _, outputs = _published(tmp_path, f"night-{night}", target)
        assert "catalog_pruned" not in outputs
    assert len(list((tmp_path / "catalog" / "nightly" / "versions").iterdir())) == 3


@pytest.mark.parametrize("keep", [0, -1, "all"])
def test_catalog_keep_must_be_a_positive_count(keep: object) -> None:
    with pytest.raises(ValueError, match="catalog_keep"):
        TargetSpec(catalog_keep=keep)  # type: ignore[arg-type]


def test_a_resealed_image_of_the_same_size_replaces_the_catalog_copy(tmp_path: Path) -> None:
    """A build sealed again (reset to 95) whose new image has the very size of the old one: the
    catalog holds the new image, the one ``metadata.json``'s sha256 names, not the first seal's
    copy kept because the sizes coincide. Publishing the same seal again keeps the copy."""
    target = _target(tmp_path, keep=None)
    build, outputs = _published(tmp_path, "night-1", target)
    copy = Path(str(outputs["catalog_image"]))
    first = copy.read_bytes()

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    store.reset(build.build_id, to=95, reason="sealed again with a fixed playbook")
    image = target.image_path(build)
    image.write_bytes(b"resealed" * (len(first) // 8))
    assert image.stat().st_size == len(first) and image.read_bytes() != first
    lease = store.begin(build.build_id, 95, owner="test")
    sealed = {"image_id": str(image), "image_sha256": file_hash(image)}
    store.complete(build.build_id, 95, token=lease.token, outputs=sealed)

    again = target.publish(store.get(build.build_id), str(image))
    meta = json.loads((copy.parent / "metadata.json").read_text())
    assert again["catalog_image"] == str(copy) and copy.read_bytes() == image.read_bytes()
    assert meta["sha256"] == file_hash(copy) == sealed["image_sha256"]
    before = copy.stat().st_mtime_ns
    target.publish(store.get(build.build_id), str(image))  # the same seal: the copy holds it, kept
    assert copy.stat().st_mtime_ns == before


def test_a_sealed_image_that_is_not_what_the_seal_recorded_is_not_published(tmp_path: Path) -> None:
    """The seal records the image's sha256 and ``metadata.json`` repeats it to every reader: a file
    changed since the seal (or a checksum written by hand) is refused naming the recorded checksum,
    nothing of it reaches the catalog, and ``latest`` stays on the version before."""
    target = _target(tmp_path, keep=None)
    _published(tmp_path, "night-1", target)
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    build = store.create_build("night-2", pipeline="nightly", cloud="local", image_type="base", plan=[0, 95, 100])
    image = target.image_path(build)
    image.parent.mkdir(parents=True)
    image.write_bytes(b"sealed!!" * 1000)
    lease = store.begin("night-2", 95, owner="test")
    store.complete("night-2", 95, token=lease.token, outputs={"image_id": str(image), "image_sha256": file_hash(image)})
    image.write_bytes(b"changed!" * 1000)
    with pytest.raises(InvalidInput, match=r"milestones\.95\.outputs\.image_sha256: .*does not match"):
        target.publish(store.get("night-2"), str(image))
    folder = tmp_path / "catalog" / "nightly"
    assert sorted(p.name for p in (folder / "versions").iterdir()) == ["night-1"]
    assert (folder / "latest").resolve() == folder / "versions" / "night-1"
