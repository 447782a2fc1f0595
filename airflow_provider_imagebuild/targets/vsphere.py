"""The vSphere target: build VMs cloned from templates, checkpoints as VM templates, the final image
as a template published to a content library.

Clients come from :class:`~airflow_provider_imagebuild.clouds.vsphere.VsphereClients` (a generic
Airflow connection); pyVmomi is imported only when a milestone runs.

- The green image is made by Packer's ``vsphere-clone`` (the shipped ``rhel8-vsphere.pkr.hcl``)
  from the spec's ``template``, as a template named by the build. Packer's artifact is its name.
- Build hosts are VMs ``ib-<digest>-h<checkpoint>`` cloned from the latest checkpoint template
  into the spec's cluster (or host), resource pool, datastore and folder, and powered on. The host
  id is the VM's instance UUID, so a rename or a move does not lose it; ``alive`` is a lookup by
  that UUID and a ``poweredOn`` check.
- **Checkpoints are VM templates** (``ib-<digest>-cp<milestone>``), cloned from the powered-off
  build VM, which is started again afterwards. Decided over snapshots of the build VM: a snapshot
  lives inside its VM and is lost with it, and relaunching after the VM is lost is what
  checkpoints are for; a template is independent of the VM and launches any number of hosts.
- Seal runs the seal playbook, powers the VM off and clones it into the final template (named from
  the pipeline and the build's creation time, stable on retry) rather than converting the build VM
  itself, so that a retried seal and the host's cleanup never touch the image.
- Publish captures the final template into the spec's content library as an OVF template item
  (vAPI) and attaches the spec's ``publish_tags`` (category: tag, made when missing) to the
  template. The final template is marked with a seal (``imagebuild.seal``, new at every seal) that
  the item's description records: a retry keeps the item of its name only if it records this
  template's seal, so a build sealed again (same template name, same item name) replaces the item
  holding the image of the seal before (:mod:`.library_items`, shared with the content library
  destination). Items of other builds stay.
- Names: every VM and template name the build gives vCenter or Packer comes from
  :meth:`VsphereTarget.vm_name`, from the build's digest, within vCenter's 80 characters.
- Placement: vCenter places a clone, or a template made a VM again, only where DRS or a
  stand-alone host chooses a host for it; on a cluster without DRS it refuses a pool without a
  host (pyVmomi's ``RelocateSpec.host``, ``MarkAsVirtualMachine``). There the target names one
  (:meth:`VsphereTarget.placement_host`: the spec's ``host``, else a connected host of the
  cluster, not in maintenance, mounting the datastore, with the most free memory), for its own
  clones and for Packer's (``vsphere_host``, which Packer's vsphere-clone sends from 1.7 on).
- A Packer milestone retried after Packer made its template (vsphere-clone stops with "use
  -force") adopts it if it sits in the target's folder and carries the marks the shipped template
  writes (:meth:`VsphereTarget.packer_artifacts`).
- Ownership: every VM and template the build makes sits directly in the target's folder and
  carries ``imagebuild.key`` (a digest of the pipeline and build id) and ``imagebuild.managed_by``
  in its advanced settings (``extraConfig``). Both are checked: the key is anyone's to compute and
  to set on a VM of a folder they may write, and a host is found by instance UUID anywhere in the
  datacenter (an image name may be a path into a subfolder), so the folder is what the build's
  own rights make its own. Nothing else is launched from, captured, published or destroyed. The
  template Packer made gets them when it is claimed (converted to a VM for the change and back).
- **Reuse** (#32, :meth:`VsphereTarget.adopt_checkpoint`): a new build starting from an earlier
  build's checkpoint template copies it (``CloneVM_Task``, template to template) into its own
  checkpoint's name, marked as the new build's from the start (the clone spec's ``extraConfig``,
  so that no copy of the new build's name ever carries the source's marks or none) and recording
  what it was copied from (``imagebuild.copied_from``): the source's template stays the source's.
- The **launch test** (:mod:`.launch`'s hooks) clones the sealed template to a VM ``ib-<digest>-lt``
  in the target's folder (``imagebuild.role: launch-test``), powers it on and reaches it at the
  address VMware Tools reports; it is found by instance UUID, and as a leftover by its name in the
  folder with this build's marks and role. vSphere has no console output to read through its API
  (a serial port's file on a datastore would need the guest to write there): the login prompt is
  reported as not available, and SSH, sudo and the network prove the boot.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Literal

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.vsphere import VsphereClients, rest_answer, vsphere_errors
from airflow_provider_imagebuild.errors import InvalidInput, NotFound, TargetError
from airflow_provider_imagebuild.rerun import rerun_advice
from airflow_provider_imagebuild.spec.vsphere import VsphereTargetSpec
from airflow_provider_imagebuild.targets.base import (
    CHECKPOINT_OUTPUT,
    IMAGE_OUTPUT,
    MANAGED_BY,
    Checkpoint,
    DigestNames,
    Host,
    checkpoint_images,
    final_image_name,
    ssh_ansible_vars,
)
from airflow_provider_imagebuild.targets.launch import PENDING, ROLE, RUNNING, STOPPED, LaunchTestTarget, TestInstance
from airflow_provider_imagebuild.targets.leaks import LeakCollecting, Resource, parse_time
from airflow_provider_imagebuild.targets.library_items import (
    find_item,
    find_library,
    item_description,
    item_records,
    reusable_item,
)
from airflow_provider_imagebuild.toolchain.versions import packer_version

log = logging.getLogger(__name__)

KEY_OPTION = "imagebuild.key"
MANAGED_OPTION = "imagebuild.managed_by"
BUILD_OPTION = "imagebuild.build"
PIPELINE_OPTION = "imagebuild.pipeline"
SEAL_OPTION = "imagebuild.seal"  # on the final template: which seal made it (new at every seal)
# On a checkpoint copied from an earlier build's (#32): "<build id>@<milestone>:<source's instance UUID>".
COPIED_OPTION = "imagebuild.copied_from"
CANCEL_WAIT_S = 120  # for vCenter to end a copy cancelled half-way ("a cancel operation is asynchronous")
READY_WAIT_S = 60  # for a finished copy's configuration to read as the build's template
IP_WAIT_S = 600  # for VMware Tools to report the guest's address
PACKER_SENDS_HOST = (1, 7)  # vsphere-clone sends the host of the clone (vsphere plugin 1.0.1, in Packer 1.7)
ROLE_OPTION = "imagebuild.role"
Role = Literal["packer", "host", "checkpoint", "final", "test"]


class VsphereTarget(DigestNames, LaunchTestTarget, LeakCollecting):
    name = "vsphere"

    def __init__(self, settings: VsphereTargetSpec, *, pipeline: str, image_type: str, clients: VsphereClients) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.image_type = image_type
        self.clients = clients
        self.region = ""

    @classmethod
    def from_settings(cls, settings: Any, *, pipeline: str, image_type: str) -> VsphereTarget:
        if not isinstance(settings, VsphereTargetSpec):
            raise InvalidInput("target", "a vSphere pipeline needs vSphere target settings")
        for name in ("datacenter", "datastore"):
            if not getattr(settings, name):
                raise InvalidInput(f"target.{name}", "is required for a build on vSphere")
        if not settings.cluster and not settings.host:
            raise InvalidInput("target.cluster", "is required for a build on vSphere (or give target.host)")
        clients = VsphereClients.from_connection(settings.vsphere_conn_id)
        return cls(settings, pipeline=pipeline, image_type=image_type, clients=clients)

    # -- inventory -------------------------------------------------------------------------------
    @property
    def content(self) -> Any:
        return self.clients.content

    def _find(self, path: str, field: str) -> Any:
        with vsphere_errors(f"find {path}"):
            found = self.content.searchIndex.FindByInventoryPath(path)
        if found is None:
            raise InvalidInput(f"target.{field}", f"{path} not found in vCenter {self.clients.host}")
        return found

    @property
    def datacenter(self) -> Any:
        return self._find(str(self.settings.datacenter), "datacenter")

    def folder_path(self) -> str:
        base = f"{self.settings.datacenter}/vm"
        return f"{base}/{self.settings.folder}" if self.settings.folder else base

    def folder(self) -> Any:
        return self._find(self.folder_path(), "folder")

    def pool(self) -> Any:
        s = self.settings
        compute = self._find(f"{s.datacenter}/host/{s.cluster or s.host}", "cluster" if s.cluster else "host")
        if not s.resource_pool:
            return compute.resourcePool
        return self._find(f"{s.datacenter}/host/{s.cluster or s.host}/Resources/{s.resource_pool}", "resource_pool")

    def _drs_off(self) -> bool:
        """Whether the spec's cluster is a cluster whose DRS is off (vCenter then places nothing
        by itself); a stand-alone host, or a cluster with DRS, chooses the host."""
        s = self.settings
        if not s.cluster:
            return False
        compute = self._find(f"{s.datacenter}/host/{s.cluster}", "cluster")
        with vsphere_errors(f"read {s.cluster}"):
            drs = getattr(compute.configurationEx, "drsConfig", None)
            return drs is not None and not drs.enabled

    def placement_host(self) -> Any:
        """The host a clone into the spec's cluster, or a template made a VM again there, runs on,
        where vCenter needs one named: the spec's ``host`` within its cluster; else, on a cluster
        without DRS, a connected host of it, not in maintenance mode, mounting the datastore, with
        the most free memory (vCenter refuses a pool there without a host). None where DRS or a
        stand-alone host chooses."""
        s = self.settings
        if not s.cluster:
            return None
        if s.host:
            return self._find(f"{s.datacenter}/host/{s.cluster}/{s.host}", "host")
        if not self._drs_off():
            return None
        cluster = self._find(f"{s.datacenter}/host/{s.cluster}", "cluster")
        datastore = self.datastore()._moId
        with vsphere_errors(f"hosts of {s.cluster}"):
            usable = [
                h
                for h in cluster.host
                if h.runtime.connectionState == "connected"
                and not h.runtime.inMaintenanceMode
                and any(d._moId == datastore for d in h.datastore)
            ]
            if not usable:
                raise TargetError(
                    f"vSphere: cluster {s.cluster} has DRS off and no connected host outside maintenance mode "
                    f"that mounts {s.datastore}: nowhere to place the build's VMs (or set target.host)"
                )
            return min(usable, key=lambda h: (-_free_memory(h), h.name))

    def datastore(self) -> Any:
        with vsphere_errors("list datastores"):
            found = next((d for d in self.datacenter.datastore if d.name == self.settings.datastore), None)
        if found is None:
            raise InvalidInput("target.datastore", f"{self.settings.datastore} is not a datastore of the datacenter")
        return found

    def vm_name(self, build: BuildRecord, role: Role, code: int = 0) -> str:
        """Every VM and template name the build gives vCenter and Packer: ``ib-<digest>-m005``
        (Packer's template of milestone 5), ``-h010`` (a build host launched from the checkpoint of
        10), ``-cp030`` (a checkpoint), and the final template, ``<pipeline, cut>-<created>-<digest>``
        (stable across a re-seal). All within vCenter's 80 characters, whatever the pipeline."""
        if role == "final":
            name = final_image_name(self.pipeline[:40], build, self.key(build))
        else:
            if role == "test":  # the launch test's VM: one per build at a time
                return f"{self.prefix(build)}-lt"
            letter = {"packer": "m", "host": "h", "checkpoint": "cp"}[role]
            name = f"{self.prefix(build)}-{letter}{code:03d}"
        return name  # at most 40 + 1 + 15 + 1 + 6 characters

    def _vm(self, name: str) -> Any:
        """A VM or template of the target's folder by name, or None (a subfolder of the name is
        not one: whoever may make folders there could otherwise name one as an image)."""
        from pyVmomi import vim

        with vsphere_errors(f"find {name}"):
            found = self.content.searchIndex.FindByInventoryPath(f"{self.folder_path()}/{name}")
        return found if isinstance(found, vim.VirtualMachine) else None

    def _by_uuid(self, uuid: str) -> Any:
        with vsphere_errors(f"find VM {uuid}"):
            return self.content.searchIndex.FindByUuid(
                datacenter=self.datacenter, uuid=uuid, vmSearch=True, instanceUuid=True
            )

    @staticmethod
    def _options(vm: Any) -> dict[str, str]:
        with vsphere_errors(f"read {vm}"):
            return {o.key: str(o.value) for o in (vm.config.extraConfig or []) if o.key.startswith("imagebuild.")}

    def _in_folder(self, vm: Any) -> bool:
        """Whether the VM is directly in the target's folder (where the build clones everything)."""
        with vsphere_errors(f"read {vm}"):
            parent = vm.parent
        return parent is not None and parent._moId == self.folder()._moId

    def is_builds(self, build: BuildRecord, vm: Any) -> bool:
        if vm is None:
            return False
        try:
            options = self._options(vm)
            in_folder = self._in_folder(vm)
        except NotFound:
            return False
        return in_folder and options.get(KEY_OPTION) == self.key(build) and options.get(MANAGED_OPTION) == MANAGED_BY

    def _owned(self, build: BuildRecord, name: str, template: bool) -> Any:
        vm = self._vm(name)
        if vm is None or not self.is_builds(build, vm):
            return None
        with vsphere_errors(f"read {name}"):
            return vm if bool(vm.config.template) == template else None

    def _marks(self, build: BuildRecord, role: str, **more: str) -> Any:
        """The advanced settings that make a VM or template the build's (a ``vim.vm.ConfigSpec``)."""
        from pyVmomi import vim

        values = {KEY_OPTION: self.key(build), MANAGED_OPTION: MANAGED_BY, BUILD_OPTION: build.build_id,
                  PIPELINE_OPTION: self.pipeline, ROLE_OPTION: role, **more}  # fmt: skip
        return vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in values.items()])

    def _mark(self, build: BuildRecord, vm: Any, role: str, seal: str = "") -> None:
        spec = self._marks(build, role, **({SEAL_OPTION: seal} if seal else {}))
        self.clients.wait(f"reconfigure {vm.name}", vm.ReconfigVM_Task(spec))

    def _power(self, vm: Any, on: bool) -> None:
        with vsphere_errors(f"power state of {vm.name}"):
            state = vm.runtime.powerState
        if on and state != "poweredOn":
            self.clients.wait(f"power on {vm.name}", vm.PowerOnVM_Task())
        elif not on and state == "poweredOn":
            self.clients.wait(f"power off {vm.name}", vm.PowerOffVM_Task())

    def _destroy(self, build: BuildRecord, vm: Any) -> bool:
        if vm is None or not self.is_builds(build, vm):
            return False
        name = vm.name
        try:
            with vsphere_errors(f"read {name}"):
                template = bool(vm.config.template)
            if not template:
                self._power(vm, on=False)
            self.clients.wait(f"destroy {name}", vm.Destroy_Task())
        except NotFound:
            return False
        log.info("destroyed %s", name)
        return True

    def _clone(self, build: BuildRecord, source: Any, name: str, *, template: bool, role: str, seal: str = "") -> Any:
        """Clone ``source`` to ``name`` in the target's folder (an earlier attempt's clone of the
        same name is this build's and holds an older state: it is destroyed first), marked with
        ``seal`` when it is the final template."""
        from pyVmomi import vim

        self._destroy(build, self._vm(name))
        pool, host = self.pool(), self.placement_host()
        relocate = vim.vm.RelocateSpec(pool=pool, datastore=self.datastore(), host=host)
        spec = vim.vm.CloneSpec(location=relocate, powerOn=False, template=template)
        with vsphere_errors(f"clone {source.name}"):
            task = source.CloneVM_Task(folder=self.folder(), name=name, spec=spec)
        clone = self.clients.wait(f"clone {source.name} to {name}", task)
        if clone is None:
            raise TargetError(f"vSphere clone of {source.name} to {name}: done, but no VM was returned")
        if template:  # a template's settings cannot change: mark it through a VM, then convert
            with vsphere_errors(f"convert {name}"):
                clone.MarkAsVirtualMachine(pool=pool, host=host)
            self._mark(build, clone, role, seal)
            with vsphere_errors(f"convert {name}"):
                clone.MarkAsTemplate()
        else:
            self._mark(build, clone, role, seal)
        return clone

    # -- the target interface --------------------------------------------------------------------
    def owns_image(self, build: BuildRecord, image: str) -> bool:
        return self._owned(build, image, template=True) is not None

    def claim_images(self, build: BuildRecord, images: Mapping[str, str], milestone: int) -> None:
        """Mark the template Packer's vsphere-clone made for this build (named by the build: a
        template of another name, or one another build marked, is refused)."""
        expected = self.vm_name(build, "packer", milestone)
        for image in images.values():
            if image != expected:
                raise InvalidInput("packer artifact", f"{image} is not the template this build asked Packer for")
            vm = self._vm(image)
            if vm is None:
                raise TargetError(f"vSphere: the template {image} Packer reported does not exist")
            options = self._options(vm)
            if (
                options.get(KEY_OPTION) not in (None, self.key(build))
                or options.get(BUILD_OPTION) not in (None, build.build_id)
                or options.get(PIPELINE_OPTION) not in (None, self.pipeline)
            ):
                raise InvalidInput("packer artifact", f"{image} belongs to another build")
            with vsphere_errors(f"read {image}"):
                template = bool(vm.config.template)
            if template:
                with vsphere_errors(f"convert {image}"):
                    vm.MarkAsVirtualMachine(pool=self.pool(), host=self.placement_host())
            self._mark(build, vm, "checkpoint")
            with vsphere_errors(f"convert {image}"):
                vm.MarkAsTemplate()

    def packer_artifacts(self, build: BuildRecord, milestone: int) -> dict[str, str]:
        """The template an earlier attempt's Packer made under the milestone's name in the target's
        folder, if it carries this build's marks (``imagebuild.build``, ``imagebuild.pipeline``,
        ``imagebuild.managed_by``: the shipped template writes them as configuration parameters;
        a claimed one has the key too): adopted when it is a template; destroyed when Packer
        stopped before making the VM a template, so that Packer makes it again. A VM or template
        of the name without those marks (another build's, someone's, or one Packer was stopped
        on before it wrote them) is never adopted or destroyed: it is named in the error."""
        name = self.vm_name(build, "packer", milestone)
        vm = self._vm(name)
        if vm is None:
            return {}
        try:
            options = self._options(vm)
            with vsphere_errors(f"read {name}"):
                template = bool(vm.config.template)
        except NotFound:
            return {}
        marked = (
            options.get(BUILD_OPTION) == build.build_id
            and options.get(PIPELINE_OPTION) == self.pipeline
            and options.get(MANAGED_OPTION) == MANAGED_BY
            and options.get(KEY_OPTION) in (None, self.key(build))
        )
        if not marked:
            raise InvalidInput(
                "packer artifact",
                f"a VM or template named {name} exists in {self.folder_path()} and is not build {build.build_id}'s "
                "(no imagebuild.build and imagebuild.pipeline of this build, which the template writes): it is "
                f"neither adopted nor destroyed; remove it if it is a leftover, then {rerun_advice()}",
            )
        if template:
            return {"": name}
        log.warning("%s of an earlier attempt is a VM, not a template (Packer stopped): destroyed, made again", name)
        self._power(vm, on=False)
        self.clients.wait(f"destroy {name}", vm.Destroy_Task())
        return {}

    def packer_image_name(self, build: BuildRecord, pipeline: str, milestone: int) -> str:
        return self.vm_name(build, "packer", milestone)

    def packer_vars(self) -> dict[str, str]:
        """The template's inventory; ``vsphere_host`` is the placement host (as ``cluster/host``,
        a path below the datacenter's host folder) where the cluster has one. Packer before 1.7
        sends no host for the clone (vsphere plugin 1.0.1 added it), which vCenter refuses on a
        cluster without DRS: refused here, naming the gap, instead of failing every retry."""
        s = self.settings
        host = self.placement_host()
        if host is not None and self._drs_off():
            version = packer_version()
            if version is not None and _version(version) < PACKER_SENDS_HOST:
                raise InvalidInput(
                    "target.cluster",
                    f"{s.cluster} has DRS off, and the vsphere-clone builder of Packer {version} clones into a "
                    "cluster without naming a host, which vCenter refuses there; use Packer 1.7 or later (it sends "
                    "the host chosen here), or build on a cluster with DRS or a stand-alone host (target.host)",
                )
        with vsphere_errors("read the placement host"):
            placement = f"{s.cluster}/{host.name}" if host is not None else (s.host or "")
        return {
            "vsphere_datacenter": s.datacenter or "",
            "vsphere_cluster": s.cluster or "",
            "vsphere_host": placement,
            "vsphere_datastore": s.datastore or "",
            "vsphere_folder": s.folder,
            "vsphere_network": s.network or "",
            "vsphere_template": s.template or "",
        }

    def packer_env(self) -> dict[str, str]:
        return self.clients.packer_env()

    def launch(self, build: BuildRecord, checkpoint: Checkpoint) -> Host:
        source = self._owned(build, checkpoint.image, template=True)
        if source is None:
            raise InvalidInput(
                f"milestones.{checkpoint.code}.outputs.checkpoint_image",
                f"{checkpoint.image} is not build {build.build_id}'s template (missing, outside the target's "
                "folder, or without this build's key); a build host is launched only from the build's own checkpoints",
            )
        name = self.vm_name(build, "host", checkpoint.code)
        vm = self._clone(build, source, name, template=False, role="buildhost")
        self._power(vm, on=True)
        with vsphere_errors(f"read {name}"):
            uuid = str(vm.config.instanceUuid)
        address = "" if self.settings.connection else self._address(vm)
        log.info("build host %s (%s) launched from %s", name, address or "no address needed", checkpoint.image)
        return Host(uuid, address, checkpoint.image, checkpoint.code, checkpoint.code)

    def _address(self, vm: Any) -> str:
        """The guest's IP as VMware Tools reports it (bounded wait)."""
        deadline = time.monotonic() + IP_WAIT_S
        while time.monotonic() < deadline:
            with vsphere_errors(f"guest address of {vm.name}"):
                address = vm.guest.ipAddress
            if address:
                return str(address)
            time.sleep(5)
        raise TargetError(f"vSphere: {vm.name} reported no IP address within {IP_WAIT_S} s (VMware Tools running?)")

    def _host_vm(self, build: BuildRecord, host: Host) -> Any:
        vm = self._by_uuid(host.id) if host.id else None
        return vm if self.is_builds(build, vm) else None

    def alive(self, build: BuildRecord, host: Host) -> bool:
        vm = self._host_vm(build, host)
        if vm is None:
            return False
        try:
            with vsphere_errors(f"power state of {host.id}"):
                return bool(vm.runtime.powerState == "poweredOn" and not vm.config.template)
        except NotFound:
            return False

    def ansible_vars(self, host: Host) -> dict[str, Any]:
        return ssh_ansible_vars(self.settings, host)

    def park_host(self, build: BuildRecord, host: Host) -> str:
        """Power off the build's VM (in the target's folder, with the build's key): it holds no
        CPU or memory reservation while off, and keeps its disks for the resume."""
        vm = self._host_vm(build, host)
        if vm is None:
            return ""
        try:
            self._power(vm, on=False)
        except NotFound:  # destroyed meanwhile
            return ""
        log.info("powered off build host %s (parked)", vm.name)
        return "powered off"

    def unpark_host(self, build: BuildRecord, host: Host) -> Host | None:
        """Power the build's VM on again and read its address (DHCP may give another)."""
        vm = self._host_vm(build, host)
        if vm is None:
            return None
        try:
            with vsphere_errors(f"template flag of {vm.name}"):
                if vm.config.template:
                    return None
            self._power(vm, on=True)
        except NotFound:
            return None
        address = host.address if self.settings.connection else self._address(vm)
        return replace(host, address=address)

    def capture(self, build: BuildRecord, host: Host, milestone: int, final: bool) -> dict[str, Any]:
        vm = self._host_vm(build, host)
        if vm is None:
            raise InvalidInput("host_id", f"{host.id} is not a build host of build {build.build_id} (or is gone)")
        self._power(vm, on=False)  # a consistent disk
        if final:
            name = self.vm_name(build, "final")
            seal = uuid.uuid4().hex
            made = self._clone(build, vm, name, template=True, role="final", seal=seal)
            log.info("captured final template %s (seal %s)", name, seal)
            return {IMAGE_OUTPUT: name, "template": name, "folder": self.folder_path(), "seal": seal,
                    **_stored_gb(made, "final_gb")}  # fmt: skip
        name = self.vm_name(build, "checkpoint", milestone)
        try:
            made = self._clone(build, vm, name, template=True, role="checkpoint")
        finally:
            self._power(vm, on=True)
        log.info("captured checkpoint template %s after milestone %d", name, milestone)
        return {CHECKPOINT_OUTPUT: name, "folder": self.folder_path(), **_stored_gb(made, "checkpoint_gb")}

    def discard(self, build: BuildRecord, images: list[str]) -> list[str]:
        removed = []
        for image in images:
            template = self._owned(build, image, template=True)
            published = self._published(build, image, template) if template is not None else ""
            if published:
                log.warning("template %s is published (%s); left to retention", image, published)
                continue
            if self._destroy(build, template):
                removed.append(image)
            else:
                log.info("checkpoint %s is gone or not build %s's; left alone", image, build.build_id)
        return removed

    def _published(self, build: BuildRecord, image: str, template: Any) -> str:
        """How a publish has begun on the build's final ``template`` ("" when it has not): the
        content library holds the build's item made of it (the same seal). A publish that failed
        after the capture (tagging it) leaves an item people may already deploy: retention's to
        remove, with its template, never an abandon's. Checkpoint templates are never published."""
        library_name = self.settings.content_library
        if not library_name or image != self.vm_name(build, "final"):
            return ""
        rest = self.clients.rest()
        try:
            library = find_library(rest, library_name, "target.content_library")
        except InvalidInput:  # no such library: nothing was ever published into it
            return ""
        item = find_item(rest, library, image)
        recorded = item_records(str((item or {}).get("description", "")))
        if item is None or recorded.get("key") != self.key(build) or recorded.get("seal") != self._seal_of(template):
            return ""
        return f"content library {library_name} item {item.get('id')}"

    def publish(self, build: BuildRecord, image: str) -> dict[str, Any]:
        s = self.settings
        template = self._owned(build, image, template=True)
        if template is None:
            raise InvalidInput(
                "milestones.95.outputs.image_id",
                f"{image} is not build {build.build_id}'s template (no key of this build); it is not published",
            )
        if not s.content_library:
            raise InvalidInput("target.content_library", "is required to publish on vSphere")
        rest = self.clients.rest()
        library = find_library(rest, s.content_library, "target.content_library")
        seal = self._seal_of(template)
        key = self.key(build)
        item = reusable_item(rest, library, image, key=key, holds={"seal": seal}, field="target.content_library")
        if item is not None:
            item_id = str(item["id"])
        else:
            description = item_description(f"{self.pipeline} build {build.build_id}", {"key": key, "seal": seal})
            body = {
                "source": {"type": "VirtualMachine", "id": template._moId},
                "target": {"library_id": library},
                "create_spec": {"name": image, "description": description},
            }
            with vsphere_errors("content library"):
                made = rest_answer(rest.post("/com/vmware/vcenter/ovf/library-item", json=body), f"capture {image}")
            if not made or not made.get("succeeded"):
                raise TargetError(f"vSphere: capturing {image} into {s.content_library} failed: {made}")
            item_id = str(made["ovf_library_item_id"])
        tagged = {category: self._attach_tag(rest, category, tag, template._moId) for category, tag in
                  s.publish_tags.items()}  # fmt: skip
        log.info("published %s to content library %s (item %s)", image, s.content_library, item_id)
        return {
            "template": image,
            "content_library": s.content_library,
            "library_item_id": item_id,
            "seal": seal,
            "tags": {category: s.publish_tags[category] for category in tagged},
        }

    @staticmethod
    def _attach_tag(rest: Any, category: str, tag: str, vm_id: str) -> str:
        """Attach ``category: tag`` to the VM (template), making the category (one tag per
        object, for VMs) and the tag when missing; attaching again is harmless."""
        tagging = "/com/vmware/cis/tagging"
        with vsphere_errors("tags"):
            category_id = None
            for cid in rest_answer(rest.get(f"{tagging}/category"), "list tag categories") or []:
                found = rest_answer(rest.get(f"{tagging}/category/id:{cid}"), f"tag category {cid}")
                if found and found.get("name") == category:
                    category_id = cid
                    break
            if category_id is None:
                spec = {"name": category, "description": f"{MANAGED_BY}: {category}",
                        "cardinality": "SINGLE", "associable_types": ["VirtualMachine"]}  # fmt: skip
                category_id = rest_answer(rest.post(f"{tagging}/category", json={"create_spec": spec}), "tag category")
            tag_id = None
            listed = rest.post(f"{tagging}/tag/id:{category_id}", params={"~action": "list-tags-for-category"})
            for tid in rest_answer(listed, f"tags of {category}") or []:
                found = rest_answer(rest.get(f"{tagging}/tag/id:{tid}"), f"tag {tid}")
                if found and found.get("name") == tag:
                    tag_id = tid
                    break
            if tag_id is None:
                spec = {"name": tag, "description": f"{MANAGED_BY}: {category}={tag}", "category_id": category_id}
                tag_id = rest_answer(rest.post(f"{tagging}/tag", json={"create_spec": spec}), f"tag {tag}")
            body = {"object_id": {"id": vm_id, "type": "VirtualMachine"}}
            attach = rest.post(f"{tagging}/tag-association/id:{tag_id}", params={"~action": "attach"}, json=body)
            rest_answer(attach, f"attach {category}={tag}")
        return str(tag_id)

    def _seal_of(self, template: Any) -> str:
        """Which seal made the final template: its ``imagebuild.seal``, else (a template sealed
        before seals were marked) its managed object id, which vCenter gives no other VM, so a
        template cloned again by a new seal has another."""
        return self._options(template).get(SEAL_OPTION) or f"moref-{template._moId}"

    def cleanup(self, build: BuildRecord, host: Host) -> None:
        """Destroy the build VM, and what earlier, lost hosts of the build left."""
        self._destroy(build, self._host_vm(build, host))
        for code in sorted(checkpoint_images(build)):
            self._destroy(build, self._vm(self.vm_name(build, "host", code)))

    # -- reuse (#32) -----------------------------------------------------------------------------------
    def adopt_checkpoint(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """The source build's checkpoint template, proven its own as :meth:`owns_image` proves any
        (directly in the target's folder, with its key and managed-by) and as a checkpoint of its
        (its build, pipeline and role), copied with vCenter's own copy (``CloneVM_Task`` of the
        template into a template) under this build's name for that checkpoint, marked as this
        build's by the clone itself: a template has no settings to change afterwards, and a copy
        marked later would carry the source's marks (vCenter copies them) until then. Copied, not
        claimed: the source's template stays the source's (kept for a redo, or deleted by the next
        delivery), and any number of builds copy it.

        A retry finds the copy an earlier attempt finished (this build's marks, a template, copied
        from this very template: ``imagebuild.copied_from`` names the source build, milestone and
        template instance); an earlier attempt's copy that is not that (half-made, or of another
        checkpoint) is destroyed and copied again, and a VM of the name that is not the build's is
        never touched (the copy is refused). The copy is waited for within the bound every clone
        has; one that fails or outlasts it is cancelled and what it made is destroyed before the
        error is raised, so nothing is left that no record names."""
        where = f"milestones.{checkpoint.code}.outputs.checkpoint_image"
        original = self._source_checkpoint(source, checkpoint, where)
        with vsphere_errors(f"read {checkpoint.image}"):
            origin = f"{source.build_id}@{checkpoint.code}:{original.config.instanceUuid}"
        name = self.vm_name(build, "checkpoint", checkpoint.code)
        found = self._vm(name)
        if found is not None:
            if self._copy_of(build, found, origin):
                log.info("checkpoint %s of build %s was copied to %s already", checkpoint.image, source.build_id, name)
                return self._adopted(found, name)
            if not self.is_builds(build, found):
                raise TargetError(
                    f"vSphere: a VM or template named {name} is in {self.folder_path()} and is not build "
                    f"{build.build_id}'s; build {source.build_id}'s checkpoint {checkpoint.image} is not copied over it"
                )
            log.warning("%s of an earlier attempt is not a finished copy of %s: destroyed, copied again", name,
                        checkpoint.image)  # fmt: skip
            self._destroy(build, found)
        copy = self._copy(build, original, name, origin)
        log.info("copied checkpoint %s of build %s to %s (build %s's)", checkpoint.image, source.build_id, name,
                 build.build_id)  # fmt: skip
        return self._adopted(copy, name)

    def _source_checkpoint(self, source: BuildRecord, checkpoint: Checkpoint, where: str) -> Any:
        """The source build's checkpoint template, or InvalidInput naming why it is not one."""
        if source.pipeline != self.pipeline:
            raise InvalidInput(where, f"build {source.build_id} is of pipeline {source.pipeline}, not {self.pipeline}; "
                                      "its checkpoint is not copied")  # fmt: skip
        image = checkpoint.image
        if not image or "/" in image or len(image) > 80:  # a path elsewhere, or no vCenter name at all
            raise InvalidInput(where, f"{image[:100]!r} is not the name of a template in {self.folder_path()}; "
                                      "nothing is copied")  # fmt: skip
        template = self._owned(source, image, template=True)
        try:
            options = self._options(template) if template is not None else {}
        except NotFound:  # destroyed meanwhile
            options = {}
        if (
            options.get(BUILD_OPTION) != source.build_id
            or options.get(PIPELINE_OPTION) != self.pipeline
            or options.get(ROLE_OPTION) != "checkpoint"
        ):
            raise InvalidInput(
                where,
                f"{checkpoint.image} is not a checkpoint template of build {source.build_id} (missing, outside "
                f"{self.folder_path()}, or without that build's key, pipeline and checkpoint role); nothing is copied",
            )
        return template

    def _copy_of(self, build: BuildRecord, vm: Any, origin: str) -> bool:
        """Whether ``vm`` is the build's finished copy of the checkpoint ``origin`` names."""
        try:
            options = self._options(vm)
            with vsphere_errors(f"read {vm}"):
                template = bool(vm.config.template)
        except (NotFound, AttributeError):  # gone, or its configuration is not available yet
            return False
        return (
            template
            and self.is_builds(build, vm)
            and options.get(COPIED_OPTION) == origin
            and options.get(BUILD_OPTION) == build.build_id
            and options.get(ROLE_OPTION) == "checkpoint"
        )

    def _copy(self, build: BuildRecord, original: Any, name: str, origin: str) -> Any:
        """Clone ``original`` into the template ``name`` in the target's folder, marked as the
        build's checkpoint copied from ``origin``; once it reads as that, within bounds. A copy
        that fails, outlasts the bound or does not read as that is cancelled and destroyed."""
        from pyVmomi import vim

        relocate = vim.vm.RelocateSpec(pool=self.pool(), datastore=self.datastore(), host=self.placement_host())
        config = self._marks(build, "checkpoint", **{COPIED_OPTION: origin})
        spec = vim.vm.CloneSpec(location=relocate, powerOn=False, template=True, config=config)
        with vsphere_errors(f"copy {original.name}"):
            task = original.CloneVM_Task(folder=self.folder(), name=name, spec=spec)
        try:
            copy = self.clients.wait(f"copy {original.name} to {name}", task)
            deadline = time.monotonic() + READY_WAIT_S
            while copy is None or not self._copy_of(build, copy, origin):
                if time.monotonic() > deadline:
                    raise TargetError(
                        f"vSphere: the copy {name} of {original.name} does not read as build {build.build_id}'s "
                        f"checkpoint template within {READY_WAIT_S} s"
                    )
                time.sleep(1)
        except BaseException:
            self._remove_copy(build, task, name)
            raise
        return copy

    def _remove_copy(self, build: BuildRecord, task: Any, name: str) -> None:
        """Destroy what a copy that failed made: cancel its task if it still runs (and wait, within
        bounds, for vCenter to end it: a VM being made cannot be destroyed), then destroy the VM
        its task made, or the one of its name carrying this build's marks (which the clone gave it).
        What cannot be destroyed is logged, never raised over the copy's own error; it carries the
        build's marks, so gc finds it."""
        try:
            with vsphere_errors(f"copy to {name}"):
                if task.info.state in ("queued", "running"):
                    with contextlib.suppress(Exception):  # InvalidState: it has just ended
                        task.CancelTask()
                deadline = time.monotonic() + CANCEL_WAIT_S
                while task.info.state in ("queued", "running") and time.monotonic() < deadline:
                    time.sleep(0.5)
                made = task.info.result if task.info.state == "success" else None
            vm = made if made is not None else self._vm(name)
            if vm is None or (made is None and not self.is_builds(build, vm)):
                return
            with vsphere_errors(f"destroy {name}"):
                if not vm.config.template:
                    self._power(vm, on=False)
                task = vm.Destroy_Task()
            self.clients.wait(f"destroy {name}", task)
            log.info("destroyed %s, a copy that failed", name)
        except Exception as exc:
            log.warning("the failed copy %s was not destroyed (%s); it carries build %s's marks for gc", name,
                        str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__, build.build_id)  # fmt: skip

    def _adopted(self, copy: Any, name: str) -> dict[str, Any]:
        return {CHECKPOINT_OUTPUT: name, "folder": self.folder_path(), **_stored_gb(copy, "checkpoint_gb")}

    # -- the launch test (targets/launch.py's hooks) ---------------------------------------------------
    def _test_vm(self, build: BuildRecord) -> Any:
        """The build's launch test VM in the target's folder (its marks: this build's key and the
        launch-test role), or None."""
        vm = self._vm(self.vm_name(build, "test"))
        if not self.is_builds(build, vm):
            return None
        try:
            return vm if self._options(vm).get(ROLE_OPTION) == ROLE else None
        except NotFound:
            return None

    def _test_vm_by_uuid(self, build: BuildRecord, instance_id: str) -> Any:
        vm = self._test_vm(build)
        if vm is None:
            return None
        try:
            with vsphere_errors(f"read {vm.name}"):
                return vm if str(vm.config.instanceUuid) == instance_id else None
        except NotFound:
            return None

    def leftover_test_instances(self, build: BuildRecord) -> list[str]:
        vm = self._test_vm(build)
        if vm is None:
            return []
        with vsphere_errors(f"read {vm.name}"):
            return [str(vm.config.instanceUuid)]

    def launch_test_instance(self, build: BuildRecord, image: str) -> str:
        """Clone the sealed template to the launch test VM (placed as a build host is) and power it
        on; its instance UUID is the id."""
        source = self._owned(build, image, template=True)
        if source is None:
            raise InvalidInput("image_id", f"{image} is not build {build.build_id}'s template; no test VM is made")
        vm = self._clone(build, source, self.vm_name(build, "test"), template=False, role=ROLE)
        try:
            with vsphere_errors(f"read {vm.name}"):
                uuid = str(vm.config.instanceUuid)
            self._power(vm, on=True)
        except Exception:  # the clone is there: destroyed now rather than left for the next try
            with contextlib.suppress(Exception):
                self._destroy(build, vm)
            raise
        return uuid

    def test_instance(self, build: BuildRecord, instance_id: str) -> TestInstance | None:
        vm = self._test_vm_by_uuid(build, instance_id)
        if vm is None:
            return None
        try:
            with vsphere_errors(f"read {vm.name}"):
                power, address = str(vm.runtime.powerState), str(vm.guest.ipAddress or "")
        except NotFound:
            return None
        if power != "poweredOn":
            return TestInstance(instance_id, STOPPED, detail=f"power state {power}")
        # Running, and reachable once VMware Tools reports the guest's address.
        return TestInstance(instance_id, RUNNING if address else PENDING, address)

    def delete_test_instance(self, build: BuildRecord, instance_id: str) -> None:
        """Power off and destroy the launch test VM if it is this build's (gone already is fine)."""
        vm = self._test_vm_by_uuid(build, instance_id)
        if vm is None:
            log.info("launch test VM %s is gone or not build %s's; nothing to delete", instance_id, build.build_id)
            return
        self._destroy(build, vm)

    # -- the leak collector (targets/leaks.py) -------------------------------------------------------
    def build_key(self, rec: BuildRecord) -> str:
        return self.key(rec)

    def _pipelines(self, options: Mapping[str, str]) -> bool:
        return options.get(MANAGED_OPTION) == MANAGED_BY and options.get(PIPELINE_OPTION) == self.pipeline

    def owned_resources(self) -> list[Resource]:
        """VMs and templates directly in the target's folder (where the build clones everything)
        whose ``imagebuild.*`` options say managed by this provider and this pipeline. A VM is named
        by its instance UUID and a template by its name: what the record keeps of each."""
        from pyVmomi import vim

        found: list[Resource] = []
        with vsphere_errors(f"list {self.folder_path()}"):
            children: list[Any] = [c for c in self.folder().childEntity if isinstance(c, vim.VirtualMachine)]
        for vm in children:
            try:
                options = self._options(vm)
                with vsphere_errors(f"read {vm.name}"):
                    template, uuid, name = bool(vm.config.template), str(vm.config.instanceUuid), str(vm.name)
                    created = vm.config.createDate
            except NotFound:  # destroyed while listed
                continue
            if not self._pipelines(options):
                continue
            found.append(Resource("template" if template else "vm", name if template else uuid, self.folder_path(),
                                  self.pipeline, options.get(BUILD_OPTION, ""), parse_time(created),
                                  role=options.get(ROLE_OPTION, ""), build_key=options.get(KEY_OPTION, ""),
                                  detail={"name": name}))  # fmt: skip
        return found

    def delete_resource(self, resource: Resource) -> bool:
        """Found again (a VM by instance UUID, a template by name in the folder); destroyed only
        while still in the target's folder with the same managed-by, pipeline, build and key."""
        vm = self._by_uuid(resource.id) if resource.kind == "vm" else self._vm(resource.id)
        if vm is None:
            return False
        try:
            options, in_folder = self._options(vm), self._in_folder(vm)
            same = (
                in_folder
                and self._pipelines(options)
                and options.get(BUILD_OPTION, "") == resource.build_id
                and options.get(KEY_OPTION, "") == resource.build_key
            )
            if not same:
                return False
            with vsphere_errors(f"read {vm.name}"):
                template = bool(vm.config.template)
            if not template:
                self._power(vm, on=False)
            self.clients.wait(f"destroy {vm.name} (gc)", vm.Destroy_Task())
        except NotFound:
            return False
        log.info("destroyed leaked %s %s", resource.kind, resource.detail.get("name", resource.id))
        return True


def _free_memory(host: Any) -> int:
    """A host's memory not in use, in bytes (its summary's hardware size less the quick stats)."""
    size = int(getattr(host.summary.hardware, "memorySize", 0) or 0)
    stats = host.summary.quickStats
    used = int(getattr(stats, "overallMemoryUsage", 0) or 0) if stats is not None else 0
    return size - used * 2**20


def _version(text: str) -> tuple[int, ...]:
    """``1.6.6`` -> (1, 6, 6); what is not a number ends it (``1.10.0-dev`` -> (1, 10, 0))."""
    return tuple(int(part) for part in re.findall(r"[0-9]+", text.split("-")[0])[:3])


def _stored_gb(template: Any, key: str) -> dict[str, float]:
    """What the template stores on its datastore, in GB, under ``key``, for the cost (build/cost.py):
    vCenter's committed bytes, else its disks' provisioned capacity; {} when vCenter says neither."""
    from pyVmomi import vim

    try:
        committed = int(getattr(getattr(template.summary, "storage", None), "committed", 0) or 0)
        if committed <= 0:
            disks = [d for d in template.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
            committed = sum(int(d.capacityInKB or 0) for d in disks) * 1024
    except Exception:  # a metering gap, never a failed capture
        return {}
    return {key: round(committed / 1e9, 3)} if committed > 0 else {}
