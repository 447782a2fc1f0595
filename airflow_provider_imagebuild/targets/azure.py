"""The Azure target: VM build hosts, snapshot checkpoints, a managed final image, published as a
Compute Gallery image version.

Clients come from :class:`~airflow_provider_imagebuild.clouds.azure.AzureClients` (an Airflow
Azure connection, or ``DefaultAzureCredential``); the SDKs are imported only when a milestone runs.

Decisions, and why:

- **Checkpoints are incremental snapshots of the build host's OS disk**, not managed images or
  gallery versions. A checkpoint must keep the machine as it is (users, keys, machine id): Azure
  only launches a generalized managed image, and a specialized gallery version costs a gallery
  image definition per pipeline and minutes of replication per checkpoint. A snapshot is taken in
  seconds after a graceful power-off (consistent, like EC2's reboot before CreateImage), and a
  host is relaunched from it by copying it to a disk and attaching that disk.
- The green image (10) is the managed image Packer's azure-arm builder makes; the first build
  host is launched from it (generalized: the spec's ``ssh_user`` and ``ssh_public_key`` are set).
- **Seal** deallocates and generalizes the host and captures a managed image; **publish** makes a
  gallery image version of it, first with ``excludeFromLatest`` so that a failed or half-replicated
  publish is never what ``latest`` resolves to, then lifts the exclusion once replication
  succeeded. Earlier versions are kept. The version is ``YYYY.MMDD.HHMMSS`` of the build's
  creation time, so a retried publish finds its own version.
- Every resource is named from a digest of the pipeline and build id (``ib-<10 hex>-...``, the
  managed images Packer makes ``<pipeline cut to 48>-<10 hex>-m<code>``), in one place
  (:mod:`~airflow_provider_imagebuild.targets.azure_names`, which checks each name against the rule
  Azure or Packer holds it to), and tagged with ``BuildId``, ``Pipeline`` and ``ManagedBy``; the full
  identity is in the tags.
  Nothing without this build's tags is launched from, captured, published, updated or deleted.
- The **launch test** (:mod:`.launch`: the template; here its hooks) creates one VM
  ``ib-<digest>-lt`` from the sealed managed image with a NIC of its own in the build's subnet,
  boot diagnostics on (managed storage: its serial console log is the console the check reads,
  through ``retrieveBootDiagnosticsData``'s short-lived SAS URI, never logged), and its OS disk,
  NIC and public IP deleted with it (``deleteOption: Delete``). Everything of it is tagged
  ``Role: launch-test``; a leftover (a lost worker's) is found by its names in the target's
  resource group and those tags, so nothing else is ever deleted as one.
- **Reuse** (#32, :meth:`AzureTarget.adopt_checkpoint`): a new build starts from an earlier build's
  checkpoint by *copying* a snapshot (Snapshots_CreateOrUpdate, ``createOption: Copy``: one call,
  a full snapshot, since an incremental one is only ever taken of a disk) or by *claiming* a managed
  image (re-tagged as the new build's), because Compute has no call that copies a managed image.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import timedelta, timezone
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord, parse_ts
from airflow_provider_imagebuild.build.reuse import delivered_images
from airflow_provider_imagebuild.clouds.azure import AzureClients, azure_errors
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, NotFound, TargetError
from airflow_provider_imagebuild.rerun import rerun_advice
from airflow_provider_imagebuild.spec.azure import AzureTargetSpec
from airflow_provider_imagebuild.targets.azure_names import AzureNames
from airflow_provider_imagebuild.targets.azure_names import gallery_version as gallery_version
from airflow_provider_imagebuild.targets.base import (
    CHECKPOINT_OUTPUT,
    IMAGE_OUTPUT,
    MANAGED_BY,
    Checkpoint,
    DigestNames,
    Host,
    built_with_tags,
    checkpoint_images,
    ssh_ansible_vars,
)
from airflow_provider_imagebuild.targets.launch import PENDING, ROLE, RUNNING, STOPPED, LaunchTestTarget, TestInstance
from airflow_provider_imagebuild.targets.leaks import LeakCollecting, Resource, parse_time

log = logging.getLogger(__name__)

LIVE_POWER_STATES = {"running", "starting"}
STOPPED_POWER_STATES = {"stopping", "stopped", "deallocating", "deallocated"}
BOOT_LOG_SAS_MINUTES = 10  # how long the serial console log's SAS URI may be used (read at once)
BOOT_LOG_BYTES = 1024 * 1024  # the end of the serial console log that is kept (what a failure quotes)
WAIT_S = 3600  # the longest a single long-running operation is waited for (gallery replication)


def _disk_gb(size: Any, key: str) -> dict[str, int]:
    """A disk's, snapshot's or image's ``diskSizeGB`` under ``key``, for the cost; {} when unknown."""
    return {key: int(size)} if isinstance(size, int) and not isinstance(size, bool) and size > 0 else {}


