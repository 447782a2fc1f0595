"""A target's discard (what an abandon deletes images with) leaves an image a publish has begun on.

Publish makes the sealed image usable before it is done (shares it, copies it, makes a gallery
version or a content library item of it, marks it published); when a later step fails the build is
not delivered and its record still lists the sealed image as staged. Abandoning it then (by hand,
or the watchdog's ``on_failure.abandon_after``) must not delete an image people may already use:
that is retention's to decide. AWS does so by its ``Role=published`` tag
(tests/test_lifecycle.py); each other cloud is checked here against its fake, with an image of the
same build that publish never touched deleted as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import Checkpoint, file_hash
from airflow_provider_imagebuild.targets.local import LocalTarget
from tests.servers.gce import FakeGce


def test_azure_leaves_the_source_of_the_builds_gallery_version(fake_arm: Any, tmp_path: Path) -> None:
    from tests.targets.test_azure import _build, _green_image, _target

    target = _target()
    build = _build(tmp_path, "az-discard-1")
    staged = _green_image(fake_arm, target, build, "az-discard-unpublished")
    sealed = _green_image(fake_arm, target, build, "az-discard-sealed")
    target.publish(build, sealed)  # the version is made (its regions replicated) before excludeFromLatest is lifted

    assert target.discard(build, [staged, sealed]) == [staged]
    assert fake_arm.get(sealed) is not None and fake_arm.get(staged) is None


def test_gcp_leaves_a_final_image_publish_shared(fake_gce: FakeGce, tmp_path: Path) -> None:
    from tests.targets.test_gcp import _build, _target

    target = _target(share_with=["group:image-users@example.com"])
    build = _build(tmp_path, "gcp-discard-1")
    labels = target.build_labels(build, 95, "final")
    sealed = fake_gce.add_image("web-discard-sealed", labels, family="rhel8-web")["selfLink"]
    staged = fake_gce.add_image("web-discard-unpublished", labels, family="rhel8-web")["selfLink"]
    target.publish(build, sealed)

    assert target.discard(build, [staged, sealed]) == [staged]
    assert "web-discard-sealed" in fake_gce.images and "web-discard-unpublished" not in fake_gce.images


def test_openstack_leaves_an_image_publish_marked(fake_os: Any, tmp_path: Path) -> None:
    from tests.targets.test_openstack import make_target, packer_image

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    build = store.create_build("os-discard-1", pipeline="os-pipe", cloud="openstack", image_type="base",
                               plan=[0, 5, 10, 15, 95, 100])  # fmt: skip
    target = make_target("os-pipe")
    staged, sealed = packer_image(fake_os, target, build, 10), packer_image(fake_os, target, build, 95)
    target.claim_images(build, {"": staged}, 10)
    target.claim_images(build, {"": sealed}, 95)
    target.publish(build, sealed)

    assert target.discard(build, [staged, sealed]) == [staged]
    assert sealed in fake_os.images and staged not in fake_os.images


def test_vsphere_leaves_the_template_of_the_builds_content_library_item(tmp_path: Path, vsphere_library: str) -> None:
    from airflow_provider_imagebuild.build.identity import BuildIdentity
    from tests.conftest import unique
    from tests.targets.test_vsphere import make_target, packer_clone

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    build = store.register(unique("vs"), BuildIdentity("vs-pipe", "vsphere", "base", plan=(0, 5, 10, 15, 95, 100)))
    target = make_target("vs-pipe")
    green = target.packer_image_name(build, "vs-pipe", 10)
    packer_clone(target, green)
    target.claim_images(build, {"": green}, 10)
    host = target.launch(build, Checkpoint(10, green))
    final = target.capture(build, host, 95, final=True)["image_id"]
    target.publish(build, final)

    assert target.discard(build, [final]) == [] and target.owns_image(build, final)
    target.capture(build, host, 95, final=True)  # sealed again: the item holds the first seal, not this one
    assert target.discard(build, [final, green]) == [final, green]
    target.cleanup(build, host)


def test_local_leaves_the_catalog_version_a_halfway_publish_made(tmp_path: Path) -> None:
    """The local target publishes a copy into its catalog; discard deletes only files of the
    build's work folder, so the catalog's version (and ``latest``) survive an abandon."""
    target = LocalTarget(TargetSpec(catalog=str(tmp_path / "catalog"), work_dir=str(tmp_path / "work")),
                         pipeline="nightly", image_type="base")  # fmt: skip
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    build = store.create_build("loc-discard-1", pipeline="nightly", cloud="local", image_type="base", plan=[0, 95, 100])
    image = target.image_path(build)
    image.parent.mkdir(parents=True)
    image.write_bytes(b"sealed" * 1000)
    lease = store.begin(build.build_id, 95, owner="t")
    build = store.complete(build.build_id, 95, token=lease.token,
                           outputs={"image_id": str(image), "image_sha256": file_hash(image)})  # fmt: skip
    published = target.publish(build, str(image))

    assert target.discard(build, [published["catalog_image"], str(image)]) == [str(image.resolve())]
    assert Path(published["catalog_image"]).is_file() and (tmp_path / "catalog/nightly/latest").resolve().is_dir()
