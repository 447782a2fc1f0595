"""Abandoning a cloud build (issue 31): lifecycle.abandon_build deletes what the record says the
build holds through the AWS target's own clean-up, against EC2 on moto: its build host is
terminated, its checkpoint images and its staged sealed image deregistered (with their snapshots),
while an image the record names but the build does not own (a vendor's) is left alone and said so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.holdings import holdings
from airflow_provider_imagebuild.build.status import build_status
from airflow_provider_imagebuild.lifecycle import abandon_build
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import Checkpoint
from tests.targets.test_aws import _green_image, _target


def _exists(ec2: Any, image_id: str) -> bool:
    return bool(ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"])


def test_abandon_on_aws_terminates_the_host_and_deregisters_its_own_images_only(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.init()
    target = _target(aws_clients)
    build = store.create_build(
        "aws-ab-1", pipeline="web", cloud="aws", image_type="webserver", plan=[0, 10, 30, 95, 100]
    )
    green = _green_image(ec2, target, build, base_ami)
    lease = store.begin("aws-ab-1", 10, owner="w")
    host = target.launch(build, Checkpoint(10, green))
    store.set_metadata("aws-ab-1", host.to_metadata(), token=lease.token, state=10, actor="w")
    store.complete("aws-ab-1", 10, token=lease.token, outputs={"checkpoint_image": green})
    lease = store.begin("aws-ab-1", 30, owner="w")
    checkpoint = target.capture(build, host, 30, final=False)["checkpoint_image"]
    outputs = {"checkpoint_image": checkpoint, "image_id": base_ami}  # the vendor's image: not the build's
    store.complete("aws-ab-1", 30, token=lease.token, outputs=outputs)
    lease = store.begin("aws-ab-1", 95, owner="w")
    sealed = target.capture(build, host, 95, final=True)["image_id"]
    store.complete("aws-ab-1", 95, token=lease.token, outputs={"image_id": sealed})
    lease = store.begin("aws-ab-1", 100, owner="w")
    store.fail("aws-ab-1", 100, token=lease.token, error="SSM throttled")
    assert {h.id for h in holdings(store.get("aws-ab-1"))} == {host.id, green, checkpoint, sealed, base_ami}

    done = abandon_build(store, "aws-ab-1", reason="superseded", actor="alice", target=target)

    assert {h.id for h in done.released} == {host.id, green, checkpoint, sealed}
    assert [h.id for h in done.not_found] == [base_ami] and done.still_held == []
    state = ec2.describe_instances(InstanceIds=[host.id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    assert not any(_exists(ec2, image) for image in (green, checkpoint, sealed))
    assert _exists(ec2, base_ami)  # named in the record, not the build's: left alone
    rec = store.get("aws-ab-1")
    assert build_status(rec) == "abandoned" and holdings(rec) == []
    assert "not found as the build's (left alone)" in rec.events[-1].detail


def test_abandon_leaves_an_image_a_halfway_publish_tagged_published(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Path
) -> None:
    """Publish tags the sealed image Role=published before it shares it region by region and points
    the SSM parameter at it; when a later region fails, the build is not delivered and still lists
    the image as staged. Abandoning it (by hand, or the watchdog's abandon_after) must not delete
    an image people may already launch: that is retention's to decide."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.init()
    target = _target(aws_clients)
    build = store.create_build("aws-ab-2", pipeline="web", cloud="aws", image_type="webserver", plan=[0, 10, 95, 100])
    green = _green_image(ec2, target, build, base_ami)
    store.complete("aws-ab-2", 10, token=store.begin("aws-ab-2", 10, owner="w").token)
    sealed = str(ec2.copy_image(SourceImageId=green, SourceRegion="us-east-1", Name="web/aws-ab-2")["ImageId"])
    published = target.build_tags(build, 100, "published")
    ec2.create_tags(Resources=[sealed], Tags=[{"Key": k, "Value": v} for k, v in published.items()])
    store.complete("aws-ab-2", 95, token=store.begin("aws-ab-2", 95, owner="w").token, outputs={"image_id": sealed})
    lease = store.begin("aws-ab-2", 100, owner="w")
    store.fail("aws-ab-2", 100, token=lease.token, error="eu-west-1: CopyImage throttled")

    done = abandon_build(store, "aws-ab-2", reason="given up", actor="alice", target=target)

    assert sealed not in {h.id for h in done.released}
    assert _exists(ec2, sealed)
