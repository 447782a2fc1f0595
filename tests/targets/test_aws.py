"""The AWS target against EC2 and SSM on a loopback moto server: build host, checkpoints, the
final image, publication to two regions with sharing, tags and the SSM parameter, clean-up, and
clear errors for an unknown region and an unreachable endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.aws import AwsTarget
from airflow_provider_imagebuild.targets.base import Checkpoint


def _target(clients: Callable[[str, str], Any], **settings: Any) -> AwsTarget:
    spec = TargetSpec(region="us-east-1", **settings)
    return AwsTarget(spec, pipeline="web", image_type="webserver", clients=clients, region="us-east-1")


def _build(tmp_path: Any, build_id: str) -> Any:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    return store.create_build(build_id, pipeline="web", cloud="aws", image_type="webserver", plan=[0, 10, 95, 100])


def _green_image(ec2: Any, target: AwsTarget, build: Any, base_ami: str) -> str:
    """A green image of the build: a copy of the vendor image, claimed as Packer's would be."""
    copy = ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=f"green-{build.build_id}")
    image = str(copy["ImageId"])
    target.claim_images(build, {"us-east-1": image}, 10)
    return image


def test_host_checkpoint_seal_publish_and_cleanup(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Any
) -> None:
    target = _target(
        aws_clients,
        publish_regions=["us-east-1", "eu-west-1"],
        share_accounts=["123456789012"],
        ssm_parameter="/imagebuild/web/image_id",
    )
    build = _build(tmp_path, "aws-target-1")
    green = _green_image(ec2, target, build, base_ami)
    host = target.launch(build, Checkpoint(10, green))
    assert target.alive(build, host) and host.synced == 10
    tags = {
        t["Key"]: t["Value"]
        for t in ec2.describe_instances(InstanceIds=[host.id])["Reservations"][0]["Instances"][0]["Tags"]
    }
    assert tags["BuildId"] == "aws-target-1" and tags["Role"] == "buildhost"

    checkpoint = target.capture(build, host, 30, final=False)["checkpoint_image"]
    again = target.capture(build, host, 30, final=False)["checkpoint_image"]
    assert again == checkpoint  # a retried capture finds the image its lost response made
    final = target.capture(build, host, 95, final=True)["image_id"]
    image = ec2.describe_images(ImageIds=[final])["Images"][0]
    image_tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    expected = {"BuildId": "aws-target-1", "Pipeline": "web", "Milestone": "95", "ImageType": "webserver"}
    assert image_tags.items() >= expected.items()

    assert target.discard(build, [checkpoint, "ami-00000000"]) == [checkpoint]  # an image already gone is fine
    assert ec2.describe_images(Filters=[{"Name": "image-id", "Values": [checkpoint]}])["Images"] == []

    published = target.publish(build, final)
    assert published == target.publish(build, final)  # idempotent: the copy is found, not made twice
    copies = published["published_images"]
    assert set(copies) == {"us-east-1", "eu-west-1"} and copies["us-east-1"] == final
    eu = aws_clients("ec2", "eu-west-1")
    copy = eu.describe_images(ImageIds=[copies["eu-west-1"]])["Images"][0]
    assert {t["Key"]: t["Value"] for t in copy["Tags"]}["BuildId"] == "aws-target-1"
    perms = eu.describe_image_attribute(ImageId=copies["eu-west-1"], Attribute="launchPermission")
    assert perms["LaunchPermissions"] == [{"UserId": "123456789012"}]
    for region, image_id in copies.items():
        value = aws_clients("ssm", region).get_parameter(Name="/imagebuild/web/image_id")["Parameter"]["Value"]
        assert value == image_id

    target.cleanup(build, host)
    target.cleanup(build, host)  # idempotent
    assert not target.alive(build, host)


def test_unknown_region_is_refused_before_anything_is_created(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Any
) -> None:
    target = _target(aws_clients, publish_regions=["us-east-1", "xx-nowhere-9"])
    before = len(ec2.describe_instances()["Reservations"])
    with pytest.raises(InvalidInput, match=r"target.publish_regions: unknown region 'xx-nowhere-9'"):
        target.launch(_build(tmp_path, "aws-target-2"), Checkpoint(10, base_ami))
    assert len(ec2.describe_instances()["Reservations"]) == before


