"""What a target's source image resolves to now: the value of a watch ``image: source`` (spec/watch.py).

A spec names its source image the way people do (an AMI name pattern, an image family, a
marketplace URN ending in ``latest``, a Glance or template name, the local Debian base); what a
build really starts from is one image, and that is what a fingerprint must carry: a newer image
behind the same name is a change. Each cloud resolves it through the target's own connection and
the same API the build's Packer template resolves it with, read-only and in a bounded number of
calls. Clouds not listed in :data:`.registry.IMAGE_WATCH_CLOUDS` cannot resolve one, and a spec
that asks is refused when it is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import re
from collections.abc import Callable
from typing import Any

from airflow_provider_imagebuild.errors import ImageBuildError, TargetError

log = logging.getLogger(__name__)


def local_base_id() -> str | None:
    """The SHA-256 of the cached debootstrap tarball a local build unpacks (what the local target's
    milestone 5 starts from); None before the first bootstrap made it."""
    from airflow_provider_imagebuild.targets.rootfs import cached_base

    tarball = cached_base()
    if tarball is None:
        return None
    digest = hashlib.sha256()
    with open(tarball, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def aws_source_id(target: Any) -> str | None:
    """An AMI id as given, else the newest AMI of ``target.source_image_owners`` whose name matches
    ``target.source_image`` (what Packer's own ``source_ami_filter`` does, owners required)."""
    name = target.settings.source_image
    if not name:
        return None
    if name.startswith("ami-"):
        return str(name)
    owners = list(getattr(target.settings, "source_image_owners", None) or [])
    if not owners:
        return None  # a name without owners matches anyone's AMI: the spec refuses it, never guessed here
    with target.api("DescribeImages"):
        found = target.ec2().describe_images(Owners=owners, Filters=[{"Name": "name", "Values": [name]}])
    images = found.get("Images", [])
    newest = max(
        images, key=lambda image: (str(image.get("CreationDate", "")), str(image.get("Name", ""))), default=None
    )
    return str(newest["ImageId"]) if newest else None


# What spec/gcp.py documents for an unset source (the shipped template's defaults, rhel8-gcp.pkr.hcl).
GCP_DEFAULT_PROJECT = "rhel-cloud"
GCP_DEFAULT_FAMILY = "rhel-8"


def gcp_source_id(target: Any) -> str | None:
    """The image ``source_image`` names, else the newest non-deprecated image of
    ``source_image_family`` (``images.getFromFamily``: what Packer's googlecompute starts from), in
    ``source_image_project``; as ``PROJECT/NAME@ID``: the numeric id is what changes when an image
    is deleted and made again under the same name."""
    s = target.settings
    project = s.source_image_project or GCP_DEFAULT_PROJECT
    images = target.compute.images()
    if s.source_image:
        image = target.call(f"images.get {project}/{s.source_image}", images.get(project=project, image=s.source_image))
    else:
        family = s.source_image_family or GCP_DEFAULT_FAMILY
        request = images.getFromFamily(project=project, family=family)
        image = target.call(f"images.getFromFamily {project}/{family}", request)
    if not image.get("id") or image.get("status", "READY") != "READY":
        return None  # a PENDING or FAILED image is nothing a build can start from
    return f"{project}/{image['name']}@{image['id']}"


GLANCE_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
MAX_MARKETPLACE_VERSIONS = 5000  # versions of one SKU read at most (Azure lists them in one answer)
MAX_SAME_NAME = 100  # images of one name read at most (Glance's default page is 25: one request, newest first)


def openstack_source_id(target: Any) -> str | None:
    """A Glance image id as given, else the id of the newest active image named ``source_image``
    that the project sees (Glance's list by name, newest first): a vendor uploading a new image
    under the same name, the old one deleted or kept, changes it."""
    from airflow_provider_imagebuild.clouds.openstack import openstack_errors

    name = target.settings.source_image
    if not name:
        return None
    if GLANCE_ID.fullmatch(name):
        return str(name)
    with openstack_errors(f"list images {name}"):
        listed = target.conn.image.images(name=name, status="active", sort="created_at:desc")
        newest = next((i for i in itertools.islice(listed, MAX_SAME_NAME) if i.name == name), None)
    return str(newest.id) if newest is not None else None


VM_PAGE = 1000  # VM names per property collector answer
MAX_VM_PAGES = 50  # a datacenter of more than 50,000 VMs and templates is not searched through


def vsphere_source_id(target: Any) -> str | None:
    """``<instance UUID>@<managed object id>`` of the VM template named ``template`` anywhere in
    the datacenter's VM folders, as Packer's vsphere-clone finds a source by name (govmomi's finder
    searches a name without a path recursively and refuses one that names several). A template
    replaced under the same name is a new VM: vCenter gives it a new managed object id (never
    reused) and a new instance UUID (govmomi's simulator derives that one from the name, so the
    id is what tells two of its VMs apart). None when no VM, or several, have that name."""
    from pyVmomi import vim, vmodl

    from airflow_provider_imagebuild.clouds.vsphere import vsphere_errors

    name = target.settings.template
    if not name:
        return None
    collector = vmodl.query.PropertyCollector
    with vsphere_errors(f"find the source template {name}"):
        content = target.content
        view = content.viewManager.CreateContainerView(target.datacenter.vmFolder, [vim.VirtualMachine], True)
        try:
            traversal = collector.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)
            spec = collector.FilterSpec(
                objectSet=[collector.ObjectSpec(obj=view, skip=True, selectSet=[traversal])],
                propSet=[collector.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])],
            )
            pages = content.propertyCollector
            answer = pages.RetrievePropertiesEx([spec], collector.RetrieveOptions(maxObjects=VM_PAGE))
            named: list[Any] = []
            for _ in range(MAX_VM_PAGES):
                if answer is None:
                    break
                named += [o.obj for o in answer.objects if any(p.val == name for p in o.propSet)]
                if not answer.token:
                    break
                answer = pages.ContinueRetrievePropertiesEx(answer.token)
            else:
                pages.CancelRetrievePropertiesEx(answer.token)
                raise TargetError(f"vSphere: more than {VM_PAGE * MAX_VM_PAGES} VMs to search for {name}")
        finally:
            view.Destroy()
        if len(named) != 1:
            if named:
                log.warning("watch image: source: %d VMs are named %s; Packer refuses the name too", len(named), name)
            return None
        return f"{named[0].config.instanceUuid}@{named[0]._moId}"


