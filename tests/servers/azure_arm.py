"""A loopback fake of Azure Resource Manager, for the Azure target's tests.

Nothing real of Azure's control plane can run here, so this fakes it at the HTTP boundary and the
tests drive it with the real SDKs (``azure-mgmt-compute``, ``azure-mgmt-network``, and
``azure-identity``'s managed identity credential for the token). It follows the REST shapes of
Azure's published API specifications (azure-rest-api-specs: the api-versions azure-mgmt-compute 39
and azure-mgmt-network 33 send, ``API_VERSIONS``). The examples followed, by operation:

- VirtualMachines_CreateOrUpdate (``VirtualMachine_Create_FromACustomImage``,
  ``VirtualMachine_Create_WithDiskDeleteOption``... 201 with ``provisioningState: Creating`` and an
  ``Azure-AsyncOperation`` header), VirtualMachines_Get with ``$expand=instanceView``
  (``VirtualMachine_Get_WithInstanceView``: ``ProvisioningState/succeeded``, ``PowerState/running``,
  ``OSState/generalized`` after Generalize), PowerOff / Start / Deallocate (202 and an async
  operation), Generalize (200, no body), Delete (202; ``deleteOption: Delete`` takes the OS disk,
  NIC and public IP along), RetrieveBootDiagnosticsData (``VirtualMachine_RetrieveBootDiagnosticsData``:
  200 and SAS URIs of the screenshot and the serial console log, for a VM whose
  ``diagnosticsProfile.bootDiagnostics`` is enabled; the fake serves the log blob itself, without
  the bearer token, as Blob Storage takes a SAS: ``guest_console``, the stand-in guest's serial log,
  or empty. The code a VM without boot diagnostics gets, ``OperationNotAllowed``, is the fake's guess:
  no published example shows it);
- Disks_CreateOrUpdate (``Disk_Create_ByCopyingASnapshot``), Snapshots_CreateOrUpdate
  (``Snapshot_Create_FromAnExistingSnapshot``, incremental), Images_CreateOrUpdate
  (``Image_CreateFromAVM``), Images_Update (PATCH tags). ``creationData`` is held to what DiskRP.json
  says of it: with ``createOption: Copy`` the ``sourceResourceId`` is "the ARM id of the source
  snapshot or disk" (a managed image is refused), within the region (another region is
  ``CopyStart``'s, ``Snapshot_Create_FromAnExistingSnapshotInDifferentRegion``; the refusal's code is
  the fake's guess); a disk ``FromImage`` of a managed image is refused ``InvalidParameter`` on
  ``imageReference`` as Azure answers it (Azure/azure-powershell#14000; "creating a disk from an
  image is not supported", Azure/azure-cli#6081). A resource whose creation's operation failed is
  left ``provisioningState: Failed``, as ARM leaves it;
- GalleryImages_Get, GalleryImageVersions_CreateOrUpdate (``CreateOrUpdateASimpleGalleryImageVersion``,
  managed image as ``storageProfile.source.id``), GalleryImageVersions_Update (PATCH),
  GalleryImageVersions_ListByGalleryImage and _Delete;
- NetworkInterfaces_CreateOrUpdate (``NetworkInterfaceCreate``: the subnet must exist, the
  private IP is allocated), PublicIPAddresses_CreateOrUpdate;
- async operation status (``{"status": "InProgress" | "Succeeded" | "Failed", "error": {...}}``),
  errors as ``{"error": {"code", "message"}}`` (404 ``ResourceNotFound``, 429 ``TooManyRequests``
  with ``Retry-After``), and the App Service managed identity token endpoint
  (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``) that ``DefaultAzureCredential`` calls.

It refuses what Azure's published API refuses (``_refused``): every request body is checked
against extracts of the swagger of the api-version the SDK sends (tests/servers/azure_specs, through
tests/servers/azure_swagger.py: types, closed enums, required and unknown members), resource names
against Azure's naming rules (``NAME_RULES``), and an api-version the type is not served with is
``NoRegisteredProviderFound``. It behaves as Azure is documented to: long-running operations answer
``InProgress`` for several polls (``in_progress_polls``; ``slow_operation_once`` for replication that
outlasts a wait), a NIC is kept for the VM just deleted (``NicReservedForAnotherVm``, for
``nic_reservation_s``: 180 s, shortened by tests), throttling is a 429 with ``Retry-After``.

What it does not do: run anything (the "VM" a test launches is a chroot tree the playbooks run
in), replicate, bill or enforce quotas. It asks to be polled after 1 s, then every 0.05 s (Azure
after whole seconds), to keep the tests fast; the polls the SDK makes are real all the same.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.azure_swagger import Problem, check
from tests.servers.http_fake import serving_http

SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
IDENTITY_HEADER = "imagebuild-test-identity"
# Azure asks to be polled again after whole seconds. The SDK reads the first answer's Retry-After as
# an integer (the swagger's int32) and the polls' as a float, so the fake answers 1 s first and a
# fraction of a second between polls (0 would mean azure-core's own default of 10 s): fast tests.
RETRY_AFTER = "1"
POLL_AFTER = "0.05"
# The api-version each resource type is requested with by azure-mgmt-compute 39.0.0 and
# azure-mgmt-network 33.1.0 (and the stand-in Packer template); any other is refused as ARM does.
API_VERSIONS = {
    "microsoft.compute/virtualmachines": "2026-04-01",
    "microsoft.compute/images": "2026-04-01",
    "microsoft.compute/disks": "2026-03-02",
    "microsoft.compute/snapshots": "2026-03-02",
    "microsoft.compute/galleries": "2026-03-03",
    "microsoft.compute/galleries/images": "2026-03-03",
    "microsoft.compute/galleries/images/versions": "2026-03-03",
    "microsoft.network/networkinterfaces": "2026-03-01",
    "microsoft.network/publicipaddresses": "2026-03-01",
    "microsoft.network/virtualnetworks": "2026-03-01",
    "microsoft.network/virtualnetworks/subnets": "2026-03-01",
}
# The model each request body must be (tests/servers/azure_specs: file, definition).
BODY_MODELS = {
    ("PUT", "microsoft.compute/virtualmachines"): ("compute", "VirtualMachine"),
    ("PUT", "microsoft.compute/images"): ("compute", "Image"),
    ("PATCH", "microsoft.compute/images"): ("compute", "ImageUpdate"),
    ("PUT", "microsoft.compute/disks"): ("disk", "Disk"),
    ("PUT", "microsoft.compute/snapshots"): ("disk", "Snapshot"),
    ("PUT", "microsoft.compute/galleries/images/versions"): ("gallery", "GalleryImageVersion"),
    ("PATCH", "microsoft.compute/galleries/images/versions"): ("gallery", "GalleryImageVersionUpdate"),
    ("PUT", "microsoft.network/networkinterfaces"): ("network", "NetworkInterface"),
    ("PUT", "microsoft.network/publicipaddresses"): ("network", "PublicIPAddress"),
}
_ARM80 = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?"
# Resource names, from "Naming rules and restrictions for Azure resources" and the name parameters'
# descriptions in DiskRP.json and GalleryRP.json (README in tests/servers/azure_specs).
NAME_RULES = {
    "microsoft.compute/virtualmachines": (
        r"(?![_])[^\\/\"'\[\]:|<>+=;,?*@&\s]{1,64}(?<![.-])",
        "1-64 characters (Linux), none of \\/\"'[]:|<>+=;,?*@& or whitespace, not starting with _ nor ending "
        "with . or -",
    ),
    "microsoft.compute/disks": (r"[A-Za-z0-9_-]{1,80}", "a-z, A-Z, 0-9, _ and -, at most 80 characters"),
    "microsoft.compute/snapshots": (r"[A-Za-z0-9_-]{1,80}", "a-z, A-Z, 0-9, _ and -, at most 80 characters"),
    "microsoft.compute/images": (_ARM80, "1-80 alphanumerics, _ . -, starting alphanumeric, ending alphanumeric or _"),
    "microsoft.network/networkinterfaces": (_ARM80, "1-80 alphanumerics, _ . -, ending alphanumeric or _"),
    "microsoft.network/publicipaddresses": (_ARM80, "1-80 alphanumerics, _ . -, ending alphanumeric or _"),
    "microsoft.compute/galleries/images/versions": (
        r"(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})",
        "Major.Minor.Patch, each a 32-bit integer",
    ),
}
NIC_RESERVATION_S = 180.0  # how long Azure keeps a NIC for the VM just deleted
# VirtualMachineImages_List: a marketplace SKU's versions in a location (what "latest" is resolved from)
MARKETPLACE_VERSIONS_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Compute/locations/(?P<location>[^/]+)/publishers/"
    r"(?P<publisher>[^/]+)/artifacttypes/vmimage/offers/(?P<offer>[^/]+)/skus/(?P<sku>[^/]+)/versions$",
    re.IGNORECASE,
)
MARKETPLACE_API_VERSION = "2026-04-01"  # what azure-mgmt-compute 39.0.0 sends for virtual machine images
RESOURCE_RE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/(?P<ns>Microsoft\.[A-Za-z]+)/(?P<rest>.+)$",
    re.IGNORECASE,
)
# type path (lowercase, children joined by '/') -> whether a PUT is a long-running operation
KINDS = {
    "microsoft.compute/virtualmachines": True,
    "microsoft.compute/disks": True,
    "microsoft.compute/snapshots": True,
    "microsoft.compute/images": True,
    "microsoft.compute/galleries": True,
    "microsoft.compute/galleries/images": True,
    "microsoft.compute/galleries/images/versions": True,
    "microsoft.network/networkinterfaces": True,
    "microsoft.network/publicipaddresses": True,
    "microsoft.network/virtualnetworks": True,
    "microsoft.network/virtualnetworks/subnets": True,
}
VM_ACTIONS = {"poweroff", "start", "deallocate", "generalize", "restart", "retrievebootdiagnosticsdata"}
BOOT_LOG_PATH = "/bootdiagnostics/"  # where the fake serves a VM's serial console log blob (SAS)


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method`` and ``path`` (a regex) with an error."""

    method: str
    path: str
    status: int = 429
    code: str = "TooManyRequests"
    retry_after: str | None = "1"
    times: int = 1