def test_missing_image_and_unreachable_endpoint_name_the_call(
    aws_clients: Callable[[str, str], Any], tmp_path: Any
) -> None:
    import boto3
    from botocore.config import Config

    from tests.conftest import free_port

    build = _build(tmp_path, "aws-target-3")
    with pytest.raises(
        TargetError, match=r"EC2 DescribeImages ami-0000000000000dead \(checkpoint of milestone 10\): InvalidAMIID"
    ):
        _target(aws_clients).launch(build, Checkpoint(10, "ami-0000000000000dead"))

    endpoint = f"http://127.0.0.1:{free_port()}"
    config = Config(connect_timeout=1, retries={"total_max_attempts": 1})

    def dead(service: str, region: str) -> Any:
        return boto3.client(service, region_name=region, endpoint_url=endpoint, config=config)

    target = AwsTarget(
        TargetSpec(region="us-east-1"),
        pipeline="web",
        image_type="webserver",
        clients=dead,
        region="us-east-1",
        endpoint=endpoint,
    )
    with pytest.raises(TargetError, match=rf"EC2 DescribeRegions: cannot reach the endpoint {endpoint}"):
        target.launch(build, Checkpoint(10, "ami-1"))


def test_packer_artifacts_of_another_account_or_build_are_never_tagged(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Any
) -> None:
    """Packer's manifest is whatever the template and its plugins wrote: an AMI id of another
    account (a vendor's, a public or a shared one) is refused before it gets this build's tags,
    since tags are the build's proof of ownership everywhere else; so is this account's image of
    another build, and an id that is not an image at all."""
    target = _target(aws_clients)
    build = _build(tmp_path, "aws-claim-1")
    vendor = ec2.describe_images(Owners=["amazon"])["Images"][-2]
    account = aws_clients("sts", "us-east-1").get_caller_identity()["Account"]
    assert vendor["OwnerId"] != account
    with pytest.raises(InvalidInput, match=rf"packer artifact: {vendor['ImageId']} in us-east-1 is owned by account "
                       rf"{vendor['OwnerId']}, not this account \({account}\)"):  # fmt: skip
        target.claim_images(build, {"us-east-1": vendor["ImageId"]}, 10)
    tags = ec2.describe_images(ImageIds=[vendor["ImageId"]])["Images"][0].get("Tags") or []
    assert not [t for t in tags if t["Key"] == "BuildId"] and not target.owns_image(build, vendor["ImageId"])

    theirs = _green_image(ec2, target, _build(tmp_path / "other", "aws-claim-2"), base_ami)
    with pytest.raises(InvalidInput, match=rf"packer artifact: {theirs} .*belongs to another build"):
        target.claim_images(build, {"us-east-1": theirs}, 10)
    assert not target.owns_image(build, theirs)
    with pytest.raises(TargetError, match="ami-0000000000000dead"):
        target.claim_images(build, {"us-east-1": "ami-0000000000000dead"}, 10)

    ours = _green_image(ec2, target, build, base_ami)  # Packer's own AMI of this account: claimed
    assert target.owns_image(build, ours)
    target.claim_images(build, {"us-east-1": ours}, 10)  # a retried claim of the same image
    assert target.owns_image(build, ours)


def _snapshots_of(ec2: Any, image_id: str) -> list[str]:
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def _snapshot_exists(ec2: Any, snapshot_id: str) -> bool:
    return bool(ec2.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])["Snapshots"])


def test_a_discarded_checkpoint_takes_its_snapshots_along(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Any
) -> None:
    """Deregistering an AMI keeps its EBS snapshots (and their cost) unless they are deleted too:
    a checkpoint the seal discards goes with the snapshots EC2 made for it, and a snapshot that is
    not the image's own (another account's, or made for another image) stays."""
    target = _target(aws_clients)
    build = _build(tmp_path, "aws-snapshots-1")
    green = _green_image(ec2, target, build, base_ami)
    host = target.launch(build, Checkpoint(10, green))
    checkpoint = target.capture(build, host, 30, final=False)["checkpoint_image"]
    snapshots = _snapshots_of(ec2, checkpoint)
    assert snapshots and all(_snapshot_exists(ec2, s) for s in snapshots)
    kept = _snapshots_of(ec2, green)

    assert target.discard(build, [checkpoint]) == [checkpoint]
    assert not [s for s in snapshots if _snapshot_exists(ec2, s)], "the checkpoint's snapshots were left behind"
    assert all(_snapshot_exists(ec2, s) for s in kept)  # the green image's own are untouched
    assert target.discard(build, [checkpoint]) == []  # gone already: nothing to do
    target.cleanup(build, host)


def test_the_ec2_fake_refuses_the_ami_names_and_descriptions_ec2_refuses(ec2: Any, base_ami: str) -> None:
    """moto takes any name; tests/servers/moto_serial.py makes it refuse what CreateImage,
    CopyImage and RegisterImage document as refused, so a name the target gives EC2 is checked."""
    from botocore.exceptions import ClientError

    from tests.conftest import unique

    def copy(name: str, description: str = "") -> str:
        return str(ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=name,
                                  Description=description)["ImageId"])  # fmt: skip

    for bad in ("x" * 129, "web:rhel8", "web/build#1", "naïve-image"):
        with pytest.raises(ClientError, match=r"InvalidAMIName\.Malformed"):
            copy(bad)
    name = unique("ok/(web) [1] it's @ 2026_12.04")
    copy(name)
    with pytest.raises(ClientError, match=r"InvalidAMIName\.Duplicate"):
        copy(name)
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        copy(unique("long-description"), "d" * 256)
    copy(unique("description"), "d" * 255)


