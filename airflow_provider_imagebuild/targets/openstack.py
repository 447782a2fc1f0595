"""The OpenStack target: build servers on Nova, checkpoints and the final image as Glance images.

Clients come from :class:`~airflow_provider_imagebuild.clouds.openstack.OpenstackClients` (an
Airflow connection or a ``clouds.yaml`` cloud); openstacksdk is imported only when a milestone runs.
Every name Nova, Glance and Packer see comes from :mod:`.openstack_names` (``<pipeline>-<digest>-...``,
within Nova's and Glance's 255 characters).

- The green image is made by Packer's ``openstack`` builder (the shipped
  ``rhel8-openstack.pkr.hcl``) from the spec's ``source_image``, as an image named by the build; the
  template gets the network, the security groups, TLS verification and the interface as variables
  (the builder reads none of them from its environment) and writes the build's marks on the image;
  Packer's artifact is the image id, claimed (given this build's properties) when Packer reports it.
  A retried milestone adopts the image an earlier attempt's Packer made (:meth:`packer_artifacts`):
  Glance allows duplicate names, so Packer would make a second one.
- Build hosts are servers ``<pipeline>-<digest>-h<checkpoint>`` booted from the latest checkpoint
  image with the spec's flavor, network, key pair and security groups (Nova's ``default`` group
  when none; one the project lacks is Nova's 400, an error naming the target); the host id is the
  server id; ``alive`` is a lookup of it with this build's metadata, ``ACTIVE`` (a ``SHUTOFF`` one,
  left by a checkpoint that stopped it and was killed before starting it again, is started).
- **Checkpoints are server snapshots** (Nova ``createImage``, an image ``<pipeline>-<digest>-cp<ms>``),
  taken after stopping the server so that the disk is consistent, which is then started again. An
  image outlives its server, which is what a relaunch needs.
- **Reuse** (#32): a new build starts from an earlier build's checkpoint by copying it into an image
  of its own (:meth:`OpenstackTarget.adopt_checkpoint`, ``<pipeline>-<digest>-cp<ms>`` of the new
  build with ``imagebuild_copied_from``): the data is streamed through the worker
  (:mod:`.openstack_copy`; Glance has no server-side copy into a new image) and checked against
  the source's size and digests; the source's image stays the source build's.
- Seal runs the seal playbook, stops the server and snapshots it into the final image, named from
  the pipeline and the build's creation time (stable on retry).
- Publish sets the image's visibility, adds the ``share_with_projects`` as members (accepting is
  the consumer's side) and sets the spec's ``properties`` (``os_distro``, ``os_version``,
  ``hw_disk_bus``...) with the build's own. ``public`` needs Glance's ``publicize_image`` policy
  (admin by default): its 403 is an error naming ``target.visibility``.
- Ownership: a server or image is this build's only if it belongs to the login's project (the
  server's ``tenant_id``, the image's ``owner``: set by Nova and Glance from the token, never by a
  client) **and** carries ``imagebuild_key`` (a digest of the pipeline and build id) and
  ``imagebuild_managed_by`` in its metadata or properties. The key alone proves nothing: anyone can
  compute it, give an image of their own project those properties and make it public, community
  or shared, and Glance shows such images to every project (an admin login sees every project's
  servers too). Nothing else is booted from, snapshotted, published or deleted.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.openstack import PUBLICIZE_NEEDS, OpenstackClients, openstack_errors
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, NotFound, TargetError
from airflow_provider_imagebuild.spec.openstack import OpenstackTargetSpec
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
from airflow_provider_imagebuild.targets.openstack_copy import (
    copied_properties,
    create_image,
    glance_json,
    same_data,
    stream_data,
)
from airflow_provider_imagebuild.targets.openstack_names import OpenstackNames

log = logging.getLogger(__name__)

KEY = "imagebuild_key"
MANAGED = "imagebuild_managed_by"
SERVER_WAIT_S = 1800  # boot, stop, start
# Nova answers 400 for a key pair or security group the login lacks (and for a name or metadata it
# refuses): the spec's settings, which a retry does not change
BOOT_REFUSED = "Nova refused the build server (target.key_name, security_groups, flavor, network)"
IMAGE_WAIT_S = 3600  # a snapshot of a large disk
COPY_WAIT_S = 3600  # a checkpoint copied into a new build's image: the transfer, then until it is active
COPIED_FROM = "imagebuild_copied_from"  # on a copied checkpoint: the source image's id (#32)


class OpenstackTarget(DigestNames, LaunchTestTarget, LeakCollecting):
    name = "openstack"
    poll_s = 2.0  # between status reads while waiting (tests lower it)

    def __init__(
        self, settings: OpenstackTargetSpec, *, pipeline: str, image_type: str, clients: OpenstackClients
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.image_type = image_type
        self.clients = clients
        self.region = ""

    @classmethod
    def from_settings(cls, settings: Any, *, pipeline: str, image_type: str) -> OpenstackTarget:
        if not isinstance(settings, OpenstackTargetSpec):
            raise InvalidInput("target", "an OpenStack pipeline needs OpenStack target settings")
        return cls(settings, pipeline=pipeline, image_type=image_type, clients=OpenstackClients.from_settings(settings))

    @property
    def conn(self) -> Any:
        return self.clients.conn

    def marks(self, build: BuildRecord, role: str) -> dict[str, str]:
        """Server metadata and image properties that make a resource this build's."""
        return {KEY: self.key(build), MANAGED: MANAGED_BY, "imagebuild_build": build.build_id[:255],
                "imagebuild_pipeline": self.pipeline, "imagebuild_role": role}  # fmt: skip

    def _is_builds(self, build: BuildRecord, values: Mapping[str, Any] | None) -> bool:
        """The build's marks: half of the proof (the project is the other, see below)."""
        values = values or {}
        return values.get(KEY) == self.key(build) and values.get(MANAGED) == MANAGED_BY

    def _is_builds_image(self, build: BuildRecord, image: Any) -> bool:
        return self.clients.in_project(image.owner) and self._is_builds(build, image.properties)

    def _is_builds_server(self, build: BuildRecord, server: Any) -> bool:
        return self.clients.in_project(server.project_id) and self._is_builds(build, server.metadata)

    # -- lookups ---------------------------------------------------------------------------------
    def _required(self, field: str) -> str:
        value = getattr(self.settings, field)
        if not value:
            raise InvalidInput(f"target.{field}", "is required for a build server on OpenStack")
        return str(value)

    def _flavor_id(self) -> str:
        name = self._required("flavor")
        try:
            with openstack_errors(f"find flavor {name}"):
                return str(self.conn.compute.find_flavor(name, ignore_missing=False).id)
        except NotFound:
            raise InvalidInput("target.flavor", f"{name} is not a flavor of this project") from None

    def _network_id(self) -> str:
        name = self._required("network")
        try:
            with openstack_errors(f"find network {name}"):
                return str(self.conn.network.find_network(name, ignore_missing=False).id)
        except NotFound:
            raise InvalidInput("target.network", f"{name} is not a network this project can use") from None

    def _image(self, image_id: str) -> Any:
        try:
            with openstack_errors(f"image {image_id}"):
                return self.conn.image.get_image(image_id)
        except NotFound:
            return None

    def _owned_image(self, build: BuildRecord, image_id: str) -> Any:
        image = self._image(image_id) if image_id else None
        if image is None or not self._is_builds_image(build, image):
            return None
        return image

    def _server(self, server_id: str) -> Any:
        try:
            with openstack_errors(f"server {server_id}"):
                return self.conn.compute.get_server(server_id)
        except NotFound:
            return None

    def _owned_server(self, build: BuildRecord, server_id: str) -> Any:
        server = self._server(server_id) if server_id else None
        if server is None or not self._is_builds_server(build, server) or server.status == "DELETED":
            return None
        return server

    def _named_servers(self, build: BuildRecord, name: str) -> list[Any]:
        with openstack_errors(f"list servers {name}"):  # Nova's name filter is a regular expression
            found = list(self.conn.compute.servers(details=True, name=f"^{re.escape(name)}$"))
        return [s for s in found if s.name == name and self._is_builds_server(build, s)]

    def _named_images(self, build: BuildRecord, name: str) -> list[Any]:
        with openstack_errors(f"list images {name}"):
            found = list(self.conn.image.images(name=name))
        return [i for i in found if i.name == name and self._is_builds_image(build, i)]

    # -- waiting ---------------------------------------------------------------------------------
    def _wait_server(self, server: Any, status: str) -> Any:
        with openstack_errors(f"server {server.name} to be {status}"):
            return self.conn.compute.wait_for_server(
                server, status=status, failures=["ERROR"], interval=self.poll_s, wait=SERVER_WAIT_S
            )

    def _power(self, server: Any, on: bool) -> Any:
        if on and server.status == "SHUTOFF":
            with openstack_errors(f"start {server.name}"):
                self.conn.compute.start_server(server)
            return self._wait_server(server, "ACTIVE")
        if not on and server.status == "ACTIVE":
            with openstack_errors(f"stop {server.name}"):
                self.conn.compute.stop_server(server)
            return self._wait_server(server, "SHUTOFF")
        return server

    def _delete_server(self, server: Any) -> None:
        with openstack_errors(f"delete server {server.name}"):
            self.conn.compute.delete_server(server, ignore_missing=True)
            self.conn.compute.wait_for_delete(server, interval=self.poll_s, wait=SERVER_WAIT_S)
        log.info("deleted server %s (%s)", server.name, server.id)

    def _update_image(self, image: Any, properties: Mapping[str, str], **attributes: Any) -> None:
        """Add or change image properties, keeping the others. The SDK sends the difference as a
        JSON patch; properties it does not model must go in one ``properties`` mapping, or it
        removes the ones not given (the ownership marks among them). Making an image public is
        Glance's ``publicize_image`` policy (admin by default): its refusal names target.visibility."""
        refused = {403: ("target.visibility", PUBLICIZE_NEEDS)} if attributes.get("visibility") == "public" else None
        with openstack_errors(f"update image {image.id}", refused):
            self.conn.image.update_image(image, properties={**(image.properties or {}), **properties}, **attributes)

    def _delete_image(self, image: Any) -> None:
        with openstack_errors(f"delete image {image.name}"):
            self.conn.image.delete_image(image, ignore_missing=True)
        log.info("deleted image %s (%s)", image.name, image.id)

    # -- the target interface --------------------------------------------------------------------
    def owns_image(self, build: BuildRecord, image: str) -> bool:
        return self._owned_image(build, image) is not None

    def names(self, build: BuildRecord) -> OpenstackNames:
        return OpenstackNames(self.pipeline, build)

    def packer_image_name(self, build: BuildRecord, pipeline: str, milestone: int) -> str:
        return self.names(build).packer_image(milestone)

    def packer_source_image(self, image: str) -> str:
        """Packer's openstack builder takes the source image by id: a name is looked up (one
        active image of that name, or the spec's error)."""
        if not image:
            return image
        try:
            with openstack_errors(f"find image {image}"):
                return str(self.conn.image.find_image(image, ignore_missing=False).id)
        except NotFound:
            raise InvalidInput("target.source_image", f"{image} is not an image this project can use") from None

    def packer_vars(self) -> dict[str, str]:
        """The template's view of the target: flavor, region, the network's id and the security
        groups (lists as JSON, decoded by the template: a var file holds strings), and what the
        builder would not take from its environment (TLS verification, the interface)."""
        s = self.settings
        network = self._network_id() if s.network else ""
        return {
            "openstack_flavor": s.flavor or "",
            "openstack_network": network,
            "openstack_networks": json.dumps([network] if network else []),
            "openstack_security_groups": json.dumps(list(s.security_groups)),
            "openstack_region": s.region or "",
            **self.clients.packer_access(),
        }

    def packer_env(self) -> dict[str, str]:
        return self.clients.packer_env()

    def claim_images(self, build: BuildRecord, images: Mapping[str, str], milestone: int) -> None:
        """Give the image Packer's openstack builder made this build's properties (it must have the
        name the build asked for and be of the login's project; one another build marked is refused)."""
        expected = self.packer_image_name(build, self.pipeline, milestone)
        for image_id in images.values():
            image = self._image(image_id)
            if image is None:
                raise TargetError(f"OpenStack: the image {image_id} Packer reported does not exist")
            if image.name != expected:
                raise InvalidInput(
                    "packer artifact", f"{image_id} ({image.name}) is not the image this build asked for"
                )
            if not self.clients.in_project(image.owner):
                raise InvalidInput(
                    "packer artifact", f"{image_id} is an image of another project ({image.owner}), not one Packer made"
                )
            if (image.properties or {}).get(KEY) not in (None, self.key(build)):
                raise InvalidInput("packer artifact", f"{image_id} belongs to another build")
            self._update_image(image, self.marks(build, "checkpoint"))

    def packer_artifacts(self, build: BuildRecord, milestone: int) -> dict[str, str]:
        """The image an earlier attempt's Packer run made, found by its name in the login's project
        and proven by the properties the shipped template writes (``imagebuild_key``,
        ``imagebuild_managed_by``, ``imagebuild_milestone``). Glance allows duplicate names, so Packer
        would not stop at it: a retry would make a second image and leave the first unowned. An
        active one is adopted; one not active yet (a snapshot cut short with its worker), or a
        second active one, is deleted. An image of that name in the project that the template did
        not mark is refused, naming it, and left alone; other projects' images are none of ours."""
        name = self.packer_image_name(build, self.pipeline, milestone)
        with openstack_errors(f"list images {name}"):
            listed = list(self.conn.image.images(name=name))
        found = [i for i in listed if i.name == name and self.clients.in_project(i.owner)]
        for image in found:
            props = image.properties or {}
            if not self._is_builds(build, props) or props.get("imagebuild_milestone") != str(milestone):
                raise InvalidInput(
                    "packer artifact",
                    f"an image {name} ({image.id}) of this project is not build {build.build_id}'s milestone "
                    f"{milestone} image (no such imagebuild_key/imagebuild_milestone properties); it is left alone: "
                    "rename or delete it",
                )
        adopted = None
        for image in sorted(found, key=lambda i: (i.status == "active", str(i.created_at or "")), reverse=True):
            if image.status == "active" and adopted is None:
                adopted = image
                continue
            log.info("deleting image %s (%s, %s): an earlier attempt's Packer artifact", name, image.id, image.status)
            self._delete_image(image)
        return {"": str(adopted.id)} if adopted is not None else {}

    def launch(self, build: BuildRecord, checkpoint: Checkpoint) -> Host:
        image = self._owned_image(build, checkpoint.image)
        if image is None:
            raise InvalidInput(
                f"milestones.{checkpoint.code}.outputs.checkpoint_image",
                f"{checkpoint.image} is not build {build.build_id}'s image (missing, of another project, or "
                "without this build's key); a build server is booted only from the build's own checkpoints",
            )
        name = self.names(build).server(checkpoint.code)
        for earlier in self._named_servers(build, name):  # an earlier attempt's, never recorded
            self._delete_server(earlier)
        attrs: dict[str, Any] = {
            "name": name,
            "image_id": image.id,
            "flavor_id": self._flavor_id(),
            "networks": [{"uuid": self._network_id()}],
            "metadata": self.marks(build, "buildhost"),
        }
        if self.settings.key_name:
            attrs["key_name"] = self.settings.key_name
        if self.settings.security_groups:
            attrs["security_groups"] = [{"name": group} for group in self.settings.security_groups]
        with openstack_errors(f"boot {name}", {400: ("target", BOOT_REFUSED)}):
            server = self.conn.compute.create_server(**attrs)
        server = self._wait_server(server, "ACTIVE")
        address = self._address(server, required=not self.settings.connection)
        log.info("build server %s (%s, %s) booted from %s", name, server.id, address or "-", image.id)
        return Host(str(server.id), address, str(image.id), checkpoint.code, checkpoint.code)

    @staticmethod
    def _address(server: Any, required: bool) -> str:
        """The address Ansible reaches: a floating IP, else the first fixed IPv4 one (none is an
        error unless the spec's ``connection`` reaches the server another way)."""
        found = [a for addresses in (server.addresses or {}).values() for a in addresses]
        for kind in ("floating", "fixed"):
            for address in found:
                if address.get("OS-EXT-IPS:type", "fixed") == kind and address.get("version", 4) == 4:
                    return str(address["addr"])
        if server.access_ipv4 or not required:
            return str(server.access_ipv4 or "")
        raise TargetError(f"OpenStack: server {server.name} has no IPv4 address")

    def alive(self, build: BuildRecord, host: Host) -> bool:
        server = self._owned_server(build, host.id)
        if server is None or server.status in ("ERROR", "SOFT_DELETED", "SHELVED_OFFLOADED"):
            return False
        if server.status == "SHUTOFF":  # stopped for a checkpoint whose try was killed
            self._power(server, on=True)
            return True
        return bool(server.status == "ACTIVE")

    def ansible_vars(self, host: Host) -> dict[str, Any]:
        return ssh_ansible_vars(self.settings, host)

    def park_host(self, build: BuildRecord, host: Host) -> str:
        """Shelve the build server (the project's and the build's, by its marks): Nova offloads it,
        so it holds no compute host and costs only its kept disk; where the cloud's policy does not
        let the login shelve (403), stop it instead."""
        server = self._owned_server(build, host.id)
        if server is None or server.status in ("ERROR", "SOFT_DELETED"):
            return ""
        if server.status in ("SHELVED", "SHELVED_OFFLOADED"):
            return "shelved"
        try:
            with openstack_errors(f"shelve {server.name}"):
                self.conn.compute.shelve_server(server)
        except InvalidInput as exc:  # 401/403: the policy refuses shelving to this login
            log.info("server %s not shelved (%s); stopped instead", server.name, exc)
            self._power(server, on=False)
            return "stopped"
        log.info("shelved build server %s (%s)", server.name, server.id)
        return "shelved"

    def unpark_host(self, build: BuildRecord, host: Host) -> Host | None:
        """Unshelve (or start) the build server and wait until it is active; a server unshelved may
        land on another compute host with another address, so the address is read again."""
        server = self._owned_server(build, host.id)
        if server is None or server.status in ("ERROR", "SOFT_DELETED"):
            return None
        if server.status in ("SHELVED", "SHELVED_OFFLOADED"):
            with openstack_errors(f"unshelve {server.name}"):
                self.conn.compute.unshelve_server(server)
            server = self._wait_server(server, "ACTIVE")
        else:
            server = self._power(server, on=True)
        return replace(host, address=self._address(server, required=True))

    def capture(self, build: BuildRecord, host: Host, milestone: int, final: bool) -> dict[str, Any]:
        server = self._owned_server(build, host.id)
        if server is None:
            raise InvalidInput("host_id", f"{host.id} is not a build server of build {build.build_id} (or is gone)")
        server = self._power(server, on=False)  # a consistent disk
        name = self.names(build).final() if final else self.names(build).checkpoint(milestone)
        for earlier in self._named_images(build, name):  # an earlier try's: an older state
            self._delete_image(earlier)
        try:
            with openstack_errors(f"snapshot {server.name}"):
                image = self.conn.compute.create_server_image(
                    server, name, metadata=self.marks(build, "final" if final else "checkpoint")
                )
            with openstack_errors(f"image {name} to be active"):
                image = self.conn.image.wait_for_status(
                    image, status="active", failures=["killed", "deleted", "deactivated"],
                    interval=self.poll_s, wait=IMAGE_WAIT_S,
                )  # fmt: skip
        finally:
            if not final:
                self._power(self._owned_server(build, host.id) or server, on=True)
        if not self._is_builds_image(build, image):
            raise TargetError(f"OpenStack: snapshot {image.id} lacks the build's properties (Nova dropped them)")
        log.info(
            "captured %s %s (%s) after milestone %d", "image" if final else "checkpoint", name, image.id, milestone
        )
        if final:
            return {IMAGE_OUTPUT: str(image.id), "image_name": name, **_stored_gb(image, "final_gb")}
        return {CHECKPOINT_OUTPUT: str(image.id), "image_name": name, **_stored_gb(image, "checkpoint_gb")}

    def adopt_checkpoint(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """A copy of ``source``'s checkpoint image as ``build``'s own: ``<stem>-cp<ms>`` of ``build``,
        with its marks and ``imagebuild_copied_from`` (the source image's id), made by streaming the
        data through the worker (:mod:`.openstack_copy`: Glance has no server-side copy into a new
        image) and kept only once Glance's size and digests of it equal the source's.

        The source is proven first, as everything is here: an active image of the login's project
        with ``source``'s key, this pipeline, ``source``'s build id and the checkpoint role; the
        record naming it proves nothing (nothing is copied otherwise). The checkpoint is a Nova
        server snapshot, an image of its own whose data Glance holds (the build servers boot from
        images, not volumes): one without data (a volume-backed server's snapshot points at a
        Cinder snapshot instead) cannot be copied and is refused.

        Why a copy rather than claiming the source image (re-marking it as ``build``'s): the
        checkpoint stays the source build's, which may still need it (its ``keep_checkpoints``
        for a redo, a reset of it to a later milestone), and other builds of the pipeline may
        start from it too (two builds the same night, the next night when this one fails); a
        claim would leave the source's record naming an image it no longer owns. The cost is the
        transfer of the image's bytes, in exchange for the milestones not run again.

        Idempotent: a retry finds the copy an earlier attempt made by its name, ``build``'s marks
        and ``imagebuild_copied_from``, kept if it holds the source's data; any other image of
        ``build``'s under that name (a copy cut short) is deleted first. A copy that fails
        (refused, cut short, not active within COPY_WAIT_S, data that differs) is deleted before
        the :class:`TargetError` is raised, so nothing is left that no record names."""
        where = f"milestones.{checkpoint.code}.outputs.{CHECKPOINT_OUTPUT}"
        image = self._owned_image(source, checkpoint.image)
        props = (image.properties or {}) if image is not None else {}
        if (
            image is None
            or props.get("imagebuild_pipeline") != self.pipeline
            or props.get("imagebuild_build") != source.build_id[:255]
            or props.get("imagebuild_role") != "checkpoint"
        ):
            raise InvalidInput(
                where,
                f"{checkpoint.image} is not build {source.build_id}'s checkpoint image (missing, of another project, "
                f"pipeline or build, or not a checkpoint); nothing is copied",
            )
        if image.status != "active":
            raise InvalidInput(where, f"{checkpoint.image} of build {source.build_id} is {image.status}, not active; "
                               "nothing is copied")  # fmt: skip
        shown = glance_json(self.conn, str(image.id))
        if not isinstance(image.size, int) or image.size <= 0 or "block_device_mapping" in shown:
            raise InvalidInput(
                where, f"{checkpoint.image} of build {source.build_id} holds its disk outside Glance (a volume-backed "
                "server's snapshot: block_device_mapping, no data); nothing is copied",
            )  # fmt: skip
        name = self.names(build).checkpoint(checkpoint.code)
        kept = None
        for earlier in self._named_images(build, name):  # an earlier attempt's
            props = earlier.properties or {}
            done = earlier.status == "active" and props.get(COPIED_FROM) == str(image.id)
            if kept is None and done and same_data(image, earlier) is None:
                kept = earlier
                continue
            log.info("deleting image %s (%s, %s): a copy an earlier attempt did not finish", name, earlier.id,
                     earlier.status)  # fmt: skip
            self._delete_image(earlier)
        if kept is not None:
            log.info("checkpoint %s (%s) of build %s is the copy an earlier attempt made of %s", name, kept.id,
                     build.build_id, image.id)  # fmt: skip
            return {CHECKPOINT_OUTPUT: str(kept.id), "image_name": name, **_stored_gb(kept, "checkpoint_gb")}
        body = {
            **copied_properties(shown),
            "name": name,
            "disk_format": image.disk_format,
            "container_format": image.container_format,
            "min_disk": int(image.min_disk or 0),
            "min_ram": int(image.min_ram or 0),
            "visibility": "private",
            **self.marks(build, "checkpoint"),
            COPIED_FROM: str(image.id),
        }
        log.info("copying checkpoint %s (%s, %d bytes) of build %s into %s of build %s", image.name, image.id,
                 image.size, source.build_id, name, build.build_id)  # fmt: skip
        copy_id = ""
        try:
            copy_id = create_image(self.conn, body)
            stream_data(self.conn, image, copy_id, time.monotonic() + COPY_WAIT_S)
            with openstack_errors(f"image {name} to be active"):
                copy = self.conn.image.wait_for_status(
                    self.conn.image.get_image(copy_id), status="active", interval=self.poll_s, wait=COPY_WAIT_S,
                    failures=["queued", "killed", "deleted", "deactivated"],  # queued: Glance gave the upload up
                )  # fmt: skip
            why = same_data(image, copy)
            if why is not None:
                raise TargetError(f"OpenStack: the copy {name} of image {image.id} is not its data: {why}")
        except ImageBuildError as exc:
            self._forget_copy(build, name, copy_id)
            raise TargetError(f"OpenStack: checkpoint {image.id} of build {source.build_id} was not copied "
                              f"(the half-made copy is deleted): {exc}") from None  # fmt: skip
        except BaseException:
            self._forget_copy(build, name, copy_id)
            raise
        log.info("checkpoint %s (%s) of build %s copied from %s", name, copy.id, build.build_id, image.id)
        return {CHECKPOINT_OUTPUT: str(copy.id), "image_name": name, **_stored_gb(copy, "checkpoint_gb")}

    def _forget_copy(self, build: BuildRecord, name: str, copy_id: str) -> None:
        """Delete what a failed copy made: the image it created, and any other of ``build``'s under
        its name (a create whose answer was lost). A failure here is logged: the error being raised
        says more, and the leak collector finds the image by its marks."""
        try:
            made = [i for i in [self._owned_image(build, copy_id)] if i is not None]
            for image in {i.id: i for i in made + self._named_images(build, name)}.values():
                self._delete_image(image)
        except ImageBuildError as exc:
            log.warning("the half-made copy %s (%s) was not deleted: %s", name, copy_id or "-", exc)

    def discard(self, build: BuildRecord, images: list[str]) -> list[str]:
        removed = []
        for image_id in images:
            image = self._owned_image(build, image_id)
            if image is None:
                log.info("checkpoint %s is gone or not build %s's; left alone", image_id, build.build_id)
                continue
            if (image.properties or {}).get("imagebuild_published") == "true":
                # Publish marks the sealed image first, then shares it: a publish that failed
                # halfway leaves an image people may already boot, which only retention removes.
                log.warning("image %s is published (imagebuild_published); left to retention", image_id)
                continue
            self._delete_image(image)
            removed.append(image_id)
        return removed

    def publish(self, build: BuildRecord, image: str) -> dict[str, Any]:
        s = self.settings
        found = self._owned_image(build, image)
        if found is None or found.status != "active":
            raise InvalidInput(
                "milestones.95.outputs.image_id",
                f"{image} is not build {build.build_id}'s active image (of another project, or no key of this "
                "build); it is not published",
            )
        properties = {**s.properties, "imagebuild_image_type": self.image_type, "imagebuild_published": "true",
                      **{f"imagebuild_{k.lower()}": v for k, v in built_with_tags(build).items()}}  # fmt: skip
        self._update_image(found, properties, visibility=s.visibility)
        members = []
        for project in s.share_with_projects:
            try:
                with openstack_errors(f"share image {image} with {project}"):
                    self.conn.image.get_member(project, found)
            except NotFound:
                with openstack_errors(f"share image {image} with {project}"):
                    self.conn.image.add_member(found, member_id=project)
            members.append(project)
        log.info("published image %s (%s), visibility %s", found.name, image, s.visibility)
        return {"image_name": found.name, "visibility": s.visibility, "members": members, "properties": properties}

    # -- the launch test (targets/launch.py) ---------------------------------------------------------
    def _is_test_server(self, build: BuildRecord, server: Any) -> bool:
        return self._is_builds_server(build, server) and (server.metadata or {}).get("imagebuild_role") == ROLE

    def leftover_test_instances(self, build: BuildRecord) -> list[str]:
        """The build's test servers by name, kept only with the build's marks in the login's own
        project (an admin login lists every project's: another project's are never taken)."""
        found = self._named_servers(build, self.names(build).test_server())
        return [str(s.id) for s in found if self._is_test_server(build, s) and s.status != "DELETED"]

    def launch_test_instance(self, build: BuildRecord, image: str) -> str:
        name = self.names(build).test_server()
        attrs: dict[str, Any] = {
            "name": name,
            "image_id": image,
            "flavor_id": self._flavor_id(),
            "networks": [{"uuid": self._network_id()}],
            "metadata": self.marks(build, ROLE),
        }
        if self.settings.key_name:
            attrs["key_name"] = self.settings.key_name
        if self.settings.security_groups:
            attrs["security_groups"] = [{"name": group} for group in self.settings.security_groups]
        with openstack_errors(f"boot {name} (launch test)", {400: ("target", BOOT_REFUSED)}):
            return str(self.conn.compute.create_server(**attrs).id)

    def test_instance(self, build: BuildRecord, instance_id: str) -> TestInstance | None:
        server = self._owned_server(build, instance_id)
        if server is None or not self._is_test_server(build, server):
            return None
        if server.status == "ACTIVE":
            return TestInstance(instance_id, RUNNING, self._address(server, required=False))
        if server.status in ("BUILD", "REBUILD", "REBOOT", "HARD_REBOOT"):
            return TestInstance(instance_id, PENDING)
        fault = (getattr(server, "fault", None) or {}).get("message", "")
        return TestInstance(instance_id, STOPPED, detail=f"{server.status} {fault}".strip())

    def test_instance_console(self, build: BuildRecord, instance_id: str) -> bytes | None:
        """Nova's os-getConsoleOutput: the server's console log (the last lines Nova keeps)."""
        with openstack_errors(f"console output of {instance_id}"):
            found = self.conn.compute.get_server_console_output(instance_id)
        return str(found.get("output") or "").encode()

    def delete_test_instance(self, build: BuildRecord, instance_id: str) -> None:
        """Delete the server once it is proven this build's test server (project and marks); not
        waited for (its deletion is Nova's from there on; a leftover is found by name next time)."""
        server = self._owned_server(build, instance_id)
        if server is None or not self._is_test_server(build, server):
            return
        with openstack_errors(f"delete server {server.name} (launch test)"):
            self.conn.compute.delete_server(server, ignore_missing=True)
        log.info("deleted test server %s (%s)", server.name, server.id)

    def cleanup(self, build: BuildRecord, host: Host) -> None:
        """Delete the build server, and what earlier, lost hosts of the build left."""
        server = self._owned_server(build, host.id)
        if server is not None:
            self._delete_server(server)
        for code in sorted(checkpoint_images(build)):
            for orphan in self._named_servers(build, self.names(build).server(code)):
                self._delete_server(orphan)

    # -- the leak collector (targets/leaks.py) -------------------------------------------------------
    def build_key(self, rec: BuildRecord) -> str:
        return self.key(rec)

    def _pipelines(self, marks: Mapping[str, Any] | None) -> bool:
        marks = marks or {}
        return marks.get(MANAGED) == MANAGED_BY and marks.get("imagebuild_pipeline") == self.pipeline

    def _resource(self, kind: str, found: Any, marks: Mapping[str, Any], created: Any, size: str = "") -> Resource:
        return Resource(kind, str(found.id), "", self.pipeline, str(marks.get("imagebuild_build") or ""),
                        parse_time(created), role=str(marks.get("imagebuild_role") or ""), size=size,
                        build_key=str(marks.get(KEY) or ""))  # fmt: skip

    def owned_resources(self) -> list[Resource]:
        """Servers and images of the login's project with ``imagebuild_managed_by`` and this
        pipeline in their metadata or properties (an admin login that lists other projects' too
        never gets them: the project is checked on each)."""
        found: list[Resource] = []
        with openstack_errors("list servers (gc)"):
            servers = list(self.conn.compute.servers(details=True))
        for server in servers:
            ours = self.clients.in_project(server.project_id) and self._pipelines(server.metadata)
            if ours and server.status not in ("DELETED", "SOFT_DELETED"):
                flavor = getattr(server.flavor, "original_name", None) or ""
                found.append(self._resource("server", server, server.metadata, server.created_at, str(flavor)))
        with openstack_errors("list images (gc)"):
            images = list(self.conn.image.images())
        for image in images:
            if self.clients.in_project(image.owner) and self._pipelines(image.properties):
                found.append(self._resource("image", image, image.properties or {}, image.created_at))
        return found

    def delete_resource(self, resource: Resource) -> bool:
        """Read again by id; deleted only while still in the login's project with the same marks
        (managed by, pipeline, build, build key)."""
        if resource.kind == "server":
            server = self._server(resource.id)
            marks = server.metadata if server is not None and self.clients.in_project(server.project_id) else None
            if not self._same(resource, marks):
                return False
            with openstack_errors(f"delete server {server.name} (gc)"):
                self.conn.compute.delete_server(server, ignore_missing=True)
        elif resource.kind == "image":
            image = self._image(resource.id)
            marks = image.properties if image is not None and self.clients.in_project(image.owner) else None
            if not self._same(resource, marks):
                return False
            self._delete_image(image)
        else:
            raise InvalidInput("resource", f"the openstack target does not collect {resource.kind}s")
        log.info("deleted leaked %s %s", resource.kind, resource.id)
        return True

    def _same(self, resource: Resource, marks: Mapping[str, Any] | None) -> bool:
        marks = marks or {}
        return (
            self._pipelines(marks)
            and str(marks.get("imagebuild_build") or "") == resource.build_id
            and str(marks.get(KEY) or "") == resource.build_key
        )


def _stored_gb(image: Any, key: str) -> dict[str, float]:
    """What Glance stores of the image (its ``size``, bytes), in GB under ``key``, for the cost
    (build/cost.py); {} when Glance does not say."""
    size = getattr(image, "size", None)
    return {key: round(int(size) / 1e9, 9)} if isinstance(size, int) and size > 0 else {}  # to the byte