@dataclass
class Operation:
    id: str
    location: str
    polls: int = 0
    error: dict[str, str] | None = None
    on_success: Any = None  # callable run when the operation succeeds
    on_failure: Any = None  # callable run when the operation fails
    in_progress: int = 2  # polls answered InProgress before the outcome


@dataclass
class FakeArm:
    subscription: str = SUBSCRIPTION
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # lowercased id -> resource
    operations: dict[str, Operation] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    failing_operations: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path regex, code)
    slow_operations: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path regex, polls)
    requests: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[tuple[str, str, Any]] = field(default_factory=list)  # (method, path, JSON body) of writes
    in_progress_polls: int = 2  # every long-running operation answers InProgress this often first
    poll_after: str = POLL_AFTER
    nic_reservation_s: float = NIC_RESERVATION_S
    reserved_nics: dict[str, tuple[float, str]] = field(default_factory=dict)  # nic id -> (until, VM id)
    tokens: int = 0
    guest_console: Path | None = None  # what every VM's serial console log shows (the stand-in guest's)
    sas_tokens: dict[str, str] = field(default_factory=dict)  # boot log SAS signature -> VM id
    token_resources: list[str] = field(default_factory=list)  # the audience each token was asked for
    # (location, publisher, offer, sku), lowercased (Azure matches them so) -> the versions offered there
    marketplace: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    url: str = ""
    _ips: Iterator[int] = field(default_factory=lambda: itertools.count(4))

    def __post_init__(self) -> None:
        self.lock = threading.RLock()

    # -- test controls -----------------------------------------------------------------------
    def add(self, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Put a resource in place directly (what exists before a test: network, gallery)."""
        with self.lock:
            resource = self._materialize(resource_id, body)
            resource.setdefault("properties", {})["provisioningState"] = "Succeeded"
            self.resources[resource_id.lower()] = resource
            return resource

    def seed(self, group: str) -> None:
        """What a build's resource group holds before the first build: the network
        (``vnet-build/builders``) and the gallery image definition ``golden/rhel8-web``."""
        base = f"/subscriptions/{self.subscription}/resourceGroups/{group}/providers"
        self.add(f"{base}/Microsoft.Network/virtualNetworks/vnet-build", {"location": "westeurope"})
        self.add(f"{base}/Microsoft.Network/virtualNetworks/vnet-build/subnets/builders", {"properties": {}})
        self.add(f"{base}/Microsoft.Compute/galleries/golden", {"location": "westeurope"})
        self.add(
            f"{base}/Microsoft.Compute/galleries/golden/images/rhel8-web",
            {
                "location": "westeurope",
                "properties": {"osType": "Linux", "osState": "Generalized", "hyperVGeneration": "V2"},
            },
        )

    def get(self, resource_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.resources.get(resource_id.lower())

    def remove(self, resource_id: str) -> None:
        """A resource vanishes (a VM deleted by someone else, a reclaimed host)."""
        with self.lock:
            self.resources.pop(resource_id.lower(), None)

    def ids(self, kind: str) -> list[str]:
        with self.lock:
            return [r["id"] for r in self.resources.values() if r["type"].lower() == kind.lower()]

    def fail_next(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def fail_operation_once(self, method: str, path: str, code: str = "InternalOperationError") -> None:
        """The next long-running operation of a matching request ends ``Failed``."""
        with self.lock:
            self.failing_operations.append((method, path, code))

    def slow_operation_once(self, method: str, path: str, polls: int) -> None:
        """The next long-running operation of a matching request answers InProgress ``polls`` times
        (gallery replication takes minutes to hours)."""
        with self.lock:
            self.slow_operations.append((method, path, polls))

    def delete_keeping_nic(self, vm_id: str) -> None:
        """The VM is deleted by someone else with its NIC detached (the portal's default, or a
        ``deleteOption: Detach``): Azure then keeps the NIC for that VM for a while."""
        with self.lock:
            vm = self.resources.get(vm_id.lower())
            assert vm is not None, vm_id
            for nic in vm["properties"].get("networkProfile", {}).get("networkInterfaces", []):
                nic.setdefault("properties", {})["deleteOption"] = "Detach"
            self._delete(vm_id)

    # -- resources ---------------------------------------------------------------------------
    def _materialize(self, resource_id: str, body: dict[str, Any]) -> dict[str, Any]:
        match = RESOURCE_RE.match(resource_id)
        assert match, resource_id
        parts = match["rest"].split("/")
        types = parts[0::2]
        kind = f"{match['ns']}/{'/'.join(types)}"
        resource = json.loads(json.dumps(body))
        resource.update({"id": resource_id, "name": parts[-1], "type": kind})
        resource.setdefault("tags", {})
        resource.setdefault("properties", {})
        return resource

    def _kind(self, resource_id: str) -> str | None:
        match = RESOURCE_RE.match(resource_id)
        if not match:
            return None
        types = match["rest"].split("/")[0::2]
        return f"{match['ns']}/{'/'.join(types)}".lower()

    def _parent_missing(self, resource_id: str) -> str | None:
        kind = self._kind(resource_id) or ""
        if kind.count("/") < 2:
            return None
        parent = resource_id.rsplit("/", 2)[0]
        return None if parent.lower() in self.resources else parent

    def _reference(self, ref: str | None) -> dict[str, Any] | None:
        return self.resources.get(str(ref or "").lower())

    def _create(self, resource_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Validate a PUT the way ARM would, and store the resource in state Creating."""
        kind = self._kind(resource_id) or ""
        existing = self.resources.get(resource_id.lower())
        props = body.get("properties") or {}
        if "location" not in body and kind != "microsoft.network/virtualnetworks/subnets":
            return 400, _error("LocationRequired", "The location property is required for this definition.")
        missing = self._parent_missing(resource_id)
        if missing:
            return 404, _error("ParentResourceNotFound", f"Parent resource {missing} not found.")
        if kind in ("microsoft.compute/disks", "microsoft.compute/snapshots"):
            data = props.get("creationData") or {}
            refused = self._creation_refused(body, data)
            if refused:
                return refused
            source = self._reference(data.get("sourceResourceId"))
            if source is None:
                return 404, _error("NotFound", f"Resource {data.get('sourceResourceId')} not found.")
            if existing and existing["properties"].get("creationData") != data:
                return 409, _error("PropertyChangeNotAllowed", "Changing property 'creationData' is not allowed.")
            generation = source.get("properties", {}).get("hyperVGeneration")
            if generation and "hyperVGeneration" not in props:  # a copy keeps its source's generation
                body.setdefault("properties", {})["hyperVGeneration"] = generation
            size = source.get("properties", {}).get("diskSizeGB")
            if size and "diskSizeGB" not in props:  # ... and its size
                body.setdefault("properties", {})["diskSizeGB"] = size
        if kind == "microsoft.network/networkinterfaces":
            for config in props.get("ipConfigurations") or []:
                subnet = (config.get("properties") or {}).get("subnet", {}).get("id")
                if self._reference(subnet) is None:
                    return 400, _error(
                        "InvalidResourceReference", f"Resource {subnet} referenced by {resource_id} was not found."
                    )
                config.setdefault("properties", {})["privateIPAddress"] = f"10.0.0.{next(self._ips)}"
                config["id"] = f"{resource_id}/ipConfigurations/{config.get('name', 'ipconfig1')}"
        blob = ((props.get("storageProfile") or {}).get("osDisk") or {}).get("blobUri")
        if kind == "microsoft.compute/images" and not blob:  # Image_CreateFromABlob needs no VM
            source = self._reference((props.get("sourceVirtualMachine") or {}).get("id"))
            if source is None:
                return 404, _error("NotFound", "The source virtual machine was not found.")
            statuses = {s["code"] for s in source["properties"].get("instanceView", {}).get("statuses", [])}
            if "OSState/generalized" not in statuses:
                return 409, _error("OperationNotAllowed", "The operation requires the VM to be generalized.")
            os_disk = source["properties"].get("storageProfile", {}).get("osDisk", {})
            disk = self._reference((os_disk.get("managedDisk") or {}).get("id")) or {}
            props.setdefault("hyperVGeneration", disk.get("properties", {}).get("hyperVGeneration") or "V1")
            captured = {
                "osType": "Linux",
                "osState": "Generalized",
                "diskSizeGB": disk.get("properties", {}).get("diskSizeGB", LINUX_IMAGE_GB),
            }  # what ARM fills in: the VM's OS disk, as captured
            props.setdefault("storageProfile", {}).setdefault("osDisk", captured)
        if kind == "microsoft.compute/galleries/images/versions":
            source = self._reference(((props.get("storageProfile") or {}).get("source") or {}).get("id"))
            if source is None:
                return 400, _error("InvalidParameter", "storageProfile.source.id does not exist.")
        if kind == "microsoft.compute/virtualmachines":
            problem = self._check_vm(resource_id, props)
            if problem:
                return problem
        resource = self._materialize(resource_id, body)
        resource["properties"]["provisioningState"] = "Updating" if existing else "Creating"
        if kind == "microsoft.compute/virtualmachines":
            resource["properties"]["vmId"] = str(uuid.uuid4())
            resource["properties"]["instanceView"] = {"statuses": []}
        if kind == "microsoft.network/publicipaddresses":
            resource["properties"]["ipAddress"] = f"203.0.113.{next(self._ips)}"
        self.resources[resource_id.lower()] = resource
        if kind in ("microsoft.compute/disks", "microsoft.compute/snapshots"):
            return 202, resource  # DiskRP's CreateOrUpdate answers 200 or 202, never 201
        return (200 if existing else 201), resource

    def _creation_refused(self, body: dict[str, Any], data: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """A disk's or snapshot's ``creationData`` Azure refuses (the module's docstring says where from)."""
        option = data.get("createOption")
        image = str((data.get("imageReference") or {}).get("id") or "")
        if option == "FromImage" and self._kind(image) == "microsoft.compute/images":
            return 400, _error("InvalidParameter", "The value of parameter imageReference is invalid.")
        if option not in ("Copy", "CopyStart"):
            return None
        reference = str(data.get("sourceResourceId") or "")
        source = self._reference(reference)
        if source is None:
            return 404, _error("NotFound", f"Resource {reference} not found.")
        if self._kind(reference) not in ("microsoft.compute/disks", "microsoft.compute/snapshots"):
            return 400, _error(
                "InvalidParameter",
                f"The value of parameter sourceResourceId is invalid: {reference} is not a snapshot or a disk.",
            )
        here, there = (str(r.get("location", "")).replace(" ", "").lower() for r in (body, source))
        if option == "Copy" and here != there:
            return 400, _error(
                "InvalidParameter", f"A copy from {there} to {here} must use createOption CopyStart, not Copy."
            )
        return None

    def _check_vm(self, resource_id: str, props: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        storage = props.get("storageProfile") or {}
        os_disk = storage.get("osDisk") or {}
        if os_disk.get("createOption") == "Attach":
            if self._reference((os_disk.get("managedDisk") or {}).get("id")) is None:
                return 404, _error("NotFound", "The managed disk to attach was not found.")
        else:
            image = self._reference((storage.get("imageReference") or {}).get("id"))
            if image is None:
                return 404, _error("ImageNotFound", "The platform image or managed image was not found.")
            linux = (props.get("osProfile") or {}).get("linuxConfiguration") or {}
            if not (linux.get("ssh") or {}).get("publicKeys"):
                return 400, _error(
                    "InvalidParameter", "Authentication using either SSH or by user name and password must be enabled."
                )
        for nic in (props.get("networkProfile") or {}).get("networkInterfaces") or []:
            if self._reference(nic.get("id")) is None:
                return 400, _error("InvalidResourceReference", f"Network interface {nic.get('id')} not found.")
            reserved = self._nic_reserved(str(nic.get("id")))
            if reserved:
                return 400, reserved
        return None

    def _nic_reserved(self, nic_id: str) -> dict[str, Any] | None:
        """Azure keeps a NIC for the VM that held it for 180 s after that VM is deleted: a VM
        created with it, of any name, and the NIC's own deletion are refused meanwhile."""
        until, holder = self.reserved_nics.get(nic_id.lower(), (0.0, ""))
        if time.monotonic() >= until:
            return None
        return _error(
            "NicReservedForAnotherVm",
            f"Nic(s) in request is reserved for another Virtual Machine for {self.nic_reservation_s:g} seconds. "
            f"Please provide another nic(s) or retry after {self.nic_reservation_s:g} seconds. Reserved VM: {holder}",
        )

    def _provisioned(self, resource_id: str) -> None:
        """What ARM finishes in the background when a PUT's operation succeeds."""
        resource = self.resources.get(resource_id.lower())
        if resource is None:
            return
        resource["properties"]["provisioningState"] = "Succeeded"
        kind = self._kind(resource_id)
        if kind == "microsoft.compute/virtualmachines":
            props = resource["properties"]
            os_disk = props["storageProfile"]["osDisk"]
            if os_disk.get("createOption") != "Attach":
                rg_prefix = resource_id.split("/providers/")[0]
                disk_name = os_disk.get("name") or f"{resource['name']}_OsDisk_1_{uuid.uuid4().hex}"
                disk_id = f"{rg_prefix}/providers/Microsoft.Compute/disks/{disk_name}"
                image = self._reference((props["storageProfile"].get("imageReference") or {}).get("id")) or {}
                generation = image.get("properties", {}).get("hyperVGeneration") or "V1"  # an image's default
                disk_props = {
                    "osType": "Linux",
                    "hyperVGeneration": generation,
                    "creationData": {"createOption": "FromImage"},
                    # the VM's osDisk.diskSizeGB, else its image's size (a platform image's: 30 GB)
                    "diskSizeGB": os_disk.get("diskSizeGB")
                    or ((image.get("properties", {}).get("storageProfile") or {}).get("osDisk") or {}).get("diskSizeGB")
                    or LINUX_IMAGE_GB,
                }
                self.add(
                    disk_id,
                    {"location": resource["location"], "tags": dict(resource["tags"]), "properties": disk_props},
                )
                os_disk.setdefault("managedDisk", {})["id"] = disk_id
            props["instanceView"] = {
                "statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/running"}]
            }
        if kind == "microsoft.compute/galleries/images/versions":
            resource["properties"].setdefault("publishingProfile", {})["publishedDate"] = _now()
            resource["properties"]["replicationStatus"] = {"aggregatedState": "Completed"}

    def _failed(self, resource_id: str) -> None:
        """What ARM leaves when a PUT's operation fails: the resource, ``Failed`` (deleted by whoever
        made it, or made again by the next PUT)."""
        resource = self.resources.get(resource_id.lower())
        if resource is not None:
            resource["properties"]["provisioningState"] = "Failed"

    def _set_power(self, resource_id: str, state: str) -> None:
        vm = self.resources.get(resource_id.lower())
        if vm is None:
            return
        statuses = [
            s
            for s in vm["properties"].get("instanceView", {}).get("statuses", [])
            if not s["code"].startswith("PowerState/")
        ]
        statuses.append({"code": f"PowerState/{state}"})
        vm["properties"]["instanceView"] = {"statuses": statuses}

    def _delete(self, resource_id: str) -> None:
        resource = self.resources.pop(resource_id.lower(), None)
        if resource is None:
            return
        for child in [k for k in self.resources if k.startswith(resource_id.lower() + "/")]:
            self.resources.pop(child, None)
        if self._kind(resource_id) == "microsoft.compute/virtualmachines":
            props = resource["properties"]
            os_disk = props.get("storageProfile", {}).get("osDisk", {})
            if os_disk.get("deleteOption") == "Delete":
                self._delete(str((os_disk.get("managedDisk") or {}).get("id", "")))
            for nic in props.get("networkProfile", {}).get("networkInterfaces", []):
                if (nic.get("properties") or {}).get("deleteOption") != "Delete":
                    until = time.monotonic() + self.nic_reservation_s
                    self.reserved_nics[str(nic.get("id", "")).lower()] = (until, resource_id)
                    continue
                if (nic.get("properties") or {}).get("deleteOption") == "Delete":
                    nic_resource = self._reference(nic.get("id"))
                    if nic_resource:
                        for config in nic_resource["properties"].get("ipConfigurations", []):
                            ip = (config.get("properties") or {}).get("publicIPAddress") or {}
                            if (ip.get("properties") or {}).get("deleteOption") == "Delete":
                                self._delete(str(ip.get("id", "")))
                    self._delete(str(nic.get("id", "")))

    def _operation(self, location: str, method: str, path: str, on_success: Any) -> Operation:
        op = Operation(uuid.uuid4().hex, location or "westeurope", on_success=on_success)
        op.in_progress = self.in_progress_polls
        for i, (m, pattern, code) in enumerate(self.failing_operations):
            if m == method and re.search(pattern, path):
                op.error = {"code": code, "message": "An internal execution error occurred. Please retry later."}
                del self.failing_operations[i]
                break
        for i, (m, pattern, polls) in enumerate(self.slow_operations):
            if m == method and re.search(pattern, path):
                op.in_progress = polls
                del self.slow_operations[i]
                break
        self.operations[op.id] = op
        return op

    # -- HTTP ------------------------------------------------------------------------------------
    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        path, query = parts.path, parse_qs(parts.query)
        with self.lock:
            self.requests.append((method, path))
            if path == "/msi/token":
                if headers.get("x-identity-header") != IDENTITY_HEADER:
                    return 400, {}, {"error": "invalid_request", "error_description": "bad identity header"}
                self.tokens += 1
                self.token_resources.append(query.get("resource", [""])[0])
                return (
                    200,
                    {},
                    {
                        "access_token": f"fake-token-{self.tokens}",
                        "expires_on": str(int(time.time()) + 3600),
                        "resource": query.get("resource", [""])[0],
                        "token_type": "Bearer",
                    },
                )
            if path.startswith(BOOT_LOG_PATH) and method == "GET":
                return self._boot_log(query)
            if not headers.get("authorization", "").startswith("Bearer fake-token-"):
                return (
                    401,
                    {},
                    _error("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."),
                )
            for fault in self.faults:
                if fault.method == method and re.search(fault.path, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    return fault.status, extra, _error(fault.code, "Injected by the test.")
            if "/operations/" in path and method == "GET":
                return self._poll(path.rsplit("/", 1)[-1])
            versions = MARKETPLACE_VERSIONS_RE.match(path.rstrip("/"))
            if method == "GET" and versions:
                return self._marketplace_versions(versions, query)
            listed = RESOURCE_RE.match(path.rstrip("/"))
            if method == "GET" and listed and self._is_collection(path.rstrip("/"), listed["rest"]):
                return self._list(path.rstrip("/"))
            return self._resource_request(method, path, query, body)

    def _marketplace_versions(
        self, path: re.Match[str], query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], Any]:
        """VirtualMachineImages_List (ComputeRP.json's operation of that id): every version of a
        marketplace SKU the location offers, as ``VirtualMachineImageResource`` (``name``
        is the version), unsorted; a SKU not offered there is Azure's 404 ``NotFound`` "Artifact:
        VMImage was not found." (danielsollondon/azvmimagebuilder#80, whose request lists versions), a SKU
        without versions an empty list (Azure/azure-cli#9011)."""
        version = query.get("api-version", [""])[0]
        if version != MARKETPLACE_API_VERSION:
            return (
                400,
                {},
                _error(
                    "NoRegisteredProviderFound",
                    f"No registered resource provider found for location '{path['location']}' and API version "
                    f"'{version}' for type 'locations/publishers/artifacttypes/offers/skus/versions'.",
                ),
            )
        key = tuple(path[k].lower() for k in ("location", "publisher", "offer", "sku"))
        if path["sub"].lower() != self.subscription.lower() or key not in self.marketplace:
            return 404, {}, _error("NotFound", "Artifact: VMImage was not found.")
        base = (
            f"/Subscriptions/{self.subscription}/Providers/Microsoft.Compute/Locations/{path['location']}/Publishers/"
            f"{path['publisher']}/ArtifactTypes/VMImage/Offers/{path['offer']}/Skus/{path['sku']}/Versions"
        )
        found = [{"name": v, "location": path["location"], "id": f"{base}/{v}"} for v in self.marketplace[key]]
        return 200, {}, found

    def add_marketplace_version(self, location: str, urn: str, version: str) -> None:
        """A version of the marketplace image ``Publisher:Offer:Sku`` (``urn``) offered in ``location``."""
        with self.lock:
            key = (location.lower(), *(part.lower() for part in urn.split(":")))
            self.marketplace.setdefault(key, []).append(version)

    def _is_collection(self, path: str, rest: str) -> bool:
        """Whether a GET names a collection: a top-level type (``.../images``), or a child type the
        fake keeps under its parent (``.../galleries/G/images/I/versions``:
        GalleryImageVersions_ListByGalleryImage), not an action (``.../virtualMachines/V/instanceView``)."""
        if "/" not in rest:
            return True
        return len(rest.split("/")) % 2 == 1 and self._kind(path + "/x") in KINDS

    def _list(self, collection: str) -> tuple[int, dict[str, str], Any]:
        """List by resource group (``VirtualMachines_List``, ``Disks_ListByResourceGroup``, ...): the
        group's resources of that type, as GET shows each (a VM without its instance view), in one
        page (no ``nextLink``); a type the fake does not keep is refused as ARM refuses it."""
        kind = self._kind(collection + "/x")
        if kind not in KINDS:
            return 400, {}, _error("InvalidResourceType", f"The resource type could not be found: {kind}")
        prefix = collection.lower() + "/"
        found = [json.loads(json.dumps(r)) for rid, r in self.resources.items()
                 if rid.startswith(prefix) and "/" not in rid[len(prefix):]]  # fmt: skip
        for resource in found:
            resource.get("properties", {}).pop("instanceView", None)
        return 200, {}, {"value": found}

    def _refused(
        self, method: str, resource_id: str, kind: str, query: dict[str, list[str]], body: bytes, action: str | None
    ) -> Problem | None:
        """What ARM refuses before it looks at the resource: an api-version it does not serve for
        the type, a name outside the type's rules, a body that is not the operation's model."""
        version = query.get("api-version", [""])[0]
        if version != API_VERSIONS[kind]:
            rtype = kind.partition("/")[2]
            return Problem(
                "NoRegisteredProviderFound",
                f"No registered resource provider found for location 'westeurope' and API version '{version}' for "
                f"type '{rtype}'. The supported api-versions are '{API_VERSIONS[kind]}'.",
            )
        if method == "PUT" and action is None:
            problem = _refused_name(kind, resource_id.rsplit("/", 1)[-1])
            if problem:
                return problem
        model = BODY_MODELS.get((method, kind)) if action is None else None
        if model is not None:
            try:
                document = json.loads(body or b"{}")
            except ValueError:
                return Problem(
                    "InvalidRequestContent", "The request content was invalid and could not be deserialized."
                )
            self.bodies.append((method, resource_id, document))
            return check(model[0], model[1], document)
        return None

    def _boot_diagnostics(
        self, resource_id: str, vm: dict[str, Any], query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], Any]:
        """VirtualMachines_RetrieveBootDiagnosticsData (``VirtualMachine_RetrieveBootDiagnosticsData``:
        200, SAS URIs of the console screenshot and the serial console log). Only a VM with boot
        diagnostics on has them; the fake keeps them in managed storage (no ``storageUri``), on itself."""
        boot = ((vm["properties"].get("diagnosticsProfile") or {}).get("bootDiagnostics")) or {}
        if boot.get("enabled") is not True:
            return 409, {}, _error("OperationNotAllowed", "Boot diagnostics is not enabled for this virtual machine.")
        minutes = query.get("sasUriExpirationTimeInMinutes", ["120"])[0]
        if not re.fullmatch(r"[0-9]{1,9}", minutes) or not 1 <= int(minutes) <= 1440:
            return 400, {}, _error("InvalidParameter", "sasUriExpirationTimeInMinutes must be 1 to 1440.")
        signature = uuid.uuid4().hex
        self.sas_tokens[signature] = resource_id.lower()
        blob = f"{self.url}{BOOT_LOG_PATH}{vm['properties'].get('vmId', vm['name'])}"
        return (
            200,
            {},
            {
                "consoleScreenshotBlobUri": f"{blob}.screenshot.bmp?sv=2026-01-01&sr=b&sp=r&sig={signature}",
                "serialConsoleLogBlobUri": f"{blob}.serialconsole.log?sv=2026-01-01&sr=b&sp=r&sig={signature}",
            },
        )

    def _boot_log(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        """A boot diagnostics blob read with its SAS URI (no bearer token, as Blob Storage takes
        it): the stand-in guest's serial console, or empty (the fake runs no guest)."""
        if query.get("sig", [""])[0] not in self.sas_tokens:
            return 403, {}, _error("AuthenticationFailed", "Signature did not match.")
        raw = self.guest_console.read_bytes() if self.guest_console and self.guest_console.exists() else b""
        return 200, {"Content-Type": "text/plain"}, raw

    def _poll(self, op_id: str) -> tuple[int, dict[str, str], Any]:
        op = self.operations.get(op_id)
        if op is None:
            return 404, {}, _error("NotFound", "operation not found")
        op.polls += 1
        if op.polls <= op.in_progress:
            return 200, {"Retry-After": self.poll_after}, {"name": op.id, "status": "InProgress", "startTime": _now()}
        if op.error:
            if op.on_failure is not None:
                op.on_failure()
                op.on_failure = None
            return 200, {}, {"name": op.id, "status": "Failed", "error": op.error, "endTime": _now()}
        if op.on_success is not None:
            op.on_success()
            op.on_success = None
        return 200, {}, {"name": op.id, "status": "Succeeded", "endTime": _now()}

    def _async_headers(self, op: Operation) -> dict[str, str]:
        url = (
            f"{self.url}/subscriptions/{self.subscription}/providers/Microsoft.Compute/locations/{op.location}"
            f"/operations/{op.id}?api-version=2026-04-01"
        )
        return {"Azure-AsyncOperation": url, "Location": url + "&monitor=true", "Retry-After": RETRY_AFTER}

    def _resource_request(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        action = None
        resource_id = path.rstrip("/")
        tail = resource_id.rsplit("/", 1)[-1]
        if tail.lower() in VM_ACTIONS | {"instanceview"} and "/virtualmachines/" in resource_id.lower():
            action, resource_id = tail.lower(), resource_id.rsplit("/", 1)[0]
        kind = self._kind(resource_id)
        if kind not in KINDS:
            return 400, {}, _error("InvalidResourceType", f"The resource type could not be found: {kind}")
        refused = self._refused(method, resource_id, kind, query, body, action)
        if refused is not None:
            return 400, {}, _error(refused.code, refused.message)
        found = self.resources.get(resource_id.lower())
        if method == "GET":
            if found is None:
                return 404, {}, _error("ResourceNotFound", f"The Resource '{resource_id}' was not found.")
            if action == "instanceview":
                return 200, {}, found["properties"].get("instanceView", {})
            shown = json.loads(json.dumps(found))
            if kind == "microsoft.compute/virtualmachines" and "instanceView" not in query.get("$expand", [""])[0]:
                shown["properties"].pop("instanceView", None)
            return 200, {}, shown
        if method == "PUT":
            status, answer = self._create(resource_id, json.loads(body or b"{}"))
            if status >= 300:
                return status, {}, answer
            op = self._operation(answer.get("location", ""), method, path, lambda: self._provisioned(resource_id))
            op.on_failure = lambda: self._failed(resource_id)
            if op.error:
                answer["properties"]["provisioningState"] = "Creating"
            return status, self._async_headers(op), answer
        if method == "PATCH":
            if found is None:
                return 404, {}, _error("ResourceNotFound", f"The Resource '{resource_id}' was not found.")
            patch = json.loads(body or b"{}")
            if "tags" in patch:
                found["tags"] = dict(patch["tags"])
            _merge(found.setdefault("properties", {}), patch.get("properties") or {})
            op = self._operation(found.get("location", ""), method, path, None)
            return 200, self._async_headers(op), found
        if method == "DELETE":
            if found is None:
                return 204, {}, None
            reserved = self._nic_reserved(resource_id) if kind == "microsoft.network/networkinterfaces" else None
            if reserved:
                return 400, {}, reserved
            op = self._operation(found.get("location", ""), method, path, lambda: self._delete(resource_id))
            return 202, self._async_headers(op), None
        if method == "POST" and action and found is not None:
            if action == "retrievebootdiagnosticsdata":
                return self._boot_diagnostics(resource_id, found, query)
            if action == "generalize":
                statuses = found["properties"].setdefault("instanceView", {}).setdefault("statuses", [])
                power = {s["code"] for s in statuses}
                if "PowerState/deallocated" not in power and "PowerState/stopped" not in power:
                    return (
                        409,
                        {},
                        _error("OperationNotAllowed", "The VM must be stopped or deallocated to generalize."),
                    )
                statuses.append({"code": "OSState/generalized"})
                return 200, {}, None
            state = {"poweroff": "stopped", "start": "running", "deallocate": "deallocated", "restart": "running"}[
                action
            ]
            if state == "running" and any(
                s["code"] == "OSState/generalized"
                for s in found["properties"].get("instanceView", {}).get("statuses", [])
            ):
                return 409, {}, _error("OperationNotAllowed", "Operation 'start' is not allowed on a generalized VM.")
            op = self._operation(found.get("location", ""), method, path, lambda: self._set_power(resource_id, state))
            return 202, self._async_headers(op), None
        if method == "POST" and found is None:
            return 404, {}, _error("ResourceNotFound", f"The Resource '{resource_id}' was not found.")
        return 405, {}, _error("MethodNotAllowed", f"{method} {path}")


def _refused_name(kind: str, name: str) -> Problem | None:
    rule = NAME_RULES.get(kind)
    if rule is None or re.fullmatch(rule[0], name, re.ASCII):
        if kind.endswith("/versions") and any(int(part) > 2**31 - 1 for part in name.split(".")):
            return Problem("InvalidParameter", f"The gallery image version name {name} has a part beyond 32 bits.")
        return None
    return Problem("InvalidResourceName", f"Resource name {name} is invalid. The name must be {rule[1]}.")


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


LINUX_IMAGE_GB = 30  # the OS disk size of Azure's Linux marketplace images, when nothing else says one


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00", time.gmtime())


@contextlib.contextmanager
def serving(fake: FakeArm) -> Iterator[FakeArm]:
    """Serve ``fake`` on a free loopback port (``fake.url``) for the duration of the block."""
    with serving_http(fake.handle, "fake-arm") as url:
        fake.url = url
        yield fake
