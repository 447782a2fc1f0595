"""Targets act only on what they can prove is their build's.

Anyone who can write the store can put any value into a build's outputs and (holding a lease)
its host metadata. These tests play that person: they point a build at another build's tree or
instance, at ``/etc/shadow``, at another build's checkpoint or a vendor image, and check that the
local target (real files) and the AWS target (EC2 on moto) refuse, or leave the foreign thing
alone, and that a build id such as ``latest`` cannot corrupt the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import BuildStore, open_store
from airflow_provider_imagebuild.targets.aws import AwsTarget
from airflow_provider_imagebuild.targets.base import Checkpoint, Host
from airflow_provider_imagebuild.targets.local import HOST_MARK, LocalTarget


def _local(tmp_path: Path) -> tuple[LocalTarget, BuildStore]:
    settings = TargetSpec(catalog=str(tmp_path / "catalog"), work_dir=str(tmp_path / "work"))
    return LocalTarget(settings, pipeline="nightly", image_type="base"), open_store(f"sqlite:///{tmp_path}/s.db")


def _tree(target: LocalTarget, build: BuildRecord) -> Host:
    """A stand-in build host tree (what bootstrap leaves: a marked root filesystem)."""
    root = target.root_of(build.build_id)
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=debian\n")
    (root / HOST_MARK).write_text(build.build_id + "\n")
    return Host(str(root), "", "base", 5, 5)


def _sealed(target: LocalTarget, store: BuildStore, build_id: str) -> BuildRecord:
    store.create_build(build_id, pipeline="nightly", cloud="local", image_type="base", plan=[0, 95, 100])
    build = store.get(build_id)
    image = target.image_path(build)
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(build_id.encode() * 100)
    lease = store.begin(build_id, 95, owner="t")
    return store.complete(build_id, 95, token=lease.token, outputs={"image_id": str(image)})


def test_a_build_named_latest_keeps_the_catalog_whole(tmp_path: Path) -> None:
    target, store = _local(tmp_path)
    first = _sealed(target, store, "night-1")
    target.publish(first, str(target.image_path(first)))
    named_latest = _sealed(target, store, "latest")
    target.publish(named_latest, str(target.image_path(named_latest)))
    folder = tmp_path / "catalog/nightly"
    assert (folder / "latest").is_symlink() and (folder / "latest").resolve() == folder / "versions/latest"
    assert (folder / "versions/night-1/metadata.json").read_text().count('"build_id": "night-1"') == 1
    again = _sealed(target, store, "night-2")
    target.publish(again, str(target.image_path(again)))
    assert (folder / "latest").resolve() == folder / "versions/night-2"
    assert sorted(p.name for p in (folder / "versions").iterdir()) == ["latest", "night-1", "night-2"]


def test_local_target_refuses_files_that_are_not_the_builds(tmp_path: Path) -> None:
    target, store = _local(tmp_path)
    victim = _sealed(target, store, "victim")
    victim_image = target.image_path(victim)
    checkpoint = target.build_dir("victim") / "checkpoint-030.tar"
    checkpoint.write_bytes(b"tar")
    store.create_build("mallory", pipeline="nightly", cloud="local", image_type="base", plan=[0, 95, 100])
    mallory = store.get("mallory")
    target.build_dir("mallory").mkdir(parents=True)
    (target.build_dir("mallory") / "link.qcow2").symlink_to("/etc/shadow")

    for image in ("/etc/shadow", str(victim_image), str(target.build_dir("mallory") / "link.qcow2"), "../x"):
        with pytest.raises(InvalidInput, match="image_id"):
            target.publish(mallory, image)
    assert not (tmp_path / "catalog").exists()  # nothing was copied anywhere
    with pytest.raises(InvalidInput, match="checkpoint_image"):
        target.launch(mallory, Checkpoint(30, str(checkpoint)))
    assert target.discard(mallory, [str(checkpoint), "/etc/passwd", str(victim_image)]) == []
    assert checkpoint.exists() and victim_image.exists() and Path("/etc/passwd").exists()


def test_a_recorded_host_of_another_build_is_neither_used_nor_removed(tmp_path: Path) -> None:
    target, store = _local(tmp_path)
    for build_id in ("victim", "mallory"):
        store.create_build(build_id, pipeline="nightly", cloud="local", image_type="base", plan=[0, 5, 95, 100])
    victim, mallory = store.get("victim"), store.get("mallory")
    victims_host = _tree(target, victim)
    assert target.alive(victim, victims_host)
    assert not target.alive(mallory, victims_host)  # mallory relaunches a host of its own instead
    with pytest.raises(InvalidInput, match="host_id"):
        target.capture(mallory, victims_host, 30, final=False)
    target.cleanup(mallory, victims_host)
    assert Path(victims_host.id, HOST_MARK).exists()
    target.cleanup(victim, victims_host)
    assert not Path(victims_host.id).exists()


def test_reserved_metadata_is_written_only_under_the_lease(tmp_path: Path) -> None:
    _, store = _local(tmp_path)
    with pytest.raises(InvalidInput, match=r"metadata\.host_id: is reserved"):
        store.create_build("b", pipeline="p", cloud="local", image_type="t", metadata={"host_id": "/srv/other"})
    store.create_build("b", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    with pytest.raises(InvalidInput, match="reserved"):
        store.set_metadata("b", {"host_id": "/srv/other"})
    lease = store.begin("b", 5, owner="worker", lease_seconds=60)
    store.set_metadata("b", {"host_id": "/srv/mine"}, token=lease.token)
    store.fail("b", 5, token=lease.token, error="boom")
    from airflow_provider_imagebuild.errors import Conflict

    with pytest.raises(Conflict, match="stale lease token"):  # a late writer cannot move the host
        store.set_metadata("b", {"host_id": "/srv/other"}, token=lease.token)
    assert store.get("b").metadata["host_id"] == "/srv/mine"


# -- AWS ---------------------------------------------------------------------------------------------
def _aws(clients: Callable[[str, str], Any], **settings: Any) -> AwsTarget:
    spec = TargetSpec(region="us-east-1", **settings)
    return AwsTarget(spec, pipeline="web", image_type="webserver", clients=clients, region="us-east-1")


def test_aws_target_acts_only_on_tagged_resources_of_the_build(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Path
) -> None:
    target = _aws(aws_clients, publish_regions=["us-east-1", "eu-west-1"], share_accounts=["123456789012"])
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    victim, mallory = (
        store.create_build(b, pipeline="web", cloud="aws", image_type="webserver", plan=[0, 10, 95, 100])
        for b in ("own-victim", "own-mallory")
    )
    green = str(ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name="green-own-victim")["ImageId"])
    target.claim_images(victim, {"us-east-1": green}, 10)
    host = target.launch(victim, Checkpoint(10, green))
    final = target.capture(victim, host, 95, final=True)["image_id"]

    for image in (green, base_ami):  # another build's checkpoint, a vendor image
        with pytest.raises(InvalidInput, match="checkpoint_image"):
            target.launch(mallory, Checkpoint(10, image))
    with pytest.raises(InvalidInput, match="host_id"):
        target.capture(mallory, host, 30, final=False)
    assert not target.alive(mallory, host)
    with pytest.raises(InvalidInput, match=r"image_id: .* not build own-mallory's image"):
        target.publish(mallory, final)  # never copied to another region, never shared
    eu = aws_clients("ec2", "eu-west-1")
    assert not eu.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["web/own-mallory"]}])["Images"]
    assert target.discard(mallory, [green, final]) == []
    assert len(ec2.describe_images(ImageIds=[green, final])["Images"]) == 2
    target.cleanup(mallory, host)
    assert target.alive(victim, host)
    target.cleanup(victim, host)
    assert not target.alive(victim, host)


def test_aws_tags_on_an_image_of_another_account_prove_nothing(
    aws_clients: Callable[[str, str], Any], ec2: Any, tmp_path: Path
) -> None:
    """Tags belong to the account that writes them, and an account may tag any AMI it can see (a
    vendor's, a public or a shared one): the tags of this build on an image another account owns
    do not make it the build's. Ownership rests on the image's OwnerId being the caller's account
    (STS GetCallerIdentity)."""
    target = _aws(aws_clients)
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    build = store.create_build("own-vendor", pipeline="web", cloud="aws", image_type="webserver", plan=[0, 10, 95, 100])
    vendor = ec2.describe_images(Owners=["amazon"])["Images"][-1]  # not the base_ami other tests launch from
    assert vendor["OwnerId"] != aws_clients("sts", "us-east-1").get_caller_identity()["Account"]
    tags = [{"Key": k, "Value": v} for k, v in target.build_tags(build, 10, "checkpoint").items()]
    ec2.create_tags(Resources=[vendor["ImageId"]], Tags=tags)
    try:
        assert not target.owns_image(build, vendor["ImageId"])
        with pytest.raises(InvalidInput, match=r"checkpoint_image: .*not build own-vendor's image"):
            target.launch(build, Checkpoint(10, vendor["ImageId"]))
        with pytest.raises(InvalidInput, match=r"image_id: .*not build own-vendor's image"):
            target.publish(build, vendor["ImageId"])
        assert target.discard(build, [vendor["ImageId"]]) == []
        assert ec2.describe_images(ImageIds=[vendor["ImageId"]])["Images"]  # still there
        launched = ec2.describe_instances(Filters=[{"Name": "tag:BuildId", "Values": ["own-vendor"]}])
        assert not [i for r in launched["Reservations"] for i in r["Instances"]]
    finally:
        ec2.delete_tags(Resources=[vendor["ImageId"]], Tags=tags)
