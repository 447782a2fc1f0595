"""What a watch ``image: source`` reads on AWS (#32): the newest AMI whose name matches the spec's
``source_image`` (EC2 on the loopback moto server), an AMI id as it is, nothing when none matches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.spec.watch import WatchSpec
from airflow_provider_imagebuild.targets.aws import AwsTarget
from airflow_provider_imagebuild.targets.source_images import source_image_id
from airflow_provider_imagebuild.watch import watched_value
from tests.conftest import unique


def _target(clients: Callable[[str, str], Any], source_image: str) -> AwsTarget:
    spec = TargetSpec(region="us-east-1", source_image=source_image)
    return AwsTarget(spec, pipeline="web", image_type="webserver", clients=clients, region="us-east-1")


def test_the_source_image_resolves_to_the_newest_ami_of_its_name(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str
) -> None:
    family = unique("vendor-rhel8")
    older = ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=f"{family}-2026.11")["ImageId"]
    target = _target(aws_clients, f"{family}-*")
    assert source_image_id(target) == older
    newer = ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=f"{family}-2026.12")["ImageId"]
    assert source_image_id(target) == newer  # the vendor published a newer image behind the same name
    assert source_image_id(_target(aws_clients, base_ami)) == base_ami  # an id is itself
    watch = WatchSpec(name="base", image="source")
    nothing = watched_value(watch, lambda: source_image_id(_target(aws_clients, unique("no-such-image"))))
    assert nothing.problem == "the target could not resolve its source image" and nothing.value.startswith("unavail")
