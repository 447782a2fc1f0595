"""The Google Cloud target: Compute Engine build hosts, checkpoint images in a staging family, the
final image in the pipeline's family, shared, its predecessor deprecated.

Clients come from :class:`~airflow_provider_imagebuild.clouds.gcp.GcpClients` (an Airflow Google
connection or Application Default Credentials); the SDKs are imported only when a milestone runs.

- Build hosts are instances ``ib-<digest>-h<checkpoint>`` with a boot disk that is deleted with
  them, no external address unless ``public_ip``, the spec's service account and the build's SSH
  key in the instance metadata.
- Checkpoints are images in the staging family ``<image_family>-staging``, made from the boot
  disk after a stop (consistent) and the instance started again.
- Seal stops the instance and creates the final image in ``image_family`` (with
  ``storage_locations``). Publish grants ``roles/compute.imageUser`` to ``share_with``, copies the
  image to ``copy_locations``, and deprecates the family's previous image per
  ``deprecate_previous`` (with the new image as its replacement). Earlier images stay.
- Labels carry ``imagebuild-key`` (a digest of the pipeline and build id: labels cannot hold an id's
  capitals or dots), ``managed-by`` and readable copies of the identity; nothing without this
  build's key is launched from, captured, shared, deprecated or deleted.
- The **launch test** (:mod:`.launch`'s hooks) inserts one instance ``ib-<digest>-lt`` from the
  sealed image, as a build host is made (network, service account, the build's SSH key), labelled
  ``imagebuild-role: launch-test``; its console is serial port 1 (``getSerialPortOutput``, the last
  1 MB). A leftover is that name in the target's project and zone with this build's key and role.
- **Reuse** (#32): an earlier build's checkpoint image, proven that build's, is copied
  (``images.insert`` from it) into the new build's own checkpoint image (:mod:`.gcp_adopt`).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.gcp import GcpClients, gcp_errors
from airflow_provider_imagebuild.errors import InvalidInput, NotFound, TargetError
from airflow_provider_imagebuild.spec.gcp import GcpTargetSpec
from airflow_provider_imagebuild.targets.base import (
    CHECKPOINT_OUTPUT,
    IMAGE_OUTPUT,
    MANAGED_BY,
    Checkpoint,
    Host,
    checkpoint_images,
    ssh_ansible_vars,
)
from airflow_provider_imagebuild.targets.gcp_names import (
    GcpNames,
    build_labels,
    fit_labels,
    host_description,
    is_name,
    label_value,
)
from airflow_provider_imagebuild.targets.launch import PENDING, ROLE, RUNNING, STOPPED, LaunchTestTarget, TestInstance
from airflow_provider_imagebuild.targets.leaks import LeakCollecting, Resource, parse_time

log = logging.getLogger(__name__)

RETRIES = 4  # of one API call on 429/5xx, with googleapiclient's exponential back-off
OPERATION_WAITS = 60  # operations.wait returns after at most 2 minutes each: up to 2 hours
IMAGE_USER = "roles/compute.imageUser"
# Instance states (compute.v1 Instance.status): what comes up, what runs, what will not come up.
STARTING_STATES = {"PROVISIONING", "STAGING", "PENDING"}
IMAGE_RE = re.compile(r"(?:.*/)?projects/([a-z][a-z0-9-]{4,28}[a-z0-9])/global/images/([a-z][-a-z0-9]{0,62})")


def parse_image(image: str) -> tuple[str, str] | None:
    """(project, name) of an image self link or ``projects/P/global/images/N``, or None."""
    found = IMAGE_RE.fullmatch(image)
    return (found.group(1), found.group(2)) if found else None


class GcpTarget(LaunchTestTarget, LeakCollecting):
    name = "gcp"
    marks_prove_pipeline = False  # labels: see LeakCollecting; descriptions and keys prove it

    def __init__(self, settings: GcpTargetSpec, *, pipeline: str, image_type: str, clients: GcpClients) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.image_type = image_type
        self.clients = clients
        self.names = GcpNames(pipeline, settings.image_family)
        self.project = clients.project
        self.zone = settings.zone or ""
        self.region = ""  # one image per Packer run, no region:id pairs

    @classmethod
    def from_settings(cls, settings: Any, *, pipeline: str, image_type: str) -> GcpTarget:
        if not isinstance(settings, GcpTargetSpec):
            raise InvalidInput("target", "a Google Cloud pipeline needs Google Cloud target settings")
        if not settings.zone:
            raise InvalidInput("target.zone", "is required for a build on Google Cloud")
        clients = GcpClients.from_connection(settings.gcp_conn_id, settings.project)
        return cls(settings, pipeline=pipeline, image_type=image_type, clients=clients)

    # -- helpers -------------------------------------------------------------------------------
    @property
    def compute(self) -> Any:
        return self.clients.compute

    def call(self, what: str, request: Any) -> Any:
        with gcp_errors(f"Compute Engine {what}", endpoint=self.clients.compute_endpoint):
            return request.execute(num_retries=RETRIES)

    @contextlib.contextmanager
    def maybe_missing(self) -> Iterator[list[Any]]:
        found: list[Any] = []
        try:
            yield found
        except NotFound:
            found.clear()

    def wait(self, what: str, operation: dict[str, Any]) -> dict[str, Any]:
        """Wait for a zone or global operation; its error is a transient failure naming Google's."""
        name = operation["name"]
        for _ in range(OPERATION_WAITS):
            if operation.get("status") == "DONE":
                break
            if operation.get("zone"):
                request = self.compute.zoneOperations().wait(project=self.project, zone=self.zone, operation=name)
            else:
                request = self.compute.globalOperations().wait(project=self.project, operation=name)
            operation = self.call(f"wait for {what}", request)
        else:
            raise TargetError(f"Compute Engine {what}: operation {name} not done after {OPERATION_WAITS} waits")
        errors = (operation.get("error") or {}).get("errors") or []
        if errors:
            first = errors[0]
            raise TargetError(f"Compute Engine {what}: {first.get('code', 'error')}: {first.get('message', '')}")
        return operation

    def key(self, build: BuildRecord) -> str:
        return self.names.key(build)

    def build_labels(self, build: BuildRecord, milestone: int, role: str) -> dict[str, str]:
        return build_labels(self.names, build, milestone, role, self.settings.labels)

    def is_builds(self, build: BuildRecord, resource: Mapping[str, Any] | None) -> bool:
        labels = (resource or {}).get("labels") or {}
        return labels.get("imagebuild-key") == self.key(build) and labels.get("managed-by") == MANAGED_BY

    def image_path(self, name: str) -> str:
        return f"projects/{self.project}/global/images/{name}"

    def _image(self, name: str) -> dict[str, Any] | None:
        with self.maybe_missing() as found:
            found.append(self.call(f"images.get {name}", self.compute.images().get(project=self.project, image=name)))
        return found[0] if found else None

    def _parse(self, image: str) -> tuple[str, str] | None:
        """(project, name) of a self link, a ``projects/...`` path, or a bare name in this project
        (what Packer's googlecompute reports as its artifact)."""
        if is_name(image):
            return self.project, image
        return parse_image(image)

    def _owned_image(self, build: BuildRecord, image: str) -> dict[str, Any] | None:
        parsed = self._parse(image)
        if parsed is None or parsed[0] != self.project:
            return None
        found = self._image(parsed[1])
        return found if self.is_builds(build, found) else None

    def _instance(self, name: str) -> dict[str, Any] | None:
        request = self.compute.instances().get(project=self.project, zone=self.zone, instance=name)
        with self.maybe_missing() as found:
            found.append(self.call(f"instances.get {name}", request))
        return found[0] if found else None

    def _delete_instance(self, build: BuildRecord, name: str) -> bool:
        found = self._instance(name)
        if found is None:
            return False
        if not self.is_builds(build, found):
            log.warning("instance %s is not build %s's (labels); left alone", name, build.build_id)
            return False
        request = self.compute.instances().delete(project=self.project, zone=self.zone, instance=name)
        with self.maybe_missing() as done:
            done.append(self.wait(f"instances.delete {name}", self.call(f"instances.delete {name}", request)))
        log.info("deleted instance %s", name)
        return True

    def _delete_image(self, build: BuildRecord, name: str) -> bool:
        found = self._image(name)
        if found is None or not self.is_builds(build, found):
            return False
        request = self.compute.images().delete(project=self.project, image=name)
        with self.maybe_missing() as done:
            done.append(self.wait(f"images.delete {name}", self.call(f"images.delete {name}", request)))
        log.info("deleted image %s", name)
        return True

    def _power(self, name: str, action: str) -> None:
        method = getattr(self.compute.instances(), action)
        request = method(project=self.project, zone=self.zone, instance=name)
        self.wait(f"instances.{action} {name}", self.call(f"instances.{action} {name}", request))

    def _create_image(self, build: BuildRecord, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._delete_image(build, name)  # an earlier attempt's image holds an older state
        request = self.compute.images().insert(project=self.project, body={"name": name, **body})
        self.wait(f"images.insert {name}", self.call(f"images.insert {name}", request))
        image = self._image(name)
        if image is None:
            raise TargetError(f"Compute Engine images.insert {name}: done, but the image is not there")
        return image

    # -- the target interface --------------------------------------------------------------------
    def owns_image(self, build: BuildRecord, image: str) -> bool:
        return self._owned_image(build, image) is not None

    def claim_images(self, build: BuildRecord, images: Mapping[str, str], milestone: int) -> None:
        """Label the image Packer's googlecompute builder made for this build."""
        for image in images.values():
            parsed = self._parse(image)
            if parsed is None or parsed[0] != self.project:
                raise InvalidInput("packer artifact", f"{image} is not an image of project {self.project}")
            found = self._image(parsed[1])
            if found is None:
                raise TargetError(f"Compute Engine: the image {image} Packer reported does not exist")
            body = {
                "labels": fit_labels(found.get("labels") or {}, self.build_labels(build, milestone, "checkpoint")),
                "labelFingerprint": found.get("labelFingerprint", ""),
            }
            request = self.compute.images().setLabels(project=self.project, resource=parsed[1], body=body)
            self.wait(f"images.setLabels {parsed[1]}", self.call(f"images.setLabels {parsed[1]}", request))

    def packer_artifacts(self, build: BuildRecord, milestone: int) -> dict[str, str]:
        """The image an earlier attempt's Packer made under this milestone's name, if it is in the
        target's project and carries the labels the shipped template writes (this build's key,
        ``managed-by`` and the milestone): googlecompute stops when the name is taken. A failed one
        of the build's is deleted so that Packer makes it again; one still being created is a
        transient error (the next try adopts it); one that is not provably the build's is never
        touched and stops the milestone, naming it."""
        name = self.names.packer_image(build, milestone)
        found = self._image(name)
        if found is None:
            return {}
        where = parse_image(str(found.get("selfLink") or ""))
        labels = found.get("labels") or {}
        if (
            where != (self.project, name)
            or not self.is_builds(build, found)
            or labels.get("imagebuild-milestone") != f"m{milestone:03d}"
        ):
            raise InvalidInput(
                "image_name",
                f"an image {name} already exists in project {self.project} and is not build {build.build_id}'s "
                f"milestone {milestone} (labels imagebuild-key, managed-by, imagebuild-milestone): Packer cannot make "
                "it, and it is left alone; delete or rename it if it is not needed",
            )
        status = found.get("status")
        if status == "READY":
            log.info("image %s of an earlier attempt of milestone %d is ready: adopted", name, milestone)
            return {"": name}
        if status == "PENDING":
            raise TargetError(f"Compute Engine: image {name} of an earlier attempt is still being created (retried)")
        log.info("image %s of an earlier attempt of milestone %d is %s: deleted, Packer makes it again", name,
                 milestone, status)  # fmt: skip
        self._delete_image(build, name)
        return {}

    def packer_image_name(self, build: BuildRecord, pipeline: str, milestone: int) -> str:
        """Packer's image (and instance and disk) name: see :class:`GcpNames`."""
        return self.names.packer_image(build, milestone)

    def packer_vars(self) -> dict[str, str]:
        """The target's settings as template variables. The source's family and project only when
        the spec sets them: an empty value would override the template's default (an empty
        project list, or no family at all for milestone 5)."""
        s = self.settings
        found = {
            "gcp_project": self.project,
            "gcp_zone": self.zone,
            "gcp_machine_type": s.machine_type,
            "gcp_network": s.network,
            "gcp_subnetwork": s.subnetwork or "",
        }
        if s.source_image_family:
            found["source_image_family"] = s.source_image_family
        if s.source_image_project:
            found["source_image_project"] = s.source_image_project
        return found

    def packer_env(self) -> dict[str, str]:
        return self.clients.packer_env()

    def playbook_vars(self, build: BuildRecord) -> dict[str, Any]:
        return {"imagebuild_ssh_public_key": self.settings.ssh_public_key or ""}

    def adopt_checkpoint(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """``build``'s own copy of ``source``'s checkpoint image (a copy, not a claim: the source
        keeps its checkpoint; see :mod:`.gcp_adopt`), recorded as a capture's outputs are, with
        the image it was copied from."""
        from airflow_provider_imagebuild.targets.gcp_adopt import CheckpointCopy

        copy = CheckpointCopy(self).adopt(build, source, checkpoint)
        return {
            CHECKPOINT_OUTPUT: copy["selfLink"],
            "checkpoint_image_name": copy["name"],
            "image_project": self.project,
            "copied_from": copy.get("sourceImage", ""),
            **_size(copy, "checkpoint_gb"),
        }

    def launch(self, build: BuildRecord, checkpoint: Checkpoint) -> Host:
        source = self._owned_image(build, checkpoint.image)
        if source is None:
            raise InvalidInput(
                f"milestones.{checkpoint.code}.outputs.checkpoint_image",
                f"{checkpoint.image} is not build {build.build_id}'s image (missing, in another project, or "
                "without this build's labels); a build host is launched only from the build's own checkpoints",
            )
        name = self.names.host(build, checkpoint.code)
        self._delete_instance(build, name)  # a host launched from this checkpoint before, and lost
        body = self._instance_body(name, source, self.build_labels(build, checkpoint.code, "buildhost"), build)
        request = self.compute.instances().insert(project=self.project, zone=self.zone, body=body)
        self.wait(f"instances.insert {name}", self.call(f"instances.insert {name}", request))
        instance = self._instance(name)
        if instance is None:
            raise TargetError(f"Compute Engine instances.insert {name}: done, but the instance is not there")
        address = self._instance_address(instance)
        log.info("build host %s (%s) launched from %s", name, address, checkpoint.image)
        return Host(str(instance["selfLink"]), str(address), checkpoint.image, checkpoint.code, checkpoint.code)

    def _instance_address(self, instance: Mapping[str, Any]) -> str:
        """The address SSH reaches: the external one with ``public_ip``, else the internal one."""
        nic = (instance.get("networkInterfaces") or [{}])[0]
        address = nic.get("networkIP", "")
        if self.settings.public_ip:
            address = ((nic.get("accessConfigs") or [{}])[0]).get("natIP") or address
        return str(address)

    def _instance_body(
        self, name: str, source: Mapping[str, Any], labels: dict[str, str], build: BuildRecord
    ) -> dict[str, Any]:
        """A build host's (or the launch test's) instance: the spec's machine type and network, a
        boot disk from ``source`` deleted with it, the service account and the build's SSH key; its
        description names the whole pipeline and the build (what proves it ours once the store no
        longer has the build: :meth:`.gcp_names.GcpNames.described_build`)."""
        s = self.settings
        interface: dict[str, Any] = {"network": self._network_path(s.network, "networks")}
        if s.subnetwork:
            interface["subnetwork"] = self._network_path(s.subnetwork, "subnetworks")
        if s.public_ip:
            interface["accessConfigs"] = [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]
        body: dict[str, Any] = {
            "name": name,
            "machineType": f"zones/{self.zone}/machineTypes/{s.machine_type}",
            "labels": labels,
            "description": host_description(self.pipeline, build.build_id),
            "disks": [
                {
                    "boot": True,
                    "autoDelete": True,
                    "initializeParams": {"sourceImage": source["selfLink"]},
                }
            ],
            "networkInterfaces": [interface],
        }
        if s.service_account:
            body["serviceAccounts"] = [
                {"email": s.service_account, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
            ]
        if s.ssh_public_key:
            body["metadata"] = {"items": [{"key": "ssh-keys", "value": f"{s.ssh_user}:{s.ssh_public_key}"}]}
        return body

    def _network_path(self, value: str, kind: str) -> str:
        if value.startswith("projects/"):
            return value
        if kind == "subnetworks":
            return f"projects/{self.project}/regions/{self.zone.rsplit('-', 1)[0]}/subnetworks/{value}"
        return f"projects/{self.project}/global/networks/{value}"

    def _host_instance(self, build: BuildRecord, host: Host) -> dict[str, Any] | None:
        name = host.id.rstrip("/").rsplit("/", 1)[-1]
        if f"/projects/{self.project}/zones/{self.zone}/instances/{name}" not in host.id:
            return None
        found = self._instance(name)
        return found if self.is_builds(build, found) else None

    def alive(self, build: BuildRecord, host: Host) -> bool:
        instance = self._host_instance(build, host)
        return instance is not None and instance.get("status") == "RUNNING"

    def ansible_vars(self, host: Host) -> dict[str, Any]:
        return ssh_ansible_vars(self.settings, host)

    def park_host(self, build: BuildRecord, host: Host) -> str:
        """instances.stop on the build's host (in the target's project and zone, with the build's
        labels): a stopped (TERMINATED) instance is not charged for its machine, only its disk."""
        instance = self._host_instance(build, host)
        if instance is None:
            return ""
        if instance.get("status") in ("PROVISIONING", "STAGING", "RUNNING"):
            self._power(str(instance["name"]), "stop")
            log.info("stopped build host %s (parked)", instance["name"])
        return "stopped"

    def unpark_host(self, build: BuildRecord, host: Host) -> Host | None:
        """instances.start on a parked host of the build's, waited for; an ephemeral external
        address changes on a start, so the address is read again."""
        instance = self._host_instance(build, host)
        if instance is None:
            return None
        name = str(instance["name"])
        if instance.get("status") != "RUNNING":
            self._power(name, "start")
            instance = self._instance(name) or instance
        return replace(host, address=self._instance_address(instance) or host.address)

    def capture(self, build: BuildRecord, host: Host, milestone: int, final: bool) -> dict[str, Any]:
        instance = self._host_instance(build, host)
        if instance is None:
            raise InvalidInput("host_id", f"{host.id} is not a build host of build {build.build_id} (or is gone)")
        name, disk = instance["name"], instance["disks"][0]["source"]
        s = self.settings
        family = self.names.family()
        description = f"{self.pipeline} {build.build_id} after milestone {milestone}"
        if instance.get("status") != "TERMINATED":
            self._power(name, "stop")  # a consistent disk
        if final:
            image_name = self.names.final_image(build)
            body: dict[str, Any] = {
                "sourceDisk": disk,
                "family": family,
                "description": description,
                "labels": self.build_labels(build, milestone, "final"),
            }
            if s.storage_locations:
                body["storageLocations"] = list(s.storage_locations)
            image = self._create_image(build, image_name, body)
            log.info("captured final image %s in family %s", image_name, family)
            return {
                IMAGE_OUTPUT: image["selfLink"],
                "final_image_name": image_name,
                "image_family": family,
                "image_project": self.project,
                **_size(image, "final_gb"),
            }
        image_name = self.names.checkpoint(build, milestone)
        try:
            image = self._create_image(
                build,
                image_name,
                {
                    "sourceDisk": disk,
                    "family": self.names.staging_family(),
                    "description": description,
                    "labels": self.build_labels(build, milestone, "checkpoint"),
                },
            )
        finally:
            self._power(name, "start")
        log.info("captured checkpoint image %s after milestone %d", image_name, milestone)
        return {
            CHECKPOINT_OUTPUT: image["selfLink"],
            "checkpoint_image_name": image_name,
            "image_project": self.project,
            **_size(image, "checkpoint_gb"),
        }

    def discard(self, build: BuildRecord, images: list[str]) -> list[str]:
        removed = []
        for image in images:
            parsed = self._parse(image)
            found = self._owned_image(build, image) if parsed is not None else None
            if parsed is None or found is None:
                log.info("checkpoint %s is gone or not build %s's; left alone", image, build.build_id)
                continue
            published = self._published(build, found)
            if published:
                log.warning("image %s is published (%s); left to retention", image, published)
                continue
            if self._delete_image(build, parsed[1]):
                removed.append(image)
        return removed

    def _published(self, build: BuildRecord, image: Mapping[str, Any]) -> str:
        """How a publish has begun on the build's final ``image`` ("" when it has not): a copy of
        the build's in a copy location, a share (an ``imageUser`` binding), or a family image it
        replaced by deprecation. A publish that failed halfway leaves an image people may already
        use: retention's to remove, never an abandon's. Checkpoints are never published."""
        role = (image.get("labels") or {}).get("imagebuild-role")
        if role in ("published", "copy"):
            return f"role {role}"
        if role != "final":
            return ""
        for location in self.settings.copy_locations:
            copy = self._image(self.names.copy(build, str(image["name"]), location))
            if copy is not None and self.is_builds(build, copy):
                return f"copied to {location}"
        images = self.compute.images()
        policy = self.call(f"images.getIamPolicy {image['name']}",
                           images.getIamPolicy(project=self.project, resource=image["name"]))  # fmt: skip
        if any(b.get("role") == IMAGE_USER and b.get("members") for b in policy.get("bindings") or []):
            return "shared"
        family = image.get("family")
        for other in self._family_images(str(family)) if family else []:
            if (other.get("deprecated") or {}).get("replacement") == image.get("selfLink"):
                return f"it replaced {other.get('name')} in family {family}"
        return ""

    def publish(self, build: BuildRecord, image: str) -> dict[str, Any]:
        s = self.settings
        found = self._owned_image(build, image)
        if found is None:
            raise InvalidInput(
                "milestones.95.outputs.image_id",
                f"{image} is not build {build.build_id}'s image (no labels of this build); it is not published",
            )
        name = found["name"]
        if s.share_with:
            self._share(name, list(s.share_with))
        copies = {}
        for location in s.copy_locations:
            copy_name = self.names.copy(build, name, location)
            existing = self._image(copy_name)
            if existing is None or not self.is_builds(build, existing):
                existing = self._create_image(
                    build,
                    copy_name,
                    {
                        "sourceImage": found["selfLink"],
                        "storageLocations": [location],
                        "description": f"copy of {name} in {location}",
                        "labels": self.build_labels(build, 100, "copy"),
                    },
                )
            if s.share_with:
                self._share(copy_name, list(s.share_with))
            copies[location] = existing["selfLink"]
        deprecated = self._deprecate_previous(build, found) if s.deprecate_previous else None
        log.info("published %s (family %s)", name, found.get("family"))
        size = _size(found, "gb").get("gb")  # each copy to another location transfers the image: priced per GB
        return {
            **({"transfer_gb": float(size * len(copies))} if size and copies else {}),
            "image_self_link": found["selfLink"],
            "image_family": found.get("family", ""),
            "image_project": self.project,
            "shared_with": list(s.share_with),
            "copies": copies,
            "deprecated_image": deprecated or "",
        }

    def _share(self, name: str, members: list[str]) -> None:
        images = self.compute.images()
        policy = self.call(f"images.getIamPolicy {name}", images.getIamPolicy(project=self.project, resource=name))
        bindings = [dict(b) for b in policy.get("bindings") or []]
        binding = next((b for b in bindings if b.get("role") == IMAGE_USER and not b.get("condition")), None)
        if binding is None:
            binding = {"role": IMAGE_USER, "members": []}
            bindings.append(binding)
        missing = [m for m in members if m not in binding["members"]]
        if not missing:
            return  # already shared (a retried publish)
        binding["members"] = [*binding["members"], *missing]
        body = {"policy": {"bindings": bindings, "etag": policy.get("etag", ""), "version": policy.get("version", 1)}}
        self.call(f"images.setIamPolicy {name}", images.setIamPolicy(project=self.project, resource=name, body=body))

    def _deprecate_previous(self, build: BuildRecord, image: dict[str, Any]) -> str | None:
        """Deprecate the family's newest other image made by this pipeline (never another
        pipeline's, never one already deprecated)."""
        policy = self.settings.deprecate_previous
        family = image.get("family")
        if policy is None or not family:
            return None
        listed = self._family_images(family)
        for done in listed:  # a retried publish: deprecated already, by this image
            if (done.get("deprecated") or {}).get("replacement") == image["selfLink"]:
                return str(done["selfLink"])
        previous = [
            i
            for i in listed
            if i["name"] != image["name"]
            and not i.get("deprecated")
            and (i.get("labels") or {}).get("imagebuild-pipeline") == label_value(self.pipeline)
            and (i.get("labels") or {}).get("managed-by") == MANAGED_BY
            and i.get("creationTimestamp", "") <= image.get("creationTimestamp", "")
        ]
        if not previous:
            return None
        target = max(previous, key=lambda i: i.get("creationTimestamp", ""))
        now = datetime.now(timezone.utc)
        status: dict[str, Any] = {"state": policy.state, "replacement": image["selfLink"]}
        if policy.obsolete_after_days:
            status["obsolete"] = (now + timedelta(days=policy.obsolete_after_days)).isoformat(timespec="seconds")
        if policy.delete_after_days:
            status["deleted"] = (now + timedelta(days=policy.delete_after_days)).isoformat(timespec="seconds")
        request = self.compute.images().deprecate(project=self.project, image=target["name"], body=status)
        self.wait(f"images.deprecate {target['name']}", self.call(f"images.deprecate {target['name']}", request))
        log.info("deprecated %s (%s), replaced by %s", target["name"], policy.state, image["name"])
        if "obsolete" in status or "deleted" in status:
            log.info(
                "%s: obsolete %s, deleted %s are informational dates; Compute Engine changes nothing on them, "
                "neither does this provider (deprecate or delete the image then, or set state)",
                target["name"], status.get("obsolete", "-"), status.get("deleted", "-"),
            )  # fmt: skip
        return str(target["selfLink"])

    def _family_images(self, family: str) -> list[dict[str, Any]]:
        """Every image of ``family`` in the project: all pages (at most 500 images each), or the
        newest image of a long-lived family would never be seen."""
        images = self.compute.images()
        request = images.list(project=self.project, filter=f'family = "{family}"')
        found: list[dict[str, Any]] = []
        while request is not None:
            page = self.call(f"images.list family {family}", request)
            found.extend(page.get("items") or [])
            request = images.list_next(request, page)
        return found

    def cleanup(self, build: BuildRecord, host: Host) -> None:
        """Delete the build host (its boot disk goes with it) and what earlier, lost hosts left."""
        instance = self._host_instance(build, host)
        if instance is not None:
            self._delete_instance(build, instance["name"])
        for code in sorted(checkpoint_images(build)):
            self._delete_instance(build, self.names.host(build, code))

    # -- the launch test (targets/launch.py's hooks) ---------------------------------------------------
    def _test_instance(self, build: BuildRecord) -> dict[str, Any] | None:
        """The build's launch test instance in the target's project and zone (labels: this build's
        key, managed-by and the launch-test role), or None."""
        found = self._instance(self.names.test_host(build))
        if not self.is_builds(build, found) or ((found or {}).get("labels") or {}).get("imagebuild-role") != ROLE:
            return None
        return found

    def _is_test_instance(self, build: BuildRecord, instance_id: str) -> bool:
        name = self.names.test_host(build)
        return instance_id.endswith(f"projects/{self.project}/zones/{self.zone}/instances/{name}")

    def leftover_test_instances(self, build: BuildRecord) -> list[str]:
        found = self._test_instance(build)
        return [str(found["selfLink"])] if found else []

    def launch_test_instance(self, build: BuildRecord, image: str) -> str:
        """Insert the launch test instance from the sealed image (as a build host is made); the
        insert operation is waited for, so that a refusal (quota, image) says why here."""
        source = self._owned_image(build, image)
        if source is None:
            raise InvalidInput("image_id", f"{image} is not build {build.build_id}'s image; no test instance is made")
        name = self.names.test_host(build)
        body = self._instance_body(name, source, self.build_labels(build, build.current_state, ROLE), build)
        request = self.compute.instances().insert(project=self.project, zone=self.zone, body=body)
        try:
            self.wait(f"instances.insert {name}", self.call(f"instances.insert {name}", request))
        except Exception:  # an insert that failed may leave the instance: deleted now
            with contextlib.suppress(Exception):
                if self._test_instance(build) is not None:
                    self._delete_instance(build, name)
            raise
        found = self._test_instance(build)
        if found is None:
            raise TargetError(f"Compute Engine instances.insert {name}: done, but the instance is not there")
        return str(found["selfLink"])

    def test_instance(self, build: BuildRecord, instance_id: str) -> TestInstance | None:
        found = self._test_instance(build) if self._is_test_instance(build, instance_id) else None
        if found is None:
            return None
        status = str(found.get("status") or "")
        if status == "RUNNING":
            return TestInstance(instance_id, RUNNING, self._instance_address(found))
        if status in STARTING_STATES:
            return TestInstance(instance_id, PENDING)
        return TestInstance(instance_id, STOPPED, detail=f"status {status}: {found.get('statusMessage', '')}".strip())

    def test_instance_console(self, build: BuildRecord, instance_id: str) -> bytes | None:
        """Serial port 1, the last 1 MB Compute Engine keeps (``getSerialPortOutput``)."""
        if not self._is_test_instance(build, instance_id) or self._test_instance(build) is None:
            return b""
        name = self.names.test_host(build)
        request = self.compute.instances().getSerialPortOutput(project=self.project, zone=self.zone, instance=name,
                                                               port=1)  # fmt: skip
        with self.maybe_missing() as found:
            found.append(self.call(f"instances.getSerialPortOutput {name}", request))
        return str(found[0].get("contents") or "").encode() if found else b""

    def delete_test_instance(self, build: BuildRecord, instance_id: str) -> None:
        """Delete the launch test instance (its boot disk goes with it) if it is this build's."""
        if not self._is_test_instance(build, instance_id):
            log.warning("%s is not build %s's launch test instance; left alone", instance_id, build.build_id)
            return
        if self._test_instance(build) is not None:
            self._delete_instance(build, self.names.test_host(build))

    # -- the leak collector (targets/leaks.py) -------------------------------------------------------
    def build_key(self, rec: BuildRecord) -> str:
        return self.key(rec)

    def _pipeline_filter(self) -> str:
        return f'(labels.managed-by = "{MANAGED_BY}") (labels.imagebuild-pipeline = "{label_value(self.pipeline)}")'

    def _listed(self, what: str, collection: Any, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request = collection.list(filter=self._pipeline_filter(), **params)
        while request is not None:
            page = self.call(f"{what}.list (gc)", request)
            items.extend(page.get("items") or [])
            request = collection.list_next(request, page)
        return items

    def _resource(self, kind: str, found: Mapping[str, Any], **more: Any) -> Resource:
        labels = found.get("labels") or {}
        milestone = str(labels.get("imagebuild-milestone", "")).removeprefix("m")
        where = self.zone if kind == "instance" else "global"
        key = str(labels.get("imagebuild-key", ""))
        return Resource(kind, str(found.get("selfLink") or found["name"]), where, self.pipeline,
                        self.names.described_build(found, key), parse_time(found.get("creationTimestamp")),
                        role=str(labels.get("imagebuild-role", "")),
                        milestone=int(milestone) if milestone.isdigit() else None, build_key=key, **more)  # fmt: skip

    def owned_resources(self) -> list[Resource]:
        """Instances of the target's zone and images of its project labelled ``managed-by`` and
        with this pipeline's ``imagebuild-pipeline`` (asked of the target's project only: another
        project's are never listed). Labels cannot hold a build id, so each carries its build's key."""
        instances = self._listed("instances", self.compute.instances(), project=self.project, zone=self.zone)
        images = self._listed("images", self.compute.images(), project=self.project)
        found = [
            self._resource("instance", i, size=str(i.get("machineType", "")).rsplit("/", 1)[-1]) for i in instances
        ]
        found += [self._resource("image", i, gb=float(i.get("diskSizeGb") or 0) or None) for i in images]
        return [r for r in found if r.build_key]

    def delete_resource(self, resource: Resource) -> bool:
        """Read again by name in the target's project (and zone); deleted only while its labels
        still say managed-by, this pipeline and the same build key."""
        name = resource.id.rstrip("/").rsplit("/", 1)[-1]  # the selfLink the record keeps too
        found = self._instance(name) if resource.kind == "instance" else self._image(name)
        labels = (found or {}).get("labels") or {}
        if (
            found is None
            or labels.get("managed-by") != MANAGED_BY
            or labels.get("imagebuild-pipeline") != label_value(self.pipeline)
            or labels.get("imagebuild-key") != resource.build_key
        ):
            return False
        if resource.kind == "instance":
            request = self.compute.instances().delete(project=self.project, zone=self.zone, instance=name)
        else:
            request = self.compute.images().delete(project=self.project, image=name)
        with self.maybe_missing() as done:
            done.append(self.wait(f"delete {resource.kind} {resource.id} (gc)", self.call("delete (gc)", request)))
        log.info("deleted leaked %s %s", resource.kind, resource.id)
        return True


def _size(image: Mapping[str, Any], key: str) -> dict[str, int]:
    """The image's ``diskSizeGb`` (an int64 written as a string) under ``key``, for the cost."""
    size = str(image.get("diskSizeGb") or "")
    return {key: int(size)} if size.isdigit() and int(size) > 0 else {}
