"""The AWS target: EC2 build hosts and AMIs, published to regions, accounts and SSM.

Clients come from the Amazon provider's ``AwsBaseHook`` (credentials, region and endpoint from
``aws_conn_id``) inside Airflow, or from any ``(service, region) -> client`` factory (tests,
CLI). Every call that creates something looks for what an earlier attempt already made first
(images by name, copies by name), so a retried milestone does not make duplicates. boto3 is
imported only when a milestone runs, never at DAG parse time.

Ownership is proven by the account and the tags: every instance and image this target (or the
Packer milestone through :meth:`AwsTarget.claim_images`) makes carries ``BuildId``, ``Pipeline``
and ``ManagedBy``, and an image must also be owned by the caller's account (its ``OwnerId``
against STS ``GetCallerIdentity``): tags are whatever the account that writes them says, and an
account may tag any AMI it can see (a vendor's, a public or a shared one). Instances need no such
check: EC2 describes only the caller's own. An instance or image named in the store that fails the
proof is never launched from, captured, copied, shared, deregistered or terminated, and an image
Packer reports gets the build's tags only if it is the caller's account's and no other build's.

Names: every AMI name (Packer's, checkpoints, the final image, its copies) and description comes
from :meth:`AwsTarget.image_name` and :meth:`AwsTarget.image_description`, within EC2's rules
(CreateImage: a name of 3-128 characters of ``[A-Za-z0-9()[] ./'@_-]``, a description of up to
255). A name is ``<pipeline>/<build id>[/mNNN]`` where that fits (neither part can contain ``/``,
so two builds never share one), else ``<pipeline, cut>@<digest of both>[/mNNN]`` (``@`` is in no
pipeline or build id, so a shortened name never equals a readable one); the tags carry the whole
identity either way. A checkpoint copied from an earlier build (reuse, #32) is ``.../rNNN``.

A Packer milestone retried after Packer made its AMI (amazon-ebs stops with "is used by an existing
AMI") adopts that AMI if it is provably the build's (:meth:`AwsTarget.packer_artifacts`). An AMI
is deregistered with its snapshots: EBS snapshots outlive their AMI and cost what they hold.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.aws import AwsClients, aws_errors, client_error_code
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.rerun import rerun_advice
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.targets.base import (
    CHECKPOINT_OUTPUT,
    IMAGE_OUTPUT,
    MANAGED_BY,
    Checkpoint,
    Host,
    build_digest,
    built_with_tags,
    ssh_ansible_vars,
)
from airflow_provider_imagebuild.targets.launch import PENDING, ROLE, RUNNING, STOPPED, LaunchTestTarget, TestInstance
from airflow_provider_imagebuild.targets.leaks import LeakCollecting, Resource, parse_time

log = logging.getLogger(__name__)

ClientSource = Callable[[str, str], Any]  # (service, region) -> boto3 client, as AwsClients.client
WAIT = {"Delay": 5, "MaxAttempts": 360}  # up to 30 min: AMIs of large volumes take that long
LIVE_STATES = {"pending", "running"}
MAX_IMAGE_NAME = 128
MAX_DESCRIPTION = 255
# CreateImage/CopyImage/RegisterImage: "3-128 alphanumeric characters, parentheses (()), square
# brackets ([]), spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@),
# or underscores(_)" (EC2 API reference); Packer's amazon-ebs checks the same before it starts.
AMI_NAME_RE = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}", re.ASCII)
SHORT_PIPELINE = 64  # of a shortened name: 64 + '@' + a 32-character digest + '/m095' fit 128


def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _tag_map(resource: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


class AwsTarget(LaunchTestTarget, LeakCollecting):
    name = "aws"
    # How long a copy of an earlier build's checkpoint (adopt_checkpoint) may take to become
    # available: as long as a capture; a copy still pending then is cancelled, the build runs cold.
    copy_wait: Mapping[str, int] = WAIT

    def __init__(
        self,
        settings: TargetSpec,
        *,
        pipeline: str,
        image_type: str,
        clients: ClientSource,
        region: str,
        endpoint: str | None = None,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.image_type = image_type
        self.clients = clients
        self.region = settings.region or region
        self.endpoint = endpoint
        self.credentials = credentials or {}
        self._regions_checked = False
        self._account: str | None = None

    @classmethod
    def from_settings(cls, settings: TargetSpec, *, pipeline: str, image_type: str) -> AwsTarget:
        """Clients, region, endpoint and credentials from the Airflow connection ``aws_conn_id``."""
        clients = AwsClients.from_connection(settings.aws_conn_id, settings.region)
        region = settings.region or clients.region or "us-east-1"
        return cls(
            settings,
            pipeline=pipeline,
            image_type=image_type,
            clients=clients.client,
            region=region,
            endpoint=clients.endpoint_url,
            credentials=clients.credentials(),
        )

    # -- helpers -------------------------------------------------------------------------------
    def ec2(self, region: str | None = None) -> Any:
        return self.clients("ec2", region or self.region)

    def api(self, what: str) -> contextlib.AbstractContextManager[None]:
        return aws_errors(f"EC2 {what}", endpoint=self.endpoint)

    def check_regions(self) -> None:
        """Refuse unknown regions before anything is created in any of them."""
        if self._regions_checked:
            return
        with self.api("DescribeRegions"):
            known = {r["RegionName"] for r in self.ec2().describe_regions(AllRegions=True)["Regions"]}
        for field, regions in (("target.region", [self.region]), ("target.publish_regions", self.publish_regions)):
            for region in regions:
                if region not in known:
                    raise InvalidInput(field, f"unknown region {region!r} (EC2 knows {len(known)} regions)")
        self._regions_checked = True

    @property
    def publish_regions(self) -> list[str]:
        return list(self.settings.publish_regions or [self.region])

    def build_tags(self, build: BuildRecord, milestone: int, role: str) -> dict[str, str]:
        return {
            "BuildId": build.build_id,
            "Pipeline": self.pipeline,
            "Milestone": str(milestone),
            "ImageType": self.image_type,
            "Role": role,
            "ManagedBy": MANAGED_BY,
        }

    def is_builds(self, build: BuildRecord, resource: dict[str, Any]) -> bool:
        """Whether an instance or image carries this build's tags."""
        tags = _tag_map(resource)
        return (
            tags.get("BuildId") == build.build_id
            and tags.get("Pipeline") == self.pipeline
            and tags.get("ManagedBy") == MANAGED_BY
        )

    @property
    def account(self) -> str:
        """The caller's account id (STS GetCallerIdentity, asked once; it needs no permission)."""
        if self._account is None:
            with aws_errors("STS GetCallerIdentity", endpoint=self.endpoint):
                self._account = str(self.clients("sts", self.region).get_caller_identity()["Account"])
        return self._account

    def is_builds_image(self, build: BuildRecord, image: dict[str, Any]) -> bool:
        """Whether an image is this account's and carries this build's tags."""
        return str(image.get("OwnerId", "")) == self.account and self.is_builds(build, image)

    def image_name(self, build: BuildRecord, milestone: int | None = None, *, copied: bool = False) -> str:
        """The name of the build's final image (``milestone`` None) or of the image made after
        ``milestone`` (Packer's, a checkpoint; ``copied``: the build's copy of an earlier build's
        checkpoint, :meth:`adopt_checkpoint`): the one place AMI names come from (see the module's
        docstring)."""
        suffix = "" if milestone is None else f"/{'r' if copied else 'm'}{milestone:03d}"
        name = f"{self.pipeline}/{build.build_id}{suffix}"
        if len(name) > MAX_IMAGE_NAME:
            digest = build_digest(self.pipeline, build.build_id, 32)
            name = f"{self.pipeline[:SHORT_PIPELINE]}@{digest}{suffix}"
        if not AMI_NAME_RE.fullmatch(name):  # pipeline names and build ids are checked narrower still
            raise InvalidInput("pipeline", f"{name!r} is not an AMI name EC2 takes")
        return name

    def image_description(self, build: BuildRecord, milestone: int | None = None) -> str:
        """The description of the image :meth:`image_name` names (up to 255 characters): the
        pipeline and build, the digest in the build id's place where both do not fit."""
        after = "" if milestone is None else f" after milestone {milestone}"
        text = f"{self.pipeline} {build.build_id}{after}"
        if len(text) > MAX_DESCRIPTION:
            text = f"{self.pipeline} build {build_digest(self.pipeline, build.build_id, 32)}{after}"
        return text

    def _image_by_name(
        self, build: BuildRecord, name: str, region: str | None = None, description: str | None = None
    ) -> dict[str, Any] | None:
        """The image an earlier attempt made under ``name`` (its response was lost), if it is
        this build's; a foreign image under the name is refused, never adopted. With
        ``description``, an untagged image of this account with that name and description is
        taken too: a region copy whose tags were not written yet (CopyImage's tags may not be)."""
        with self.api("DescribeImages"):
            images = self.ec2(region).describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])
        found = [i for i in images.get("Images", []) if i.get("State") != "deregistered"]
        if not found:
            return None
        untagged_copy = (
            description is not None
            and "BuildId" not in _tag_map(found[0])
            and found[0].get("Description") == description
        )
        if not untagged_copy and not self.is_builds(build, found[0]):
            raise InvalidInput(
                "image", f"an image named {name} ({found[0]['ImageId']}) exists and is not build {build.build_id}'s"
            )
        return found[0]

    def _owned_image(self, build: BuildRecord, image_id: str, region: str | None = None) -> dict[str, Any] | None:
        """The image if it exists, is this account's and carries this build's tags, else None."""
        found = self._described_image(image_id, region)
        return found if found is not None and self.is_builds_image(build, found) else None

    def _owned_instance(self, build: BuildRecord, instance_id: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        with self.api(f"DescribeInstances {instance_id}"):
            try:
                reservations = self.ec2().describe_instances(InstanceIds=[instance_id])["Reservations"]
            except ClientError as exc:
                if "NotFound" in client_error_code(exc) or "Malformed" in client_error_code(exc):
                    return None
                raise
        instances = [i for r in reservations for i in r["Instances"]]
        if not instances:
            return None
        if not self.is_builds(build, instances[0]):
            log.warning("instance %s is not build %s's (tags); not used", instance_id, build.build_id)
            return None
        return dict(instances[0])

    def owns_image(self, build: BuildRecord, image: str) -> bool:
        return self._owned_image(build, image) is not None

    def claim_images(self, build: BuildRecord, images: Mapping[str, str], milestone: int) -> None:
        """Tag what Packer made for this build (a template need not tag it itself).

        Packer's manifest says only what the template and its plugins wrote, and tagging is what
        makes an image the build's everywhere else: so every image is checked first, all of them
        before any is tagged. It must exist in its region and be owned by the caller's account
        (an account may tag any AMI it can see: a vendor's, a public or a shared one), and it must
        not carry another build's tags."""
        found: list[tuple[str, str]] = []
        for region, image_id in images.items():
            image = self._described_image(image_id, region or None)
            where = region or self.region
            if image is None:
                raise TargetError(f"EC2: the image {image_id} Packer reported does not exist in {where}")
            owner = str(image.get("OwnerId", ""))
            if owner != self.account:
                raise InvalidInput(
                    "packer artifact",
                    f"{image_id} in {where} is owned by account {owner or 'unknown'}, not this account "
                    f"({self.account}); only an image Packer made in this account is tagged as the build's",
                )
            marked = _tag_map(image)  # a template may tag its AMI itself: with this build's names only
            if (
                marked.get("BuildId", build.build_id) != build.build_id
                or marked.get("Pipeline", self.pipeline) != self.pipeline
            ):
                raise InvalidInput("packer artifact", f"{image_id} in {where} belongs to another build")
            found.append((region, image_id))
        tags = _tags(self.build_tags(build, milestone, "checkpoint"))
        for region, image_id in found:
            with self.api(f"CreateTags {image_id}"):
                self.ec2(region or None).create_tags(Resources=[image_id], Tags=tags)

    def _described_image(self, image_id: str, region: str | None = None) -> dict[str, Any] | None:
        """The image ``image_id`` as EC2 describes it, or None when there is none."""
        from botocore.exceptions import ClientError

        with self.api(f"DescribeImages {image_id}"):
            try:
                found = self.ec2(region).describe_images(ImageIds=[image_id]).get("Images", [])
            except ClientError as exc:
                if "NotFound" in client_error_code(exc) or "Malformed" in client_error_code(exc):
                    return None
                raise
        return dict(found[0]) if found else None

    def _wait_image(self, image_id: str, region: str | None = None, waiter: Mapping[str, int] = WAIT) -> None:
        with self.api(f"wait for image {image_id}"):
            self.ec2(region).get_waiter("image_available").wait(ImageIds=[image_id], WaiterConfig=dict(waiter))

    # -- the target interface --------------------------------------------------------------------
    def packer_vars(self) -> dict[str, str]:
        return {"aws_region": self.region, "aws_endpoint": self.endpoint or ""}

    def packer_env(self) -> dict[str, str]:
        env = {**self.credentials, "AWS_DEFAULT_REGION": self.region, "AWS_REGION": self.region}
        if self.endpoint:
            # The amazon plugin (aws-sdk-go-v2 since 1.5) makes its per-region clients, which tag
            # and copy the AMI, without custom_endpoint_ec2: they reach the SDK's own variable only.
            env["AWS_ENDPOINT_URL_EC2"] = self.endpoint
        return env

    def packer_image_name(self, build: BuildRecord, pipeline: str, milestone: int) -> str:
        return self.image_name(build, milestone)

    def packer_source_image(self, image: str) -> str:
        """amazon-ebs's ``source_ami`` takes an id: a name pattern is resolved here to the newest AMI
        of ``source_image_owners`` (as the ``image: source`` watch resolves it, so the fingerprint
        names the AMI Packer starts from)."""
        if image.startswith("ami-") or image != self.settings.source_image:
            return image  # an id, or a checkpoint the build recorded
        from airflow_provider_imagebuild.targets.source_images import aws_source_id

        found = aws_source_id(self)
        if not found:
            owners = ", ".join(self.settings.source_image_owners) or "no owner given"
            raise InvalidInput(
                "target.source_image", f"no AMI named {image!r} in region {self.region} is owned by {owners}"
            )
        log.info("source image %s resolved to %s (newest of %s)", image, found, self.settings.source_image_owners)
        return found

    def packer_artifacts(self, build: BuildRecord, milestone: int) -> dict[str, str]:
        """The AMI an earlier attempt's Packer made under the milestone's name, if it is this
        account's and carries the tags the shipped template writes (BuildId, Pipeline, ManagedBy,
        Milestone): adopted when available (waited for while pending); deregistered with its
        snapshots when it failed, so that Packer makes it again. An AMI of the name without those
        tags (another build's, someone's, or one Packer could not tag before it was stopped) is
        never adopted or deregistered: it is named in the error, for a person to look at."""
        name = self.image_name(build, milestone)
        with self.api(f"DescribeImages {name}"):
            images = self.ec2().describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])
        found = [i for i in images.get("Images", []) if i.get("State") != "deregistered"]
        if not found:
            return {}
        image = found[0]
        image_id = str(image["ImageId"])
        if not self.is_builds_image(build, image) or _tag_map(image).get("Milestone") != str(milestone):
            raise InvalidInput(
                "packer artifact",
                f"an image named {name} ({image_id}) exists in {self.region} and is not build {build.build_id}'s "
                f"milestone {milestone} (not this account's, or without the BuildId/Pipeline/ManagedBy/Milestone "
                "tags the template writes): it is neither adopted nor deregistered; deregister it if it is a "
                f"leftover, then {rerun_advice()}",
            )
        state = image.get("State", "available")
        if state == "pending":
            log.info("image %s of an earlier attempt is still being made; waiting for it", image_id)
            self._wait_image(image_id)
            state = "available"
        if state == "available":
            return {self.region: image_id}
        log.warning(
            "image %s of an earlier attempt ended %s; deregistered so that Packer makes it again", image_id, state
        )
        self._deregister(image)
        return {}

    def launch(self, build: BuildRecord, checkpoint: Checkpoint) -> Host:
        self.check_regions()
        with self.api(f"DescribeImages {checkpoint.image} (checkpoint of milestone {checkpoint.code})"):
            found = self.ec2().describe_images(ImageIds=[checkpoint.image])["Images"]
        if not found or found[0].get("State", "available") != "available":
            raise TargetError(f"checkpoint image {checkpoint.image} of milestone {checkpoint.code} is not available")
        if not self.is_builds_image(build, found[0]):
            raise InvalidInput(
                f"milestones.{checkpoint.code}.outputs.checkpoint_image",
                f"{checkpoint.image} is not build {build.build_id}'s image (owned by another account, or no "
                "BuildId/Pipeline/ManagedBy tags of this build); a build host is launched only from the build's "
                "own checkpoints",
            )
        tags = {"Name": f"imagebuild-{build.build_id}", **self.build_tags(build, checkpoint.code, "buildhost")}
        with self.api(f"RunInstances from {checkpoint.image}"):
            instance = self.ec2().run_instances(**self._run_params(checkpoint.image, tags))["Instances"][0]
        instance_id = instance["InstanceId"]
        with self.api(f"wait for instance {instance_id}"):
            self.ec2().get_waiter("instance_running").wait(InstanceIds=[instance_id], WaiterConfig=WAIT)
            described = self.ec2().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        address = described.get("PrivateIpAddress") or described.get("PublicIpAddress") or ""
        log.info("build host %s (%s) launched from %s", instance_id, address, checkpoint.image)
        return Host(instance_id, address, checkpoint.image, checkpoint.code, checkpoint.code)

    def alive(self, build: BuildRecord, host: Host) -> bool:
        instance = self._owned_instance(build, host.id)
        return instance is not None and instance["State"]["Name"] in LIVE_STATES

    def ansible_vars(self, host: Host) -> dict[str, Any]:
        return ssh_ansible_vars(self.settings, host)

    def park_host(self, build: BuildRecord, host: Host) -> str:
        """StopInstances on the build's host (its tags, in the caller's account: EC2 describes no
        other's): an EBS-backed instance keeps its volumes and costs only them while stopped."""
        instance = self._owned_instance(build, host.id)
        if instance is None or instance["State"]["Name"] in ("terminated", "shutting-down"):
            return ""
        if instance["State"]["Name"] in LIVE_STATES:
            with self.api(f"StopInstances {host.id}"):
                self.ec2().stop_instances(InstanceIds=[host.id])
            log.info("stopped build host %s (parked)", host.id)
        return "stopped"

    def unpark_host(self, build: BuildRecord, host: Host) -> Host | None:
        """StartInstances on a parked host of the build's, waited for until it runs; its private
        address stays, a public one may change, so the address is read again."""
        instance = self._owned_instance(build, host.id)
        if instance is None or instance["State"]["Name"] in ("terminated", "shutting-down"):
            return None
        ec2 = self.ec2()
        with self.api(f"StartInstances {host.id}"):
            if instance["State"]["Name"] == "stopping":
                ec2.get_waiter("instance_stopped").wait(InstanceIds=[host.id], WaiterConfig=WAIT)
            if instance["State"]["Name"] not in LIVE_STATES:
                ec2.start_instances(InstanceIds=[host.id])
            ec2.get_waiter("instance_running").wait(InstanceIds=[host.id], WaiterConfig=WAIT)
            described = ec2.describe_instances(InstanceIds=[host.id])["Reservations"][0]["Instances"][0]
        address = described.get("PrivateIpAddress") or described.get("PublicIpAddress") or host.address
        log.info("started parked build host %s (%s)", host.id, address)
        return replace(host, address=str(address))

    def capture(self, build: BuildRecord, host: Host, milestone: int, final: bool) -> dict[str, Any]:
        role = "final" if final else "checkpoint"
        name = self.image_name(build, None if final else milestone)
        existing = self._image_by_name(build, name)
        if existing is not None:  # an earlier attempt created it; its response was lost
            image_id = existing["ImageId"]
        else:
            if self._owned_instance(build, host.id) is None:
                raise InvalidInput("host_id", f"{host.id} is not a build host of build {build.build_id}")
            tags = _tags(self.build_tags(build, milestone, role))
            with self.api(f"CreateImage {name} from {host.id}"):
                image_id = self.ec2().create_image(
                    InstanceId=host.id,
                    Name=name,
                    Description=self.image_description(build, milestone),
                    TagSpecifications=[{"ResourceType": "image", "Tags": tags}],
                )["ImageId"]
        self._wait_image(image_id)
        log.info("captured %s image %s (%s) from %s", role, image_id, name, host.id)
        described = self._described_image(image_id) or {}  # its snapshots' size, for the cost (build/cost.py)
        gb = sum(int(m.get("Ebs", {}).get("VolumeSize") or 0) for m in described.get("BlockDeviceMappings", []))
        return {
            IMAGE_OUTPUT if final else CHECKPOINT_OUTPUT: image_id,
            f"{role}_image_name": name,
            "image_region": self.region,
            **({f"{role}_gb": gb} if gb else {}),
        }

    def discard(self, build: BuildRecord, images: list[str]) -> list[str]:
        removed = []
        for image_id in images:
            image = self._owned_image(build, image_id)
            if image is None:
                log.info("checkpoint image %s is gone or not build %s's; left alone", image_id, build.build_id)
                continue
            if _tag_map(image).get("Role") == "published":
                # Publish tags the sealed image before it shares it region by region and points the
                # SSM parameter at it: a publish that failed halfway leaves a published image that
                # only retention may remove, never an abandon or a discard.
                log.warning("image %s is published (Role=published); left to retention", image_id)
                continue
            if self._deregister(image):
                log.info("deregistered checkpoint image %s", image_id)
                removed.append(image_id)
        return removed

    def _deregister(self, image: dict[str, Any], region: str | None = None) -> bool:
        """Deregister an image of the build's (proven by the caller) and delete its EBS snapshots,
        which EC2 keeps after the image is gone. ``DeleteAssociatedSnapshots`` asks EC2 to delete
        them with the image where the SDK knows the parameter; then every snapshot of the image's
        block device mappings that is still there, this account's and made for this image (EC2
        names the image in the description of a snapshot CreateImage or CopyImage made) is deleted:
        so with an SDK or endpoint that does not know the parameter too. One another image still
        uses stays (EC2 refuses it: InvalidSnapshot.InUse). False: the image was gone already."""
        from botocore.exceptions import ClientError

        image_id = str(image["ImageId"])
        ec2 = self.ec2(region)
        snapshots = [str(m["Ebs"]["SnapshotId"]) for m in image.get("BlockDeviceMappings") or []
                     if (m.get("Ebs") or {}).get("SnapshotId")]  # fmt: skip
        params: dict[str, Any] = {"ImageId": image_id}
        if "DeleteAssociatedSnapshots" in ec2.meta.service_model.operation_model("DeregisterImage").input_shape.members:
            params["DeleteAssociatedSnapshots"] = True
        try:
            answer = ec2.deregister_image(**params)
        except ClientError as exc:
            code = client_error_code(exc)
            if "NotFound" in code or "Unavailable" in code:  # gone already (Unavailable: deregistered)
                return False
            raise TargetError(f"EC2 DeregisterImage {image_id}: {code}: {exc}") from exc
        deleted = {
            r.get("SnapshotId") for r in answer.get("DeleteSnapshotResults") or [] if r.get("ReturnCode") == "success"
        }
        for snapshot_id in snapshots:
            if snapshot_id not in deleted:
                self._delete_snapshot(snapshot_id, image_id, region)
        return True

    def _delete_snapshot(self, snapshot_id: str, image_id: str, region: str | None) -> None:
        """Delete a snapshot of ``image_id`` if it is still there, this account's and made for that
        image; anything else is left alone."""
        from botocore.exceptions import ClientError

        ec2 = self.ec2(region)
        with self.api(f"DescribeSnapshots {snapshot_id}"):
            found = ec2.describe_snapshots(
                OwnerIds=["self"], Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}]
            )
        snapshot = next(iter(found.get("Snapshots") or []), None)
        if snapshot is None or str(snapshot.get("OwnerId", "")) != self.account:
            return
        if image_id not in str(snapshot.get("Description", "")):
            log.info("snapshot %s was not made for image %s; left alone", snapshot_id, image_id)
            return
        try:
            ec2.delete_snapshot(SnapshotId=snapshot_id)
            log.info("deleted snapshot %s of image %s", snapshot_id, image_id)
        except ClientError as exc:
            code = client_error_code(exc)
            if "InUse" in code:
                log.info("snapshot %s of image %s is used by another image; left alone", snapshot_id, image_id)
            elif "NotFound" not in code:
                raise TargetError(f"EC2 DeleteSnapshot {snapshot_id}: {code}: {exc}") from exc

    # -- reuse (#32): a build starting from an earlier build's checkpoint ----------------------------
    def adopt_checkpoint(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """CopyImage of ``source``'s checkpoint AMI within the target's region, made ``build``'s own.

        The AMI is proven ``source``'s as any image is (this account's, with its BuildId, Pipeline
        and ManagedBy tags) and its checkpoint after that milestone (its Milestone tag and
        Role=checkpoint): the record only names it. It is copied, not claimed: EC2 copies an AMI
        with its snapshots, and the source keeps its own for its redo (``target.keep_checkpoints``)
        until the next delivery deletes it. The copy is tagged at creation (TagSpecifications on the
        AMI and on its new snapshots: EC2 applies them with the copy or refuses the request, so no
        untagged copy ever exists) with ``build``'s tags and where it came from, and named
        ``<pipeline>/<build id>/rNNN``: not a checkpoint's ``mNNN``, which a reset milestone that
        really runs would find by name and take as its own capture (or Packer's AMI).

        A retried adopt finds the copy by that name, waiting for it if still pending; a copy of
        another image (an earlier attempt from another source) or one that failed is deregistered
        and made again. A copy not available within :attr:`copy_wait` (or failed) is deregistered
        with its snapshots (which cancels a pending copy) before the :class:`TargetError` is raised.
        No ClientToken: after such a clean-up a retry must make a new copy, and EC2 would answer a
        token it saw with the deregistered one."""
        self.check_regions()
        where = f"milestones.{checkpoint.code}.outputs.checkpoint_image"
        image = self._described_image(checkpoint.image)
        marks = _tag_map(image or {})
        if (
            image is None
            or not self.is_builds_image(source, image)
            or marks.get("Milestone") != str(checkpoint.code)
            or marks.get("Role") != "checkpoint"
        ):
            raise InvalidInput(
                where,
                f"{checkpoint.image} is not build {source.build_id}'s checkpoint after milestone {checkpoint.code} "
                f"in {self.region} (gone, another account's, or without that build's BuildId/Pipeline/ManagedBy/"
                "Milestone/Role=checkpoint tags); it is not copied",
            )
        if image.get("State", "available") != "available":
            raise TargetError(f"{where}: {checkpoint.image} of build {source.build_id} is {image.get('State')}; "
                              "it is not copied")  # fmt: skip
        name = self.image_name(build, checkpoint.code, copied=True)
        earlier = self._image_by_name(build, name)  # a foreign image under the name is refused here
        if earlier is not None:
            origin = earlier.get("SourceImageId") or _tag_map(earlier).get("ReusedFromImage")
            if origin != checkpoint.image or earlier.get("State") not in ("available", "pending"):
                log.info("copy %s of an earlier attempt (of %s, %s) is not this one's; made again",
                         earlier["ImageId"], origin, earlier.get("State"))  # fmt: skip
                self._deregister(earlier)
                earlier = None
        try:
            image_id = str(earlier["ImageId"]) if earlier is not None else self._copy(build, source, checkpoint, name)
            try:
                self._wait_image(image_id, waiter=self.copy_wait)
            except TargetError as exc:
                waited = int(self.copy_wait["Delay"]) * int(self.copy_wait["MaxAttempts"])
                raise TargetError(f"EC2 CopyImage {checkpoint.image} to {image_id} ({name}): not available within "
                                  f"{waited} s ({exc}); the copy is deregistered") from exc  # fmt: skip
            copy = self._owned_image(build, image_id)
            if copy is None:  # pragma: no cover - tagged at creation; gone or retagged meanwhile
                raise TargetError(f"EC2 CopyImage {checkpoint.image} to {image_id}: the copy is not build "
                                  f"{build.build_id}'s any more")  # fmt: skip
        except BaseException:
            self._remove_copies(build, name)
            raise
        gb = sum(int((m.get("Ebs") or {}).get("VolumeSize") or 0) for m in copy.get("BlockDeviceMappings") or [])
        log.info("copied checkpoint %s of build %s (after milestone %d) to %s (%s)", checkpoint.image,
                 source.build_id, checkpoint.code, image_id, name)  # fmt: skip
        return {
            CHECKPOINT_OUTPUT: image_id,
            "checkpoint_image_name": name,
            "image_region": self.region,
            **({"checkpoint_gb": gb} if gb else {}),
        }

    def _copy(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint, name: str) -> str:
        """CopyImage within the region, tagged at creation (the AMI and its new snapshots) as the
        build's checkpoint after ``checkpoint.code``, with where it came from."""
        marks = {
            **self.build_tags(build, checkpoint.code, "checkpoint"),
            "ReusedFromBuild": source.build_id,
            "ReusedFromImage": checkpoint.image,
        }
        description = self.image_description(build, checkpoint.code)
        longer = f"{description}, copied from build {source.build_id}"
        with self.api(f"CopyImage {checkpoint.image} ({name})"):
            return str(
                self.ec2().copy_image(
                    SourceRegion=self.region,
                    SourceImageId=checkpoint.image,
                    Name=name,
                    Description=longer if len(longer) <= MAX_DESCRIPTION else description,
                    TagSpecifications=[{"ResourceType": kind, "Tags": _tags(marks)} for kind in ("image", "snapshot")],
                )["ImageId"]
            )

    def _remove_copies(self, build: BuildRecord, name: str) -> None:
        """Deregister, with its snapshots, every AMI of this account named ``name`` that carries
        ``build``'s tags: what a copy that failed half-way made (its id may never have reached us,
        its response lost). Never raises: the copy's own failure is the error to report."""
        try:
            with self.api(f"DescribeImages {name}"):
                found = self.ec2().describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])
            for image in found.get("Images", []):
                if self.is_builds_image(build, image) and self._deregister(image):
                    log.info("deregistered the half-made copy %s (%s)", image["ImageId"], name)
        except Exception as exc:  # the copy's own failure is what is raised
            log.warning("the half-made copy %s was not deregistered (gc finds it by its tags): %s", name, exc)

    def publish(self, build: BuildRecord, image: str) -> dict[str, Any]:
        self.check_regions()
        if self._owned_image(build, image) is None:
            raise InvalidInput(
                "milestones.95.outputs.image_id",
                f"{image} is not build {build.build_id}'s image (another account's, or no tags of this build); "
                "it is not copied or shared",
            )
        name = self.image_name(build)
        tags = _tags({**self.build_tags(build, 100, "published"), **built_with_tags(build)})
        published: dict[str, str] = {}
        pending: list[tuple[str, str]] = []
        for region in self.publish_regions:
            if region == self.region:
                published[region] = image
                continue
            description = self.image_description(build)
            existing = self._image_by_name(build, name, region, description)
            if existing is not None:
                published[region] = existing["ImageId"]
            else:
                with self.api(f"CopyImage {image} to {region}"):
                    published[region] = self.ec2(region).copy_image(
                        SourceRegion=self.region,
                        SourceImageId=image,
                        Name=name,
                        Description=description,
                        TagSpecifications=[{"ResourceType": "image", "Tags": tags}],
                    )["ImageId"]
            pending.append((region, published[region]))
        for region, copy in pending:
            self._wait_image(copy, region)
        parameter = self.settings.ssm_parameter or f"/imagebuild/{self.pipeline}/image_id"
        for region, image_id in published.items():
            ec2 = self.ec2(region)
            with self.api(f"CreateTags {image_id} in {region}"):
                ec2.create_tags(Resources=[image_id], Tags=tags)
            if self.settings.share_accounts:
                with self.api(f"ModifyImageAttribute {image_id} in {region}"):
                    ec2.modify_image_attribute(
                        ImageId=image_id,
                        LaunchPermission={"Add": [{"UserId": a} for a in self.settings.share_accounts]},
                    )
            with aws_errors(f"SSM PutParameter {parameter} in {region}", endpoint=self.endpoint):
                self.clients("ssm", region).put_parameter(
                    Name=parameter,
                    Value=image_id,
                    Type="String",
                    Overwrite=True,
                    Description=f"latest {self.pipeline} image (build {build.build_id})",
                )
        log.info("published %s to %s", image, ", ".join(f"{r}={i}" for r, i in published.items()))
        return {
            "published_images": published,
            "ssm_parameter": parameter,
            "shared_with": list(self.settings.share_accounts),
        }

    # -- the launch test (targets/launch.py) ---------------------------------------------------------
    def test_instance_tags(self, build: BuildRecord) -> dict[str, str]:
        """A test instance's tags: the build's (no milestone: it tests the sealed image) and Role."""
        tags = {k: v for k, v in self.build_tags(build, 0, ROLE).items() if k != "Milestone"}
        return {"Name": f"imagebuild-{build.build_id}-launch-test"[:255], **tags}

    def _is_test_instance(self, build: BuildRecord, instance: dict[str, Any]) -> bool:
        return self.is_builds(build, instance) and _tag_map(instance).get("Role") == ROLE

    def leftover_test_instances(self, build: BuildRecord) -> list[str]:
        """DescribeInstances lists only the caller's account's instances: another account's with the
        same tags is never seen, so never terminated."""
        filters = [
            {"Name": "tag:BuildId", "Values": [build.build_id]},
            {"Name": "tag:Pipeline", "Values": [self.pipeline]},
            {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
            {"Name": "tag:Role", "Values": [ROLE]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ]
        with self.api("DescribeInstances (leftover test instances)"):
            pages = self.ec2().get_paginator("describe_instances").paginate(Filters=filters)
            found = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        return [str(i["InstanceId"]) for i in found if self._is_test_instance(build, i)]

    def launch_test_instance(self, build: BuildRecord, image: str) -> str:
        with self.api(f"RunInstances from {image} (launch test)"):
            params = self._run_params(image, self.test_instance_tags(build))
            return str(self.ec2().run_instances(**params)["Instances"][0]["InstanceId"])

    def _run_params(self, image: str, tags: dict[str, str]) -> dict[str, Any]:
        """RunInstances of one instance of the target's type from ``image``, tagged at creation, in the
        spec's key pair, subnet and security groups: the build host and the launch test's instance
        alike, so that a test instance boots where the build host does."""
        s = self.settings
        params: dict[str, Any] = {
            "ImageId": image,
            "InstanceType": s.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": _tags(tags)}],
        }
        if s.key_name:
            params["KeyName"] = s.key_name
        if s.subnet_id:
            params["SubnetId"] = s.subnet_id
        if s.security_group_ids:
            params["SecurityGroupIds"] = list(s.security_group_ids)
        return params

    def test_instance(self, build: BuildRecord, instance_id: str) -> TestInstance | None:
        found = self._owned_instance(build, instance_id)
        if found is None or not self._is_test_instance(build, found):
            return None
        state = str(found["State"]["Name"])
        if state in ("terminated", "shutting-down", "stopping", "stopped"):
            reason = (found.get("StateReason") or {}).get("Message") or state
            return TestInstance(instance_id, STOPPED, detail=str(reason))
        address = found.get("PrivateIpAddress") or found.get("PublicIpAddress") or ""
        return TestInstance(instance_id, RUNNING if state == "running" else PENDING, str(address))

    def test_instance_console(self, build: BuildRecord, instance_id: str) -> bytes | None:
        """GetConsoleOutput: the serial console's last 64 KB as EC2 last captured it, base64 (an
        answer that is not base64, as moto's canned text, is taken as the text it is)."""
        import base64
        import binascii

        with self.api(f"GetConsoleOutput {instance_id}"):
            output = str(self.ec2().get_console_output(InstanceId=instance_id).get("Output") or "")
        try:
            return base64.b64decode(output, validate=True)
        except binascii.Error:
            return output.encode()

    def delete_test_instance(self, build: BuildRecord, instance_id: str) -> None:
        """TerminateInstances, once the instance is proven this build's test instance (its tags, in
        the caller's account); a terminated or vanished one is gone already. Not waited for:
        EC2's terminate is final once accepted."""
        found = self._owned_instance(build, instance_id)
        if found is None or not self._is_test_instance(build, found) or found["State"]["Name"] == "terminated":
            return
        with self.api(f"TerminateInstances {instance_id} (launch test)"):
            self.ec2().terminate_instances(InstanceIds=[instance_id])
        log.info("terminated test instance %s", instance_id)

    def cleanup(self, build: BuildRecord, host: Host) -> None:
        from botocore.exceptions import ClientError

        if self._owned_instance(build, host.id) is None:
            return  # gone already, or not this build's to terminate
        try:
            self.ec2().terminate_instances(InstanceIds=[host.id])
            log.info("terminated build host %s", host.id)
        except ClientError as exc:
            if "NotFound" not in client_error_code(exc):
                raise TargetError(f"EC2 TerminateInstances {host.id}: {exc}") from exc

    # -- the leak collector (targets/leaks.py) -------------------------------------------------------
    def _pipeline_filters(self) -> list[dict[str, Any]]:
        return [
            {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
            {"Name": "tag:Pipeline", "Values": [self.pipeline]},
        ]

    def _resource(
        self, kind: str, rid: str, region: str, tagged: dict[str, Any], created: Any, **more: Any
    ) -> Resource:
        tags = _tag_map(tagged)
        milestone = tags.get("Milestone", "")
        when = parse_time(created)
        return Resource(kind, rid, region, tags.get("Pipeline", ""), tags.get("BuildId", ""), when,
                        role=tags.get("Role", ""), milestone=int(milestone) if milestone.isdigit() else None,
                        **more)  # fmt: skip

    def owned_resources(self) -> list[Resource]:
        """Instances (not terminated), AMIs, EBS snapshots and volumes carrying ``ManagedBy`` and
        this pipeline's tags, in the target's region and publish regions. EC2 describes only the
        caller's account's instances and volumes, and images and snapshots are asked ``self``-owned:
        another account's with the same tags is never listed."""
        found: list[Resource] = []
        for region in dict.fromkeys([self.region, *self.publish_regions]):
            ec2 = self.ec2(region)
            filters = self._pipeline_filters()
            with self.api(f"DescribeInstances in {region} (gc)"):
                pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
                for i in (i for page in pages for r in page["Reservations"] for i in r["Instances"]):
                    if i["State"]["Name"] not in ("terminated", "shutting-down"):
                        found.append(self._resource("instance", i["InstanceId"], region, i, i.get("LaunchTime"),
                                                    size=str(i.get("InstanceType", ""))))  # fmt: skip
            with self.api(f"DescribeImages in {region} (gc)"):
                for image in ec2.describe_images(Owners=["self"], Filters=filters).get("Images", []):
                    mappings = image.get("BlockDeviceMappings") or []
                    gb = sum(float((m.get("Ebs") or {}).get("VolumeSize") or 0) for m in mappings)
                    found.append(self._resource("image", image["ImageId"], region, image, image.get("CreationDate"),
                                                gb=gb or None))  # fmt: skip
            with self.api(f"DescribeSnapshots in {region} (gc)"):
                for snap in ec2.describe_snapshots(OwnerIds=["self"], Filters=filters).get("Snapshots", []):
                    found.append(self._resource("snapshot", snap["SnapshotId"], region, snap, snap.get("StartTime"),
                                                gb=float(snap.get("VolumeSize") or 0) or None))  # fmt: skip
            with self.api(f"DescribeVolumes in {region} (gc)"):
                for vol in ec2.describe_volumes(Filters=filters).get("Volumes", []):
                    found.append(self._resource("volume", vol["VolumeId"], region, vol, vol.get("CreateTime"),
                                                gb=float(vol.get("Size") or 0) or None))  # fmt: skip
        return [r for r in found if r.pipeline == self.pipeline]

    def _still_ours(self, resource: Resource, described: dict[str, Any] | None) -> bool:
        if described is None:
            return False
        tags = _tag_map(described)
        return (
            tags.get("ManagedBy") == MANAGED_BY
            and tags.get("Pipeline") == self.pipeline
            and tags.get("BuildId", "") == resource.build_id
        )

    def delete_resource(self, resource: Resource) -> bool:
        """Described again by id in its region, its tags checked again (ManagedBy, the pipeline, the
        same build), images and snapshots as this account's, then: TerminateInstances, DeregisterImage
        with its snapshots, DeleteSnapshot or DeleteVolume. Gone already, or no longer ours: False."""
        from botocore.exceptions import ClientError

        ec2 = self.ec2(resource.region)
        what = f"{resource.kind} {resource.id} in {resource.region}"
        try:
            with self.api(f"describe {what} (gc)"):
                if resource.kind == "instance":
                    reservations = ec2.describe_instances(InstanceIds=[resource.id])["Reservations"]
                    described = next((i for r in reservations for i in r["Instances"]), None)
                    if described is not None and described["State"]["Name"] == "terminated":
                        described = None
                elif resource.kind == "image":
                    described = self._described_image(resource.id, resource.region)
                    if described is not None and str(described.get("OwnerId", "")) != self.account:
                        described = None
                elif resource.kind == "snapshot":
                    snaps = ec2.describe_snapshots(OwnerIds=["self"], SnapshotIds=[resource.id]).get("Snapshots", [])
                    described = snaps[0] if snaps else None
                elif resource.kind == "volume":
                    described = next(iter(ec2.describe_volumes(VolumeIds=[resource.id]).get("Volumes", [])), None)
                else:
                    raise InvalidInput("resource", f"the aws target does not collect {resource.kind}s")
        except TargetError as exc:
            if "NotFound" in str(exc) or "Malformed" in str(exc):
                return False
            raise
        if not self._still_ours(resource, described):
            log.info("%s is gone or no longer this pipeline's; left alone", what)
            return False
        assert described is not None
        try:
            with self.api(f"delete {what} (gc)"):
                if resource.kind == "instance":
                    ec2.terminate_instances(InstanceIds=[resource.id])
                elif resource.kind == "image":
                    return self._deregister(described, resource.region)
                elif resource.kind == "snapshot":
                    ec2.delete_snapshot(SnapshotId=resource.id)
                else:
                    ec2.delete_volume(VolumeId=resource.id)
        except ClientError as exc:  # pragma: no cover - api() translates; kept for a raw client
            if "NotFound" in client_error_code(exc):
                return False
            raise
        log.info("deleted leaked %s", what)
        return True
