"""Retention on AWS (:mod:`.retire`): the pipeline's published AMIs, their references, their deletion.

Published AMIs are the sealed image (retagged ``Role=published`` by the publish) and its copies in
the publish regions; sharing with other accounts (``share_accounts``) grants launch permission on
those same AMIs, so deleting an AMI of this account ends every share and there is nothing of ours
in the other accounts to delete. They are looked for in the target's region, the spec's
``publish_regions`` and every region a build's record says it published to (a region dropped from
the spec since still holds that build's copies).

Proof: ``DescribeImages`` with ``Owners=self`` (another account's AMI with the same tags is never
listed), the ``OwnerId`` checked against STS, and the tags ``ManagedBy``, ``Pipeline`` (this one),
``BuildId`` and ``Role=published``, read again just before ``DeregisterImage``; the AMI's EBS
snapshots go with it (:meth:`.aws.AwsTarget._deregister`: only those made for that image).

References EC2 lets us check: the SSM parameter publish writes (``target.ssm_parameter``, default
``/imagebuild/<pipeline>/image_id``) in each region, and every version of every launch template of
the account in the image's region (``ImageId`` of its launch data). An AMI either names stays.
A ``resolve:ssm:`` ImageId in a template resolves through that parameter, which is checked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_imagebuild.build.image_retention import PublishedImage
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.aws import AWS_REGION_RE, aws_errors
from airflow_provider_imagebuild.targets.base import MANAGED_BY
from airflow_provider_imagebuild.targets.leaks import parse_time
from airflow_provider_imagebuild.targets.retire import DELETED, ImageRetiring

log = logging.getLogger(__name__)

PUBLISHED = "published"  # the Role tag publish gives the sealed image and its copies


def _tag_map(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


class AwsPublishedImages(ImageRetiring):
    """The published AMIs of one AWS target's pipeline."""

    def __init__(self, target: Any) -> None:
        self.target = target  # an AwsTarget: its clients, account, settings and _deregister
        self.pipeline = str(target.pipeline)

    def parameter(self) -> str:
        """The SSM parameter publish points at the newest image (as :meth:`.aws.AwsTarget.publish`)."""
        return str(self.target.settings.ssm_parameter or f"/imagebuild/{self.pipeline}/image_id")

    def regions(self, builds: Sequence[BuildRecord]) -> list[str]:
        """The target's region, the publish regions, and every region a record published to."""
        found = [self.target.region, *self.target.publish_regions]
        for rec in builds:
            published = rec.merged_outputs().get("published_images")
            if isinstance(published, Mapping):
                found.extend(r for r in published if isinstance(r, str) and AWS_REGION_RE.fullmatch(r))
        return list(dict.fromkeys(found))

    def _ours(self, image: Mapping[str, Any], build_id: str | None = None) -> bool:
        tags = _tag_map(image)
        return (
            str(image.get("OwnerId", "")) == self.target.account
            and tags.get("ManagedBy") == MANAGED_BY
            and tags.get("Pipeline") == self.pipeline
            and tags.get("Role") == PUBLISHED
            and bool(tags.get("BuildId"))
            and (build_id is None or tags.get("BuildId") == build_id)
            and image.get("State", "available") != "deregistered"
        )

    def published_images(self, builds: Sequence[BuildRecord]) -> list[PublishedImage]:
        filters = [
            {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
            {"Name": "tag:Pipeline", "Values": [self.pipeline]},
            {"Name": "tag:Role", "Values": [PUBLISHED]},
        ]
        found = []
        for region in self.regions(builds):
            with self.target.api(f"DescribeImages in {region} (retention)"):
                images = self.target.ec2(region).describe_images(Owners=["self"], Filters=filters).get("Images", [])
            for image in images:
                if self._ours(image):
                    tags = _tag_map(image)
                    found.append(PublishedImage(str(image["ImageId"]), region, tags["BuildId"],
                                                parse_time(image.get("CreationDate")),
                                                name=str(image.get("Name", ""))))  # fmt: skip
        return found

    def image_references(self, images: Sequence[PublishedImage]) -> dict[str, str]:
        wanted: dict[str, set[str]] = {}
        for image in images:
            wanted.setdefault(image.region, set()).add(image.id)
        refs: dict[str, str] = {}
        for region, ids in wanted.items():
            for image_id, what in self._references_in(region):
                if image_id in ids:
                    refs.setdefault(image_id, what)
        return refs

    def _references_in(self, region: str) -> list[tuple[str, str]]:
        """(image id, what refers to it) in ``region``: the SSM parameter and launch templates."""
        found: list[tuple[str, str]] = []
        name = self.parameter()
        ssm = self.target.clients("ssm", region)
        with aws_errors(f"SSM GetParameter {name} in {region}", endpoint=self.target.endpoint):
            try:
                value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
                found.append((str(value), f"SSM parameter {name} in {region}"))
            except ssm.exceptions.ParameterNotFound:
                pass
        ec2 = self.target.ec2(region)
        with self.target.api(f"DescribeLaunchTemplates in {region} (retention)"):
            pages = ec2.get_paginator("describe_launch_templates").paginate()
            templates = [t for page in pages for t in page.get("LaunchTemplates", [])]
            for template in templates:
                label = template.get("LaunchTemplateName") or template["LaunchTemplateId"]
                versions = ec2.get_paginator("describe_launch_template_versions").paginate(
                    LaunchTemplateId=template["LaunchTemplateId"]
                )
                for page in versions:
                    for version in page.get("LaunchTemplateVersions", []):
                        image_id = (version.get("LaunchTemplateData") or {}).get("ImageId")
                        if image_id:
                            what = f"launch template {label} version {version.get('VersionNumber')} in {region}"
                            found.append((str(image_id), what))
        return found

    def retire_image(self, image: PublishedImage) -> str:
        described = self.target._described_image(image.id, image.region)
        if described is None or not self._ours(described, image.build_id):
            log.info("AMI %s is gone or no longer this pipeline's published image; left alone", image.where)
            return ""
        if not self.target._deregister(described, image.region):  # gone meanwhile
            return ""
        log.info("retired published AMI %s of build %s", image.where, image.build_id)
        return DELETED