MARKETPLACE_VERSION = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,10}){0,3}")  # Major.Minor.Build


def azure_source_id(target: Any) -> str | None:
    """What ``source_image`` starts Packer's azure-arm from now, in the three forms the target takes:

    - a marketplace URN whose version is ``latest``: the newest version the target's location
      offers (VirtualMachineImages_List, versions compared as numbers, as Azure resolves
      ``latest``), as the URN with that version; a fixed version is itself;
    - a gallery image version id: ``GALLERY/IMAGE/VERSION@<publishedDate>`` (a version deleted and
      published again under its number is another);
    - a managed image id: ``NAME@<digest of what it was captured from>`` (its source VM and OS
      disk, snapshot or blob: ARM gives a managed image no creation time of its own).

    Resources of another subscription are read with the same credential, as Packer would. The
    values leave out what the spec's own ``source_image`` says (its subscription and group: the
    target settings are an input of their own), so that they stay short enough to be recorded as
    they are (build/fingerprint.py ``shown``) and ``build diff`` can name them."""
    from airflow_provider_imagebuild.targets.azure import _get, parse_id

    source = str(target.settings.source_image or "")
    if not source.startswith("/"):
        publisher, offer, sku, version = [*source.split(":"), "", "", "", ""][:4]
        if not version or version.lower() != "latest":
            return source or None
        if not target.location:
            return None
        with target.api(f"VirtualMachineImages_List {publisher}:{offer}:{sku} in {target.location}"):
            listed = target.compute.virtual_machine_images.list(target.location, publisher, offer, sku)
            names = [str(_get(v, "name") or "") for v in itertools.islice(listed, MAX_MARKETPLACE_VERSIONS)]
        numbered = [n for n in names if MARKETPLACE_VERSION.fullmatch(n)]
        newest = max(numbered, key=lambda n: tuple(int(x) for x in n.split(".")), default=None)
        return f"{publisher}:{offer}:{sku}:{newest}" if newest else None
    parts = parse_id(source) or {}
    clients = target.clients
    if str(parts.get("subscription", "")).lower() != clients.subscription_id.lower():
        clients = dataclasses.replace(clients, subscription_id=parts.get("subscription", ""))
    group, kind = parts.get("resource_group", ""), str(parts.get("type", "")).lower()
    if kind == "galleries" and str(parts.get("child_type_2", "")).lower() == "versions":
        gallery, image, number = parts["name"], parts["child_name_1"], parts["child_name_2"]
        with target.api(f"GalleryImageVersions_Get {gallery}/{image}/{number}"):
            found = clients.compute.gallery_image_versions.get(group, gallery, image, number)
        published = _get(found, "properties", "publishingProfile", "publishedDate")
        ready = _get(found, "properties", "provisioningState") == "Succeeded"
        return f"{gallery}/{image}/{number}@{published}" if ready and published else None
    if kind == "images" and not parts.get("children"):
        with target.api(f"Images_Get {parts['name']}"):
            found = clients.compute.images.get(group, parts["name"])
        if _get(found, "properties", "provisioningState") != "Succeeded":
            return None
        disk = _get(found, "properties", "storageProfile", "osDisk") or {}
        origin = [_get(found, "properties", "sourceVirtualMachine", "id")]
        origin += [_get(disk, key, "id") for key in ("snapshot", "managedDisk")] + [_get(disk, "blobUri")]
        digest = hashlib.sha256(repr([str(o or "").lower() for o in origin]).encode()).hexdigest()[:16]
        return f"{parts['name']}@{digest}"
    return None


RESOLVERS: dict[str, Callable[[Any], str | None]] = {
    "aws": aws_source_id,
    "azure": azure_source_id,
    "gcp": gcp_source_id,
    "openstack": openstack_source_id,
    "vsphere": vsphere_source_id,
}


def source_image_id(target: Any) -> str | None:
    """The id ``target``'s source image resolves to now (None: it cannot say, with the cloud's
    reason logged: the watch then records a value unique to this reading, never a failure)."""
    if target.name == "local":
        return local_base_id()
    resolve = RESOLVERS.get(target.name)
    if resolve is None:
        return None
    try:
        return resolve(target)
    except Exception as exc:  # an SDK's own exception too: a watch never fails the fingerprint, it is unavailable
        known = isinstance(exc, ImageBuildError)
        reason = str(exc).splitlines()[0][:300] if str(exc).strip() else ""
        log.warning("watch image: source: %s", reason if known else f"{type(exc).__name__}: {reason}")
        return None