def _get(resource: Any, *path: str | int) -> Any:
    """A value deep in a REST-shaped resource (SDK models are mappings of the REST names)."""
    value = resource
    for key in path:
        if value is None:
            return None
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def history_digest(build: BuildRecord) -> str:
    """A short digest of the milestones that made the image (code, attempt, skipped): tells two
    images of one build apart after a redo, without putting the history in a tag."""
    text = ",".join(
        f"{code}:{ms.attempt}:{'skipped' if ms.skipped else 'done'}" for code, ms in sorted(build.milestones.items())
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_id(resource_id: str) -> dict[str, str] | None:
    """The parts of an ARM resource id (``type``, ``name``, ``resource_group``...), or None."""
    from azure.mgmt.core.tools import is_valid_resource_id, parse_resource_id

    if not is_valid_resource_id(resource_id):
        return None
    return {key: str(value) for key, value in parse_resource_id(resource_id).items()}


class AzureTarget(DigestNames, LaunchTestTarget, LeakCollecting):
    name = "azure"
    wait_s: float = WAIT_S
    # Azure keeps a NIC for 180 s for the VM that held it when that VM is deleted (or its creation
    # failed): creating a VM with it, or deleting it, answers 400 NicReservedForAnotherVm meanwhile.
    nic_reservation_wait_s: float = 200.0
    nic_retry_s: float = 15.0

    def __init__(self, settings: AzureTargetSpec, *, pipeline: str, image_type: str, clients: AzureClients) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.image_type = image_type
        self.clients = clients
        self.group = settings.resource_group or ""
        self.location = settings.location or ""
        self.region = ""  # Packer's azure-arm artifact is one image id, not region:id pairs

    @classmethod
    def from_settings(cls, settings: Any, *, pipeline: str, image_type: str) -> AzureTarget:
        if not isinstance(settings, AzureTargetSpec):
            raise InvalidInput("target", "an Azure pipeline needs Azure target settings")
        for name in ("resource_group", "location"):
            if not getattr(settings, name):
                raise InvalidInput(f"target.{name}", "is required for a build on Azure")
        clients = AzureClients.from_connection(settings.azure_conn_id, settings.subscription_id)
        return cls(settings, pipeline=pipeline, image_type=image_type, clients=clients)

    # -- helpers -------------------------------------------------------------------------------
    def names(self, build: BuildRecord) -> AzureNames:
        """The names of the build's resources (the one place they are made)."""
        return AzureNames(self.pipeline, build)

    def api(self, what: str) -> contextlib.AbstractContextManager[None]:
        return azure_errors(f"Azure {what}", endpoint=self.clients.base_url)

    @contextlib.contextmanager
    def maybe_missing(self, what: str) -> Iterator[list[Any]]:
        """``with self.maybe_missing(...) as found: found.append(call())``: a 404 leaves it empty."""
        found: list[Any] = []
        try:
            with self.api(what):
                yield found
        except NotFound:
            found.clear()

    @property
    def compute(self) -> Any:
        return self.clients.compute

    @property
    def network(self) -> Any:
        return self.clients.network

    def build_tags(self, build: BuildRecord, milestone: int, role: str) -> dict[str, str]:
        return {
            **self.settings.tags,
            "BuildId": build.build_id,
            "Pipeline": self.pipeline,
            "Milestone": str(milestone),
            "ImageType": self.image_type,
            "Role": role,
            "ManagedBy": MANAGED_BY,
        }

    def is_builds(self, build: BuildRecord, resource: Any) -> bool:
        tags = _get(resource, "tags") or {}
        return bool(
            tags.get("BuildId") == build.build_id
            and tags.get("Pipeline") == self.pipeline
            and tags.get("ManagedBy") == MANAGED_BY
        )

    def resource_id(self, kind: str, name: str) -> str:
        network_kinds = ("networkInterfaces", "publicIPAddresses", "networkSecurityGroups")
        namespace = "Microsoft.Network" if kind in network_kinds else "Microsoft.Compute"
        return (
            f"/subscriptions/{self.clients.subscription_id}/resourceGroups/{self.group}"
            f"/providers/{namespace}/{kind}/{name}"
        )

    def subnet_id(self) -> str:
        network = self.settings.network or ""
        if network.startswith("/"):
            return network
        vnet, _, subnet = network.partition("/")
        return (
            f"/subscriptions/{self.clients.subscription_id}/resourceGroups/{self.group}"
            f"/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{subnet}"
        )

    def _owned(self, build: BuildRecord, resource_id: str) -> Any | None:
        """The image, snapshot or VM ``resource_id`` names, if it exists in this target's resource
        group and carries this build's tags; else None."""
        parts = parse_id(resource_id)
        if parts is None:
            return None
        if (
            parts.get("subscription", "").lower() != self.clients.subscription_id.lower()
            or parts.get("resource_group", "").lower() != self.group.lower()
            or parts.get("children")
        ):
            return None
        getter = {
            "images": self.compute.images.get,
            "snapshots": self.compute.snapshots.get,
            "virtualmachines": self.compute.virtual_machines.get,
        }.get(parts.get("type", "").lower())
        if getter is None:
            return None
        with self.maybe_missing(f"GET {resource_id}") as found:
            found.append(getter(self.group, parts["name"]))
        if not found or not self.is_builds(build, found[0]):
            return None
        return found[0]

    def _wait(self, poller: Any) -> Any:
        """The result of a long-running operation. ``result(timeout)`` returns None, without an
        error, when the timeout passes first: the operation is still running, and what depends on it
        (lifting ``excludeFromLatest`` once replication ended) must not go on. Transient: Azure goes
        on, and a retry finds the finished resource."""
        result = poller.result(timeout=self.wait_s)
        if not poller.done():
            raise TargetError(
                f"Azure operation still running after {self.wait_s:g} s ({poller.status()}); the milestone is "
                "retried and finds it finished"
            )
        return result

    def _while_nic_reserved(self, call: Callable[[], Any]) -> Any:
        """``call()``, again every ``nic_retry_s`` while Azure still keeps a NIC for a VM deleted moments
        ago (a transient error once ``nic_reservation_wait_s`` have passed)."""
        deadline = time.monotonic() + self.nic_reservation_wait_s
        while True:
            try:
                return call()
            except TargetError as exc:
                if "NicReservedForAnotherVm" not in str(exc) or time.monotonic() + self.nic_retry_s > deadline:
                    raise
                log.info("a NIC is still kept for a VM deleted moments ago; again in %g s", self.nic_retry_s)
            time.sleep(self.nic_retry_s)

    def _delete(self, build: BuildRecord, operations: Any, name: str, what: str) -> bool:
        """Delete a resource of this build by name (idempotent: gone already is fine)."""
        with self.maybe_missing(f"GET {what} {name}") as found:
            found.append(operations.get(self.group, name))
        if not found:
            return False
        if not self.is_builds(build, found[0]):
            log.warning("%s %s is not build %s's (tags); left alone", what, name, build.build_id)
            return False

        def delete() -> None:
            with self.maybe_missing(f"DELETE {what} {name}") as done:
                done.append(self._wait(operations.begin_delete(self.group, name)))

        self._while_nic_reserved(delete)
        log.info("deleted %s %s", what, name)
        return True

    def power_state(self, vm: Any) -> str:
        for status in _get(vm, "properties", "instanceView", "statuses") or []:
            code = str(status.get("code", ""))
            if code.startswith("PowerState/"):
                return code.split("/", 1)[1]
        return "unknown"

    # -- the target interface --------------------------------------------------------------------
    def owns_image(self, build: BuildRecord, image: str) -> bool:
        return self._owned(build, image) is not None

    def claim_images(self, build: BuildRecord, images: Mapping[str, str], milestone: int) -> None:
        """Tag the managed image Packer's azure-arm builder made for this build."""
        for image_id in images.values():
            parts = parse_id(image_id) or {}
            if (
                parts.get("type", "").lower() != "images"
                or parts.get("resource_group", "").lower() != self.group.lower()
                or parts.get("subscription", "").lower() != self.clients.subscription_id.lower()
            ):
                raise InvalidInput(
                    "packer artifact",
                    f"{image_id} is not a managed image in resource group {self.group} of subscription "
                    f"{self.clients.subscription_id} (Packer 1.6.6 with a managed identity builds in the VM's own "
                    "subscription)",
                )
            with self.api(f"PATCH image {parts['name']}"):
                current = self.compute.images.get(self.group, parts["name"])
                tags = {**(_get(current, "tags") or {}), **self.build_tags(build, milestone, "checkpoint")}
                self._wait(self.compute.images.begin_update(self.group, parts["name"], {"tags": tags}))

    def packer_artifacts(self, build: BuildRecord, milestone: int) -> dict[str, str]:
        """The managed image an earlier attempt of this Packer milestone made, when it is complete and
        provably the build's: in this target's subscription and resource group (where the template puts
        it, under :meth:`packer_image_name`) and tagged by the template with the build, pipeline,
        milestone and ``ManagedBy``. azure-arm stops when the image exists ("use the -force option"),
        so a retry adopts it; an incomplete one of the build's is deleted so that Packer makes it
        again; one that is not provably the build's raises and is left alone."""
        name = self.packer_image_name(build, self.pipeline, milestone)
        with self.maybe_missing(f"GET image {name}") as found:
            found.append(self.compute.images.get(self.group, name))
        if not found:
            return {}
        image = found[0]
        image_id = str(_get(image, "id") or "")
        parts = parse_id(image_id) or {}
        tags = _get(image, "tags") or {}
        owned = (
            parts.get("subscription", "").lower() == self.clients.subscription_id.lower()
            and parts.get("resource_group", "").lower() == self.group.lower()
            and parts.get("type", "").lower() == "images"
        )
        if not (owned and self.is_builds(build, image) and tags.get("Milestone") == str(milestone)):
            raise InvalidInput(
                "packer artifact",
                f"managed image {name} in resource group {self.group} exists and is not build {build.build_id}'s "
                f"milestone {milestone} image (its tags do not say so); it is left alone: remove or rename it, "
                f"then {rerun_advice()}",
            )
        state = str(_get(image, "properties", "provisioningState") or "")
        if state != "Succeeded":
            log.info("managed image %s of an earlier attempt is %s: deleted so that Packer makes it again", name, state)
            self._delete(build, self.compute.images, name, "image")
            return {}
        return {self.region: image_id}

    def packer_image_name(self, build: BuildRecord, pipeline: str, milestone: int) -> str:
        """Packer's ``managed_image_name`` (at most 80 characters, see azure_names)."""
        return AzureNames(pipeline, build).packer_image(milestone)

    def packer_source_image(self, image: str) -> str:
        """The template takes a marketplace URN, a gallery image version id, or a managed image of
        the build's subscription: azure-arm's ``custom_managed_image_*`` look the image up in the
        subscription it builds in (Packer 1.6.6 and plugin 1.x have no other)."""
        parts = parse_id(image) if image.startswith("/") else None
        if (
            parts is not None
            and parts.get("type", "").lower() == "images"
            and parts.get("subscription", "").lower() != self.clients.subscription_id.lower()
        ):
            raise InvalidInput(
                "target.source_image",
                f"managed image {parts.get('name')} is in subscription {parts.get('subscription')}; Packer's "
                f"azure-arm takes managed images of the build's subscription ({self.clients.subscription_id}) "
                "only: copy it there or publish it to a gallery and give the gallery image version id",
            )
        return image

    def packer_vars(self) -> dict[str, str]:
        """The template's settings; ``virtual_network`` puts Packer's VM in the build's subnet with a
        private address (without it azure-arm makes a temporary network and a public IP, which
        common policies refuse)."""
        if not self.clients.cloud.packer_environment:
            raise InvalidInput(
                "connection.extra.resource_manager_endpoint",
                f"Packer's azure-arm builds in the Public, China or USGovernment cloud only, not at "
                f"{self.clients.base_url} (Azure Stack Hub has a builder of its own): run Packer milestones elsewhere",
            )
        found = {
            "azure_cloud_environment": self.clients.cloud.packer_environment,
            "azure_subscription_id": self.clients.subscription_id,
            "azure_resource_group": self.group,
            "azure_location": self.location,
            "azure_vm_size": self.settings.vm_size,
            "virtual_network": "",
            "virtual_network_resource_group": "",
        }
        if self.settings.network:
            subnet = parse_id(self.subnet_id()) or {}
            if subnet.get("subscription", "").lower() != self.clients.subscription_id.lower():
                raise InvalidInput(
                    "target.network",
                    f"the subnet is in subscription {subnet.get('subscription')}; Packer's azure-arm takes a virtual "
                    f"network of the subscription it builds in ({self.clients.subscription_id})",
                )
            found["virtual_network"] = f"{subnet['name']}/{subnet['child_name_1']}"
            found["virtual_network_resource_group"] = subnet["resource_group"]
        return found

    def packer_env(self) -> dict[str, str]:
        """Packer logs in as the identity this target's clients use (clouds/azure_login.py: what each
        Packer version takes, and what it cannot)."""
        from airflow_provider_imagebuild.toolchain.versions import packer_version

        return self.clients.packer_env(packer_version())

    def playbook_vars(self, build: BuildRecord) -> dict[str, Any]:
        return {"imagebuild_ssh_public_key": self.settings.ssh_public_key or ""}

    def launch(self, build: BuildRecord, checkpoint: Checkpoint) -> Host:
        source = self._owned(build, checkpoint.image)
        if source is None:
            raise InvalidInput(
                f"milestones.{checkpoint.code}.outputs.checkpoint_image",
                f"{checkpoint.image} is not build {build.build_id}'s image or snapshot (missing, outside resource "
                f"group {self.group}, or without this build's tags); a build host is launched only from the "
                "build's own checkpoints",
            )
        names, code = self.names(build), checkpoint.code
        vm_name, disk_name, nic_name = names.host(code), names.os_disk(code), names.nic(code)
        # A host launched from this checkpoint before (and lost since) may have left its parts.
        self._delete(build, self.compute.virtual_machines, vm_name, "virtual machine")
        self._delete(build, self.compute.disks, disk_name, "disk")
        tags = self.build_tags(build, checkpoint.code, "buildhost")
        nic = self._network_interface(nic_name, names.public_ip(checkpoint.code), tags)
        is_snapshot = "/snapshots/" in checkpoint.image.lower()
        storage: dict[str, Any]
        body: dict[str, Any] = {"location": self.location, "tags": tags, "properties": {}}
        if is_snapshot:
            with self.api(f"PUT disk {disk_name} from {checkpoint.image}"):
                disk = self._wait(
                    self.compute.disks.begin_create_or_update(
                        self.group,
                        disk_name,
                        {
                            "location": self.location,
                            "tags": tags,
                            "sku": {"name": self.settings.os_disk_type},
                            "properties": {
                                "osType": "Linux",
                                "creationData": {"createOption": "Copy", "sourceResourceId": checkpoint.image},
                            },
                        },
                    )
                )
            storage = {
                "osDisk": {
                    "osType": "Linux",
                    "createOption": "Attach",
                    "deleteOption": "Delete",
                    "managedDisk": {"id": _get(disk, "id")},
                }
            }
        else:
            if not self.settings.ssh_public_key:
                raise InvalidInput(
                    "target.ssh_public_key",
                    "is needed to launch a build host from a generalized image (Azure sets the admin user's key)",
                )
            storage = self._from_image(checkpoint.image, disk_name)
            body["properties"]["osProfile"] = self._os_profile(vm_name)
        body["properties"].update(
            {
                "hardwareProfile": {"vmSize": self.settings.vm_size},
                "storageProfile": storage,
                "networkProfile": {
                    "networkInterfaces": [
                        {"id": _get(nic, "id"), "properties": {"primary": True, "deleteOption": "Delete"}}
                    ]
                },
            }
        )

        def create() -> Any:
            with self.api(f"PUT virtual machine {vm_name} from {checkpoint.image}"):
                return self._wait(self.compute.virtual_machines.begin_create_or_update(self.group, vm_name, body))

        vm = self._while_nic_reserved(create)
        address = self._address(nic_name)
        log.info("build host %s (%s) launched from %s", vm_name, address, checkpoint.image)
        return Host(str(_get(vm, "id")), address, checkpoint.image, checkpoint.code, checkpoint.code)

    def _security_group(self) -> str:
        """The NSG the build host's NIC gets: a Standard SKU public IP (the only one Azure still
        creates) accepts no inbound traffic until a network security group allows it, on the NIC or
        on its subnet. Without either, Ansible could never reach the host: refused before launching."""
        nsg = self.settings.network_security_group or ""
        if nsg:
            return nsg if nsg.startswith("/") else self.resource_id("networkSecurityGroups", nsg)
        subnet = parse_id(self.subnet_id()) or {}
        with self.api(f"GET subnet {subnet.get('name')}/{subnet.get('child_name_1')}"):
            found = self.network.subnets.get(subnet["resource_group"], subnet["name"], subnet["child_name_1"])
        if not _get(found, "properties", "networkSecurityGroup", "id"):
            raise InvalidInput(
                "target.network_security_group",
                f"public_ip needs a network security group that allows SSH from the worker: a Standard public IP "
                f"accepts no inbound traffic without one, and subnet {subnet.get('child_name_1')} has none",
            )
        return ""

    def _network_interface(self, name: str, ip_name: str, tags: dict[str, str]) -> Any:
        config: dict[str, Any] = {"subnet": {"id": self.subnet_id()}, "privateIPAllocationMethod": "Dynamic"}
        nic_properties: dict[str, Any] = {"ipConfigurations": [{"name": "ipconfig1", "properties": config}]}
        if self.settings.public_ip:
            nsg = self._security_group()
            if nsg:
                nic_properties["networkSecurityGroup"] = {"id": nsg}
            with self.api(f"PUT public IP address {ip_name}"):
                ip = self._wait(
                    self.network.public_ip_addresses.begin_create_or_update(
                        self.group,
                        ip_name,
                        {
                            "location": self.location,
                            "tags": tags,
                            "sku": {"name": "Standard"},
                            "properties": {"publicIPAllocationMethod": "Static", "deleteOption": "Delete"},
                        },
                    )
                )
            config["publicIPAddress"] = {"id": _get(ip, "id"), "properties": {"deleteOption": "Delete"}}
        with self.api(f"PUT network interface {name}"):
            return self._wait(
                self.network.network_interfaces.begin_create_or_update(
                    self.group,
                    name,
                    {"location": self.location, "tags": tags, "properties": nic_properties},
                )
            )

    def _address(self, nic_name: str) -> str:
        with self.api(f"GET network interface {nic_name}"):
            nic = self.network.network_interfaces.get(self.group, nic_name)
        config = _get(nic, "properties", "ipConfigurations", 0, "properties") or {}
        if self.settings.public_ip and _get(config, "publicIPAddress", "id"):
            ip_name = str(_get(config, "publicIPAddress", "id")).rsplit("/", 1)[-1]
            with self.api(f"GET public IP address {ip_name}"):
                public = _get(self.network.public_ip_addresses.get(self.group, ip_name), "properties", "ipAddress")
            if public:
                return str(public)
        return str(config.get("privateIPAddress") or "")

    def _vm(self, build: BuildRecord, host: Host) -> Any | None:
        """The host's VM with its instance view, if it exists and is this build's."""
        if self._owned(build, host.id) is None:
            return None
        name = (parse_id(host.id) or {})["name"]
        with self.maybe_missing(f"GET virtual machine {name}") as found:
            found.append(self.compute.virtual_machines.get(self.group, name, expand="instanceView"))
        return found[0] if found else None

    def alive(self, build: BuildRecord, host: Host) -> bool:
        vm = self._vm(build, host)
        return vm is not None and self.power_state(vm) in LIVE_POWER_STATES

    def ansible_vars(self, host: Host) -> dict[str, Any]:
        return ssh_ansible_vars(self.settings, host)

    def park_host(self, build: BuildRecord, host: Host) -> str:
        """Deallocate the build's VM (in the target's subscription and group, with the build's
        tags): a deallocated VM is not billed for compute, only its disks, which the resume keeps."""
        vm = self._vm(build, host)
        if vm is None:
            return ""
        name = str(_get(vm, "name"))
        if self.power_state(vm) != "deallocated":
            with self.api(f"deallocate {name}"):
                self._wait(self.compute.virtual_machines.begin_deallocate(self.group, name))
            log.info("deallocated build host %s (parked)", name)
        return "deallocated"

    def unpark_host(self, build: BuildRecord, host: Host) -> Host | None:
        """Start the deallocated VM of the build's and read its address again (a dynamic public IP
        is released on deallocation and a new one given on start)."""
        vm = self._vm(build, host)
        if vm is None:
            return None
        name = str(_get(vm, "name"))
        if self.power_state(vm) not in LIVE_POWER_STATES:
            with self.api(f"start {name}"):
                self._wait(self.compute.virtual_machines.begin_start(self.group, name))
        nic = str(_get(vm, "properties", "networkProfile", "networkInterfaces", 0, "id") or "").rsplit("/", 1)[-1]
        return replace(host, address=(self._address(nic) if nic else "") or host.address)

    def capture(self, build: BuildRecord, host: Host, milestone: int, final: bool) -> dict[str, Any]:
        vm = self._vm(build, host)
        if vm is None:
            raise InvalidInput("host_id", f"{host.id} is not a build host of build {build.build_id} (or is gone)")
        vm_name = str(_get(vm, "name"))
        if final:
            return self._capture_image(build, vm, vm_name, milestone)
        return self._snapshot(build, vm, vm_name, milestone)

    def _snapshot(self, build: BuildRecord, vm: Any, vm_name: str, milestone: int) -> dict[str, Any]:
        name = self.names(build).snapshot(milestone)
        # A snapshot of this name from an earlier attempt holds an older state of the disk.
        self._delete(build, self.compute.snapshots, name, "snapshot")
        disk_id = _get(vm, "properties", "storageProfile", "osDisk", "managedDisk", "id")
        with self.api(f"power off {vm_name}"):
            self._wait(self.compute.virtual_machines.begin_power_off(self.group, vm_name, skip_shutdown=False))
        try:
            with self.api(f"PUT snapshot {name} of {disk_id}"):
                snapshot = self._wait(
                    self.compute.snapshots.begin_create_or_update(
                        self.group,
                        name,
                        {
                            "location": self.location,
                            "tags": self.build_tags(build, milestone, "checkpoint"),
                            "properties": {
                                "incremental": True,
                                "creationData": {"createOption": "Copy", "sourceResourceId": disk_id},
                            },
                        },
                    )
                )
        finally:
            with self.api(f"start {vm_name}"):
                self._wait(self.compute.virtual_machines.begin_start(self.group, vm_name))
        log.info("captured checkpoint snapshot %s of %s after milestone %d", name, vm_name, milestone)
        return {
            CHECKPOINT_OUTPUT: str(_get(snapshot, "id")),
            "checkpoint_image_name": name,
            "image_region": self.location,
            **_disk_gb(_get(snapshot, "properties", "diskSizeGB"), "checkpoint_gb"),
        }

    def _capture_image(self, build: BuildRecord, vm: Any, vm_name: str, milestone: int) -> dict[str, Any]:
        name = self.names(build).final_image()
        statuses = {str(s.get("code", "")) for s in _get(vm, "properties", "instanceView", "statuses") or []}
        if "OSState/generalized" not in statuses:  # a retried capture finds it generalized already
            with self.api(f"deallocate {vm_name}"):
                self._wait(self.compute.virtual_machines.begin_deallocate(self.group, vm_name))
            with self.api(f"generalize {vm_name}"):
                self.compute.virtual_machines.generalize(self.group, vm_name)
        self._delete(build, self.compute.images, name, "image")
        properties: dict[str, Any] = {"sourceVirtualMachine": {"id": _get(vm, "id")}}
        generation = self._generation(vm)
        if generation:  # the VM's own: a Gen1 source captured as V2 would not boot
            properties["hyperVGeneration"] = generation
        with self.api(f"PUT image {name} from {vm_name}"):
            image = self._wait(
                self.compute.images.begin_create_or_update(
                    self.group,
                    name,
                    {
                        "location": self.location,
                        "tags": self.build_tags(build, milestone, "final"),
                        "properties": properties,
                    },
                )
            )
        log.info("captured final image %s from %s", name, vm_name)
        size = _get(image, "properties", "storageProfile", "osDisk", "diskSizeGB")
        return {IMAGE_OUTPUT: str(_get(image, "id")), "final_image_name": name, "image_region": self.location,
                **_disk_gb(size, "final_gb")}  # fmt: skip

    def _generation(self, vm: Any) -> str:
        """The Hyper-V generation of the VM's OS disk (what its source image was), or "" when Azure
        does not say (it then deduces it from the VM)."""
        parts = parse_id(str(_get(vm, "properties", "storageProfile", "osDisk", "managedDisk", "id") or "")) or {}
        if not parts.get("name"):
            return ""
        with self.maybe_missing(f"GET disk {parts['name']}") as found:
            found.append(self.compute.disks.get(parts["resource_group"], parts["name"]))
        return str(_get(found[0], "properties", "hyperVGeneration") or "") if found else ""

    def discard(self, build: BuildRecord, images: list[str]) -> list[str]:
        removed = []
        for image in images:
            parts = parse_id(image)
            found = self._owned(build, image) if parts is not None else None
            if parts is None or found is None:
                log.info("checkpoint %s is gone or not build %s's; left alone", image, build.build_id)
                continue
            published = self._published(build, image, found)
            if published:
                log.warning("image %s is published (%s); left to retention", image, published)
                continue
            operations = self.compute.snapshots if parts["type"].lower() == "snapshots" else self.compute.images
            if self._delete(build, operations, parts["name"], parts["type"]):
                removed.append(image)
        return removed

    def _published(self, build: BuildRecord, image: str, found: Any) -> str:
        """How a publish has begun on the build's managed ``image`` ("" when it has not): tagged
        published, or the source of the build's gallery image version (made before its replication
        ends and ``excludeFromLatest`` is lifted: a publish that failed halfway leaves a version
        people may already use, whose source only retention removes). Snapshots are checkpoints."""
        if (_get(found, "tags") or {}).get("Role") == "published":
            return "Role=published"
        s = self.settings
        if (parse_id(image) or {}).get("type", "").lower() != "images" or not s.gallery or not s.gallery_image:
            return ""
        version = self.names(build).gallery_version()
        with self.maybe_missing(f"GET gallery image version {version}") as existing:
            existing.append(self.compute.gallery_image_versions.get(self.group, s.gallery, s.gallery_image, version))
        if not existing or not self.is_builds(build, existing[0]):
            return ""
        source = str(_get(existing[0], "properties", "storageProfile", "source", "id") or "")
        return f"source of gallery version {version}" if source.lower() == image.lower() else ""

    def publish(self, build: BuildRecord, image: str) -> dict[str, Any]:
        s = self.settings
        if not s.gallery or not s.gallery_image:
            raise InvalidInput("target.gallery", "publishing on Azure needs target.gallery and target.gallery_image")
        if self._owned(build, image) is None:
            raise InvalidInput(
                "milestones.95.outputs.image_id",
                f"{image} is not build {build.build_id}'s image (no tags of this build); it is not published",
            )
        with self.maybe_missing(f"GET gallery image {s.gallery}/{s.gallery_image}") as definition:
            definition.append(self.compute.gallery_images.get(self.group, s.gallery, s.gallery_image))
        if not definition:
            raise InvalidInput(
                "target.gallery_image",
                f"gallery image definition {s.gallery}/{s.gallery_image} does not exist in resource group "
                f"{self.group}; create it once (az sig image-definition create) with the image's OS and generation",
            )
        # The definition's generation (V1 unless set) must be the image's, or Azure refuses the version.
        wanted = str(_get(definition[0], "properties", "hyperVGeneration") or "V1")
        source = self._owned(build, image)
        have = str(_get(source, "properties", "hyperVGeneration") or "V1")
        if wanted != have:
            raise InvalidInput(
                "target.gallery_image",
                f"gallery image definition {s.gallery}/{s.gallery_image} is Hyper-V generation {wanted} and the image "
                f"is {have}: publish to a definition of generation {have}",
            )
        version = self.names(build).gallery_version()
        versions = self.compute.gallery_image_versions
        with self.maybe_missing(f"GET gallery image version {version}") as existing:
            existing.append(versions.get(self.group, s.gallery, s.gallery_image, version))
        if existing and not self.is_builds(build, existing[0]):
            raise InvalidInput(
                "target.gallery_image",
                f"version {version} of {s.gallery}/{s.gallery_image} exists and is not build {build.build_id}'s",
            )
        regions = list(dict.fromkeys([self.location, *s.replication_regions]))
        tags = {**self.build_tags(build, 100, "published"), "MilestoneHistory": history_digest(build),
                **built_with_tags(build)}  # fmt: skip
        profile: dict[str, Any] = {
            "targetRegions": [
                {"name": r, "regionalReplicaCount": s.replica_count, "storageAccountType": s.replica_storage_type}
                for r in regions
            ],
            "replicaCount": s.replica_count,
            "storageAccountType": s.replica_storage_type,
            "excludeFromLatest": True,  # lifted below, once every region has its replicas
        }
        if s.end_of_life_days:
            end = parse_ts(build.created_at) + timedelta(days=s.end_of_life_days)
            profile["endOfLifeDate"] = end.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        state = str(_get(existing[0], "properties", "provisioningState") or "") if existing else ""
        if state != "Succeeded":
            with self.api(f"PUT gallery image version {s.gallery}/{s.gallery_image}/{version}"):
                created = self._wait(
                    versions.begin_create_or_update(
                        self.group,
                        s.gallery,
                        s.gallery_image,
                        version,
                        {
                            "location": self.location,
                            "tags": tags,
                            "properties": {"publishingProfile": profile, "storageProfile": {"source": {"id": image}}},
                        },
                    )
                )
        else:
            created = existing[0]
        with self.api(f"PATCH gallery image version {version} (excludeFromLatest: false)"):
            self._wait(
                versions.begin_update(
                    self.group,
                    s.gallery,
                    s.gallery_image,
                    version,
                    # storageProfile is required in the model (GalleryImageVersionProperties), and both
                    # published PATCH examples send it.
                    {
                        "tags": tags,
                        "properties": {
                            "publishingProfile": {"excludeFromLatest": False},
                            "storageProfile": {"source": {"id": image}},
                        },
                    },
                )
            )
        version_id = str(_get(created, "id"))
        log.info("published %s as %s in %s", image, version_id, ", ".join(regions))
        # Replication copies the image to each region beyond its own (replicas within a region are
        # copies made there): what a publish transfers, priced per GB (build/cost.py).
        final_gb = build.merged_outputs().get("final_gb")
        transfer = {"transfer_gb": float(final_gb) * (len(regions) - 1)} if isinstance(final_gb, (int, float)) else {}
        return {
            "gallery_image_version_id": version_id,
            "gallery_image_version": version,
            "published_regions": regions,
            **transfer,
        }

    def cleanup(self, build: BuildRecord, host: Host) -> None:
        """Delete the build host's VM (its OS disk, NIC and public IP go with it: deleteOption) and
        what earlier hosts of the build left when they were lost: a host is named after the
        checkpoint it was launched from, so every checkpoint's name is looked at."""
        parts = parse_id(host.id)
        if parts is not None and self._owned(build, host.id) is not None:
            self._delete(build, self.compute.virtual_machines, parts["name"], "virtual machine")
        names = self.names(build)
        for code in sorted(checkpoint_images(build)):
            self._delete(build, self.compute.virtual_machines, names.host(code), "virtual machine")
            self._delete(build, self.network.network_interfaces, names.nic(code), "network interface")
            self._delete(build, self.compute.disks, names.os_disk(code), "disk")
            if self.settings.public_ip:
                self._delete(build, self.network.public_ip_addresses, names.public_ip(code), "public IP address")

    # -- reuse (#32): an earlier build's checkpoint made this build's --------------------------------------
    def adopt_checkpoint(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """``source``'s checkpoint after ``checkpoint.code``, proven ``source``'s (in the target's
        subscription and resource group, tagged with its build, this pipeline, ``ManagedBy``, the
        checkpoint role and that milestone: never the record's word alone), made ``build``'s:

        - a **snapshot** (milestones 15..90) is copied to ``build``'s own snapshot name for that
          milestone (Snapshots_CreateOrUpdate, ``createOption: Copy``, ``sourceResourceId``: the one
          published call that copies it, within the region), tagged as everything the build makes plus
          ``ReusedFrom``, and waited for until it has succeeded (at most ``wait_s``). A copy that
          failed or never became available is deleted before the error is raised; a retry finds the
          copy an earlier attempt made (the same name, source and tags) and returns it.
        - a **managed image** (the green or kickstart image Packer made) is *claimed*: re-tagged as
          ``build``'s, so ``source`` no longer owns it. Compute has no image-to-image copy, a managed
          disk cannot be made from a managed image (``imageReference`` takes platform and gallery
          images only), and the image's own source disk is gone (Packer deletes its VM): a copy would
          need a VM or a gallery version, minutes and money for what a tag does at once. Taking an
          image away from its build is only done when that build is delivered and the spec does not
          keep that checkpoint for a redo (``target.keep_checkpoints``); a claim that fails half-way
          gives the tags back."""
        where = f"milestones.{checkpoint.code}.outputs.checkpoint_image"
        if source.build_id == build.build_id or source.pipeline != self.pipeline or build.pipeline != self.pipeline:
            raise InvalidInput(
                where,
                f"build {source.build_id} of pipeline {source.pipeline} is not an earlier build of {self.pipeline}",
            )
        kind = ((parse_id(checkpoint.image) or {}).get("type") or "").lower()
        if kind == "snapshots":
            return self._copy_snapshot(build, source, checkpoint, where)
        if kind == "images":
            return self._claim_image(build, source, checkpoint, where)
        shown = checkpoint.image if len(checkpoint.image) <= 300 else f"{checkpoint.image[:300]}..."
        raise InvalidInput(where, f"{shown} is not a checkpoint snapshot or managed image; it is not reused")

    def _source_checkpoint(self, source: BuildRecord, checkpoint: Checkpoint, where: str) -> Any:
        """The checkpoint's snapshot or image, read again and proven ``source``'s by its tags."""
        found = self._owned(source, checkpoint.image)
        tags = (_get(found, "tags") or {}) if found is not None else {}
        if found is None or tags.get("Role") != "checkpoint" or tags.get("Milestone") != str(checkpoint.code):
            raise InvalidInput(
                where,
                f"{checkpoint.image} is not build {source.build_id}'s checkpoint after milestone {checkpoint.code} "
                f"(missing, outside resource group {self.group}, or without that build's checkpoint tags); it is not "
                "reused",
            )
        state = str(_get(found, "properties", "provisioningState") or "")
        if state != "Succeeded":
            raise TargetError(f"{where}: {checkpoint.image} of build {source.build_id} is {state or 'not ready'}")
        return found

    def _reused_from(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint, resource: Any) -> bool:
        """Whether ``resource`` is ``build``'s copy or claim of ``source``'s checkpoint (its tags)."""
        tags = _get(resource, "tags") or {}
        return bool(
            self.is_builds(build, resource)
            and tags.get("Role") == "checkpoint"
            and tags.get("Milestone") == str(checkpoint.code)
            and tags.get("ReusedFrom") == source.build_id
        )

    def _adopted(self, resource: Any, name: str, *size: str) -> dict[str, Any]:
        return {
            CHECKPOINT_OUTPUT: str(_get(resource, "id")),
            "checkpoint_image_name": name,  # replaces the source's, which reuse would carry over
            "image_region": self.location,
            **_disk_gb(_get(resource, "properties", *size), "checkpoint_gb"),
        }

    def _copy_snapshot(
        self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint, where: str
    ) -> dict[str, Any]:
        name = self.names(build).snapshot(checkpoint.code)
        with self.maybe_missing(f"GET snapshot {name}") as found:
            found.append(self.compute.snapshots.get(self.group, name))
        if found and not self.is_builds(build, found[0]):
            raise InvalidInput(
                where,
                f"snapshot {name} in resource group {self.group} exists and is not build {build.build_id}'s (its tags "
                "do not say so); it is left alone and the checkpoint is not copied over it",
            )
        if found:
            earlier = found[0]
            same = str(_get(earlier, "properties", "creationData", "sourceResourceId") or "").lower()
            state = str(_get(earlier, "properties", "provisioningState") or "")
            ours = self._reused_from(build, source, checkpoint, earlier) and same == checkpoint.image.lower()
            if ours and state == "Succeeded":
                log.info("checkpoint %s: the copy %s an earlier attempt made is used", checkpoint.image, name)
                return self._adopted(earlier, name, "diskSizeGB")
            # Half-made (a worker lost while waiting) or of another source: made again.
            log.info("snapshot %s of an earlier attempt (%s) is deleted and made again", name, state or "unknown")
            self._delete(build, self.compute.snapshots, name, "snapshot")
        original = self._source_checkpoint(source, checkpoint, where)
        there = str(_get(original, "location") or "").replace(" ", "").lower()
        if there and there != self.location.replace(" ", "").lower():
            raise InvalidInput(where, f"{checkpoint.image} is in {there}, not in the target's location {self.location}")
        body = {
            "location": self.location,
            "tags": {**self.build_tags(build, checkpoint.code, "checkpoint"), "ReusedFrom": source.build_id},
            # A full snapshot: an incremental one is taken of a disk, and a copy of an incremental
            # snapshot in its own region is a full one (Azure's incremental snapshot docs).
            "properties": {
                "incremental": False,
                "creationData": {"createOption": "Copy", "sourceResourceId": str(_get(original, "id"))},
            },
        }
        try:
            with self.api(f"PUT snapshot {name} copying {checkpoint.image}"):
                copy = self._wait(self.compute.snapshots.begin_create_or_update(self.group, name, body))
            state = str(_get(copy, "properties", "provisioningState") or "")
            if state != "Succeeded":
                raise TargetError(f"Azure snapshot {name} is {state or 'not ready'} once its copy ended")
        except BaseException as exc:
            self._drop_partial_copy(build, name)
            if isinstance(exc, ImageBuildError):
                raise TargetError(
                    f"{where}: copying build {source.build_id}'s checkpoint {checkpoint.image} to {name} failed; what "
                    f"was made of the copy is deleted: {str(exc).splitlines()[0][:400]}"
                ) from exc
            raise
        log.info("copied build %s's checkpoint %s to %s for build %s", source.build_id, checkpoint.image, name,
                 build.build_id)  # fmt: skip
        return self._adopted(copy, name, "diskSizeGB")

    def _drop_partial_copy(self, build: BuildRecord, name: str) -> None:
        """Delete the snapshot a failed copy made (nothing would ever name it); a failed deletion is
        left to ``imagebuild gc`` (the snapshot carries the build's tags), never raised over the
        copy's own error."""
        try:
            self._delete(build, self.compute.snapshots, name, "snapshot")
        except Exception as exc:
            log.warning("snapshot %s of a failed copy was not deleted (imagebuild gc finds it): %s", name, exc)

    def _claim_image(
        self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint, where: str
    ) -> dict[str, Any]:
        name = (parse_id(checkpoint.image) or {})["name"]
        mine = self._owned(build, checkpoint.image)
        if mine is not None and self._reused_from(build, source, checkpoint, mine):
            log.info("checkpoint image %s was claimed by an earlier attempt", checkpoint.image)
            return self._adopted(mine, name, "storageProfile", "osDisk", "diskSizeGB")
        original = self._source_checkpoint(source, checkpoint, where)
        if not source.delivered:
            raise InvalidInput(
                where,
                f"{checkpoint.image} is a managed image (Azure copies none) and build {source.build_id} is not "
                "delivered: it may still resume from it, so it is not taken from it",
            )
        if checkpoint.code in self.settings.keep_checkpoints:
            raise InvalidInput(
                where,
                f"{checkpoint.image} is a managed image (Azure copies none) that target.keep_checkpoints keeps for a "
                f"redo of build {source.build_id}, so it is not taken from it",
            )
        if checkpoint.image.lower() in {image.lower() for image in delivered_images(source)}:
            raise InvalidInput(
                where,
                f"{checkpoint.image} is a managed image (Azure copies none) that build {source.build_id} delivered "
                "(a pipeline without a seal publishes its Packer image): a delivered image is never taken from it",
            )
        before = dict(_get(original, "tags") or {})
        claimed = {**before, **self.build_tags(build, checkpoint.code, "checkpoint"), "ReusedFrom": source.build_id}
        try:
            with self.api(f"PATCH image {name} (claimed by build {build.build_id})"):
                self._wait(self.compute.images.begin_update(self.group, name, {"tags": claimed}))
            mine = self._owned(build, checkpoint.image)
            if mine is None or not self._reused_from(build, source, checkpoint, mine):
                raise TargetError(f"Azure image {name} does not carry build {build.build_id}'s tags after the claim")
        except BaseException as exc:
            self._unclaim(build, name, before)
            if isinstance(exc, ImageBuildError):
                raise TargetError(
                    f"{where}: claiming build {source.build_id}'s checkpoint image {checkpoint.image} failed; it is "
                    f"left as it was: {str(exc).splitlines()[0][:400]}"
                ) from exc
            raise
        log.info("claimed build %s's checkpoint image %s for build %s (Azure copies no managed image)",
                 source.build_id, checkpoint.image, build.build_id)  # fmt: skip
        return self._adopted(mine, name, "storageProfile", "osDisk", "diskSizeGB")

    def _unclaim(self, build: BuildRecord, name: str, tags: dict[str, str]) -> None:
        """Give a half-claimed image its tags back (only while it says ``build``'s, the claim's)."""
        try:
            with self.maybe_missing(f"GET image {name}") as found:
                found.append(self.compute.images.get(self.group, name))
            if found and self.is_builds(build, found[0]):
                with self.api(f"PATCH image {name} (claim undone)"):
                    self._wait(self.compute.images.begin_update(self.group, name, {"tags": tags}))
        except Exception as exc:
            log.warning("image %s keeps build %s's tags of a failed claim: %s", name, build.build_id, exc)

    # -- the launch test (targets/launch.py's hooks) ---------------------------------------------------
    def _test_parts(self, build: BuildRecord) -> list[tuple[str, Any, str]]:
        """(name, operations, kind) of the launch test's resources, the VM first."""
        names = self.names(build)
        return [
            (names.test_host(), self.compute.virtual_machines, "virtual machine"),
            (names.test_part("network interface"), self.network.network_interfaces, "network interface"),
            (names.test_part("disk"), self.compute.disks, "disk"),
            (names.test_part("public IP address"), self.network.public_ip_addresses, "public IP address"),
        ]

    def _test_resource(self, build: BuildRecord, operations: Any, name: str, what: str, **options: Any) -> Any:
        """A launch test resource of this build by name (its tags say build, pipeline and role), or None."""
        with self.maybe_missing(f"GET {what} {name}") as found:
            found.append(operations.get(self.group, name, **options))
        if not found or not self.is_builds(build, found[0]):
            return None
        return found[0] if (_get(found[0], "tags") or {}).get("Role") == ROLE else None

    def leftover_test_instances(self, build: BuildRecord) -> list[str]:
        """The build's launch test VM, or what is left of one (a NIC whose VM was never made, an OS
        disk or public IP whose VM is gone): each is found by its name in the target's resource
        group and kept only with this build's tags and the launch-test role."""
        for name, operations, what in self._test_parts(build):
            found = self._test_resource(build, operations, name, what)
            if found is not None:
                return [str(_get(found, "id"))]
        return []

    def _from_image(self, image: str, disk_name: str) -> dict[str, Any]:
        """A VM's storage made from a generalized image (a checkpoint or the sealed image): its OS
        disk of the spec's SKU, deleted with the VM."""
        return {
            "imageReference": {"id": image},
            "osDisk": {
                "name": disk_name,
                "createOption": "FromImage",
                "deleteOption": "Delete",
                "managedDisk": {"storageAccountType": self.settings.os_disk_type},
            },
        }

    def _os_profile(self, vm_name: str) -> dict[str, Any]:
        """The admin user of a VM made from a generalized image: SSH with the spec's public key only."""
        user = self.settings.ssh_user
        key = {"path": f"/home/{user}/.ssh/authorized_keys", "keyData": self.settings.ssh_public_key}
        return {
            "computerName": vm_name,
            "adminUsername": user,
            "linuxConfiguration": {"disablePasswordAuthentication": True, "ssh": {"publicKeys": [key]}},
        }

    def launch_test_instance(self, build: BuildRecord, image: str) -> str:
        """The launch test VM from the sealed managed image: the spec's size, ``ssh_user`` with
        ``ssh_public_key`` (the image is generalized), a NIC of its own in the build's subnet (and a
        public IP with ``public_ip``), boot diagnostics on in managed storage, and its disk, NIC and
        IP deleted with it. Waited for until Azure has made it (a refused creation says why here)."""
        if not self.settings.ssh_public_key:
            raise InvalidInput(
                "target.ssh_public_key",
                "is needed to launch the test VM from the sealed image (Azure sets the admin user's key)",
            )
        names = self.names(build)
        vm_name = names.test_host()
        tags = self.build_tags(build, build.current_state, ROLE)
        nic = self._network_interface(names.test_part("network interface"), names.test_part("public IP address"), tags)
        body: dict[str, Any] = {
            "location": self.location,
            "tags": tags,
            "properties": {
                "hardwareProfile": {"vmSize": self.settings.vm_size},
                "storageProfile": self._from_image(image, names.test_part("disk")),
                "osProfile": self._os_profile(vm_name),
                "networkProfile": {
                    "networkInterfaces": [
                        {"id": _get(nic, "id"), "properties": {"primary": True, "deleteOption": "Delete"}}
                    ]
                },
                # Managed storage (no storageUri): the serial console log the check reads.
                "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
            },
        }

        def create() -> Any:
            with self.api(f"PUT virtual machine {vm_name} from {image}"):
                return self._wait(self.compute.virtual_machines.begin_create_or_update(self.group, vm_name, body))

        try:
            vm = self._while_nic_reserved(create)
        except Exception:
            # A creation that failed leaves the VM (Failed) behind: deleted now. Its NIC, which Azure
            # keeps for that VM a while, is the next try's leftover.
            with contextlib.suppress(Exception):
                self._delete(build, self.compute.virtual_machines, vm_name, "virtual machine")
            raise
        return str(_get(vm, "id") or self.resource_id("virtualMachines", vm_name))

    def test_instance(self, build: BuildRecord, instance_id: str) -> TestInstance | None:
        parts = parse_id(instance_id) or {}
        if parts.get("type", "").lower() != "virtualmachines" or parts.get("name") != self.names(build).test_host():
            return None
        vm = self._test_resource(build, self.compute.virtual_machines, parts["name"], "virtual machine",
                                 expand="instanceView")  # fmt: skip
        if vm is None:
            return None
        provisioning = str(_get(vm, "properties", "provisioningState") or "")
        power = self.power_state(vm)
        if provisioning in ("Failed", "Deleting") or power in STOPPED_POWER_STATES:
            detail = f"provisioning {provisioning}, power {power}"
            return TestInstance(instance_id, STOPPED, detail=detail)
        if power != "running":
            return TestInstance(instance_id, PENDING)
        return TestInstance(instance_id, RUNNING, self._address(self.names(build).test_part("network interface")))

    def test_instance_console(self, build: BuildRecord, instance_id: str) -> bytes | None:
        """The serial console log of boot diagnostics: ``retrieveBootDiagnosticsData`` gives a SAS
        URI of the blob (a secret for its minutes: never logged, never in an error), read without
        the Resource Manager token, over https (or from a loopback emulator)."""
        import httpx

        from airflow_provider_imagebuild.clouds.endpoint import require_tls_or_loopback

        name = self.names(build).test_host()
        if self.test_instance(build, instance_id) is None:
            return b""
        with self.api(f"retrieveBootDiagnosticsData of {name}"):
            found = self.compute.virtual_machines.retrieve_boot_diagnostics_data(
                self.group, name, sas_uri_expiration_time_in_minutes=BOOT_LOG_SAS_MINUTES
            )
        uri = str(_get(found, "serialConsoleLogBlobUri") or "")
        if not uri:
            return b""
        require_tls_or_loopback(uri.split("?", 1)[0], "serialConsoleLogBlobUri")
        try:
            answer = httpx.get(uri, timeout=30, headers={"x-ms-version": "2021-08-06"})
        except httpx.HTTPError as exc:
            raise TargetError(f"Azure serial console log of {name}: cannot read it ({type(exc).__name__})") from None
        if answer.status_code == 404:  # nothing written yet
            return b""
        if answer.status_code != 200:
            raise TargetError(f"Azure serial console log of {name}: HTTP {answer.status_code}")
        return answer.content[-BOOT_LOG_BYTES:]

    def delete_test_instance(self, build: BuildRecord, instance_id: str) -> None:
        """Delete the launch test VM (its disk, NIC and public IP go with it) and any part of it
        left without one, each only with this build's tags and the launch-test role. ``instance_id``
        must be one of them (a leftover may be a part only); the VM's deletion is waited for, or its
        NIC could not be deleted after it."""
        parts = parse_id(instance_id) or {}
        ours = {name.lower() for name, _, _ in self._test_parts(build)}
        if (
            parts.get("name", "").lower() not in ours
            or parts.get("resource_group", "").lower() != self.group.lower()
            or parts.get("subscription", "").lower() != self.clients.subscription_id.lower()
        ):
            log.warning("%s is not build %s's launch test VM; left alone", instance_id, build.build_id)
            return
        for name, operations, what in self._test_parts(build):
            if self._test_resource(build, operations, name, what) is not None:
                self._delete(build, operations, name, what)

    # -- the leak collector (targets/leaks.py) -------------------------------------------------------
    def _collected(self) -> list[tuple[str, Any]]:
        """(kind, operations) of what a build makes in the group: VMs, their disks and NICs, public
        IPs, checkpoint snapshots and managed images (gallery versions are retention's). The kinds
        are the collector's words (priced by build/prices.py), not ARM's types."""
        return [("vm", self.compute.virtual_machines), ("disk", self.compute.disks),
                ("snapshot", self.compute.snapshots), ("image", self.compute.images),
                ("nic", self.network.network_interfaces),
                ("public_ip", self.network.public_ip_addresses)]  # fmt: skip

    def _pipelines(self, resource: Any) -> bool:
        tags = _get(resource, "tags") or {}
        return tags.get("ManagedBy") == MANAGED_BY and tags.get("Pipeline") == self.pipeline

    def owned_resources(self) -> list[Resource]:
        """The group's resources of :meth:`_collected` tagged ``ManagedBy`` and this pipeline, listed
        in the target's own subscription and resource group only."""
        found: list[Resource] = []
        attached: dict[str, str] = {}  # a NIC's or disk's id (lower case) -> the VM it is part of
        for kind, operations in self._collected():
            lister = operations.list if kind == "vm" else getattr(operations, "list_by_resource_group", None)
            if lister is None:
                lister = operations.list
            with self.api(f"list {kind} of {self.group} (gc)"):
                listed = list(lister(self.group))
            for item in listed:
                if kind == "vm":
                    parts = [_get(item, "properties", "storageProfile", "osDisk", "managedDisk", "id")]
                    nics = _get(item, "properties", "networkProfile", "networkInterfaces") or []
                    parts += [_get(n, "id") for n in nics]
                    attached.update({str(p).lower(): str(_get(item, "id")) for p in parts if p})
                if not self._pipelines(item):
                    continue
                tags = _get(item, "tags") or {}
                milestone = str(tags.get("Milestone", ""))
                created = parse_time(_get(item, "properties", "timeCreated"))
                found.append(Resource(kind, str(_get(item, "id")), self.group, self.pipeline,
                                      str(tags.get("BuildId", "")), created, role=str(tags.get("Role", "")),
                                      milestone=int(milestone) if milestone.isdigit() else None,
                                      size=str(_get(item, "properties", "hardwareProfile", "vmSize") or ""),
                                      gb=_get(item, "properties", "diskSizeGB"),
                                      parent=str(_get(item, "properties", "virtualMachine", "id")
                                                 or _get(item, "managedBy")
                                                 or attached.get(str(_get(item, "id")).lower(), ""))))  # fmt: skip
        return found

    def delete_resource(self, resource: Resource) -> bool:
        """Read again by name in the target's group; deleted only while its id is in the target's
        subscription and group and its tags still say managed by, this pipeline and the same build."""
        operations = dict(self._collected()).get(resource.kind)
        parts = parse_id(resource.id) or {}
        if (
            operations is None
            or parts.get("subscription", "").lower() != self.clients.subscription_id.lower()
            or parts.get("resource_group", "").lower() != self.group.lower()
        ):
            return False
        name = parts["name"]
        with self.maybe_missing(f"GET {resource.kind} {name} (gc)") as found:
            found.append(operations.get(self.group, name))
        tags = (_get(found[0], "tags") or {}) if found else {}
        if not found or not self._pipelines(found[0]) or tags.get("BuildId", "") != resource.build_id:
            return False

        def delete() -> None:
            with self.maybe_missing(f"DELETE {resource.kind} {name} (gc)") as done:
                done.append(self._wait(operations.begin_delete(self.group, name)))

        self._while_nic_reserved(delete)
        log.info("deleted leaked %s %s", resource.kind, name)
        return True