def test_every_ami_name_of_a_build_fits_ec2_however_long_its_pipeline_and_build_id(
    aws_clients: Callable[[str, str], Any], tmp_path: Any
) -> None:
    """Names come from one place, within EC2's rules: readable where ``<pipeline>/<build id>/mNNN``
    fits 128 characters, else shortened to the pipeline's start and a digest of both, which no
    readable name can equal ('@' is in no pipeline or build id); descriptions fit 255."""
    import re

    ami_name = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")
    names: set[str] = set()
    for pipeline, build_id in (("p" * 128, "b" * 128), ("p" * 128, "c" * 128), ("web", "b1"), ("w" * 63, "x" * 111)):
        spec = TargetSpec(region="us-east-1")
        target = AwsTarget(spec, pipeline=pipeline, image_type="t", clients=aws_clients, region="us-east-1")
        store = open_store(f"sqlite:///{tmp_path}/names.db")
        build = store.create_build(build_id, pipeline=pipeline, cloud="aws", image_type="t", plan=[0, 10, 95, 100])
        for milestone in (None, 5, 10, 95):
            name = target.image_name(build, milestone)
            assert ami_name.fullmatch(name) and name not in names, name
            assert target.packer_image_name(build, pipeline, 10) == target.image_name(build, 10)
            assert len(target.image_description(build, milestone)) <= 255
            names.add(name)
    assert "web/b1/m010" in names


# -- reuse (#32): a new build's own copy of an earlier build's checkpoint ---------------------------
def _images_named(ec2: Any, name: str) -> list[dict[str, Any]]:
    return list(ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"])


def _snapshots_tagged(ec2: Any, build_id: str) -> list[str]:
    found = ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:BuildId", "Values": [build_id]}])
    return [s["SnapshotId"] for s in found["Snapshots"]]


def test_a_checkpoint_copy_that_never_becomes_available_leaves_nothing_behind(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, moto_url: str, tmp_path: Any
) -> None:
    """EC2 copies an AMI's snapshots in the background: a copy still pending after the target's
    bound (or failed) is deregistered with its snapshots before the error, and a later adopt makes
    a fresh one."""
    from tests.servers.moto_serial import set_copy_outcome

    target = _target(aws_clients)
    target.copy_wait = {"Delay": 1, "MaxAttempts": 2}
    source, build = _build(tmp_path, "aws-reuse-src-1"), _build(tmp_path / "new", "aws-reuse-new-1")
    green = _green_image(ec2, target, source, base_ami)
    name = target.image_name(build, 10, copied=True)
    set_copy_outcome(moto_url, green, "pending")
    try:
        with pytest.raises(TargetError, match=rf"CopyImage {green} to ami-\w+ \({name}\): not available within 2 s"):
            target.adopt_checkpoint(build, source, Checkpoint(10, green))
    finally:
        set_copy_outcome(moto_url, green, "")
    assert _images_named(ec2, name) == [] and _snapshots_tagged(ec2, build.build_id) == []
    assert target.owns_image(source, green)  # the source's checkpoint is untouched

    copy = target.adopt_checkpoint(build, source, Checkpoint(10, green))["checkpoint_image"]
    assert [i["ImageId"] for i in _images_named(ec2, name)] == [copy] and target.owns_image(build, copy)


def test_a_checkpoint_not_the_named_source_builds_is_never_copied(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Any
) -> None:
    """The record names the checkpoint; the image's account and tags must say it is that build's
    checkpoint after that milestone: another pipeline's, another build's, a vendor's image or the
    source's image of another milestone is refused and nothing is copied; nor is an image someone
    made under the copy's name taken or deregistered."""
    target = _target(aws_clients)
    source, build = _build(tmp_path, "aws-reuse-src-2"), _build(tmp_path / "new", "aws-reuse-new-2")
    other_pipeline = AwsTarget(TargetSpec(region="us-east-1"), pipeline="api", image_type="webserver",
                               clients=aws_clients, region="us-east-1")  # fmt: skip
    theirs = str(ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name="api/aws-reuse-src-2/m010")
                 ["ImageId"])  # fmt: skip
    other_pipeline.claim_images(_build(tmp_path / "api", "aws-reuse-src-2"), {"us-east-1": theirs}, 10)  # same id
    sibling = _green_image(ec2, target, _build(tmp_path / "sibling", "aws-reuse-sibling-2"), base_ami)
    vendor = ec2.describe_images(Owners=["amazon"])["Images"][-2]["ImageId"]
    green = _green_image(ec2, target, source, base_ami)
    before = {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]}
    for image, code in ((theirs, 10), (sibling, 10), (vendor, 10), (green, 30), ("ami-0000000000000dead", 10)):
        with pytest.raises(InvalidInput, match=rf"{image} is not build aws-reuse-src-2's checkpoint after milestone "
                           rf"{code} .*it is not copied"):  # fmt: skip
            target.adopt_checkpoint(build, source, Checkpoint(code, image))
    assert {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]} == before
    assert _snapshots_tagged(ec2, build.build_id) == []

    name = target.image_name(build, 10, copied=True)
    squatter = str(ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=name)["ImageId"])
    with pytest.raises(InvalidInput, match=rf"an image named {name} \({squatter}\) exists and is not build "):
        target.adopt_checkpoint(build, source, Checkpoint(10, green))
    assert [i["ImageId"] for i in _images_named(ec2, name)] == [squatter]


def test_a_retried_adopt_returns_the_copy_it_made_which_is_the_new_builds(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Any
) -> None:
    """The copy is named after the new build and milestone, so a retry finds it instead of making a
    second; it is tagged the new build's (with its snapshots, for gc), launched from, and deleted
    with its snapshots by the new build's discard, the source's checkpoint untouched."""
    target = _target(aws_clients)
    source, build = _build(tmp_path, "aws-reuse-src-3"), _build(tmp_path / "new", "aws-reuse-new-3")
    green = _green_image(ec2, target, source, base_ami)
    adopted = target.adopt_checkpoint(build, source, Checkpoint(10, green))
    assert target.adopt_checkpoint(build, source, Checkpoint(10, green)) == adopted
    copy = adopted["checkpoint_image"]
    name = target.image_name(build, 10, copied=True)
    assert adopted == {"checkpoint_image": copy, "checkpoint_image_name": name, "image_region": "us-east-1",
                       "checkpoint_gb": 15}  # fmt: skip
    assert [i["ImageId"] for i in _images_named(ec2, name)] == [copy] and copy != green
    tags = {t["Key"]: t["Value"] for t in ec2.describe_images(ImageIds=[copy])["Images"][0]["Tags"]}
    assert tags.items() >= {"BuildId": "aws-reuse-new-3", "Pipeline": "web", "Milestone": "10", "Role": "checkpoint",
                            "ReusedFromBuild": "aws-reuse-src-3"}.items()  # fmt: skip
    assert target.owns_image(build, copy) and not target.owns_image(source, copy)
    snapshots = _snapshots_of(ec2, copy)
    assert _snapshots_tagged(ec2, build.build_id) == snapshots and not set(snapshots) & set(_snapshots_of(ec2, green))

    host = target.launch(build, Checkpoint(10, copy))
    assert host.image == copy
    target.cleanup(build, host)
    assert target.discard(source, [copy]) == []  # not the source's to delete
    assert target.discard(build, [copy]) == [copy]
    assert not [s for s in snapshots if _snapshot_exists(ec2, s)] and target.owns_image(source, green)


def test_the_ec2_fake_copies_an_image_as_ec2_does(ec2: Any, base_ami: str) -> None:
    """moto drops CopyImage's TagSpecifications and takes a copy without a name; the fake
    (tests/servers/moto_serial.py) tags the copy and its new snapshots, names the source, and refuses
    what the EC2 API reference refuses, before anything is made."""
    from botocore.exceptions import ClientError

    from tests.conftest import unique

    def copy(name: str, *specs: tuple[str, dict[str, str]]) -> str:
        tagging = [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
                   for kind, tags in specs]  # fmt: skip
        return str(ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=name,
                                  TagSpecifications=tagging)["ImageId"])  # fmt: skip

    refused = unique("refused-copy")
    for specs, error in (
        ((("volume", {"a": "b"}),), "InvalidParameterValue"),  # only image and snapshot
        ((("image", {"aws:owner": "me"}),), "InvalidParameterValue"),
        ((("image", {"k" * 128: "v"}),), "InvalidParameterValue"),
        ((("snapshot", {"k": "v" * 257}),), "InvalidParameterValue"),
        ((("image", {f"k{i}": "v" for i in range(51)}),), "TagLimitExceeded"),
    ):
        with pytest.raises(ClientError, match=error):
            copy(refused, *specs)
    assert _images_named(ec2, refused) == []
    image_id = copy(unique("tagged-copy"), ("image", {"Role": "x"}), ("snapshot", {"Role": "y"}))
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    assert (image["SourceImageId"], image["SourceImageRegion"], image["Tags"]) == (
        base_ami, "us-east-1", [{"Key": "Role", "Value": "x"}])  # fmt: skip
    snapshot = ec2.describe_snapshots(SnapshotIds=_snapshots_of(ec2, image_id))["Snapshots"][0]
    assert snapshot["Tags"] == [{"Key": "Role", "Value": "y"}]
