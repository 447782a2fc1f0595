"""A spec's ``publish:`` list: where the sealed image goes, each destination recorded on its own.

::

    publish:
      - catalog                      # the target's own publish (``target`` on any cloud)
      - glance: {openstack_conn_id: openstack_prod, visibility: shared, properties: {os_distro: debian}}
      - name: lab-vcenter            # a name of one's own, when a kind appears twice
        vsphere_library: {vsphere_conn_id: vcenter_lab, library: golden-images}

Without the list a pipeline publishes through its target alone, as before. ``glance`` and
``vsphere_library`` upload the sealed image *file*, so they go with the local target (its qcow2);
a cloud's image is published through its own ``target`` entry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_provider_imagebuild.build.ids import KEY_RE
from airflow_provider_imagebuild.spec.fields import ConnId
from airflow_provider_imagebuild.spec.openstack import OpenstackLogin, _resource, check_properties
from airflow_provider_imagebuild.spec.retention import RetentionSpec
from airflow_provider_imagebuild.spec.vsphere import _names

FILE_KINDS = ("glance", "vsphere_library")  # destinations that upload the sealed image file
KINDS = ("target", "catalog", *FILE_KINDS)


class Nothing(BaseModel):
    """A destination without settings (``catalog: {}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GlanceDestination(OpenstackLogin):
    """An OpenStack Image service: the image file uploaded (or imported), checksums verified."""

    image_name: str | None = Field(
        default=None, description="the image's name in Glance; default <pipeline>-<build id>"
    )
    visibility: Literal["private", "shared", "community", "public"] = Field(
        default="private", description="Glance visibility of the uploaded image (public needs the admin role)"
    )
    properties: dict[str, str] = Field(
        default_factory=dict, description="Glance image properties: os_distro, os_version, hw_disk_bus..."
    )
    # auto: Glance's interoperable import (glance-direct) where the cloud offers it, else upload
    method: Literal["auto", "upload", "glance-direct"] = Field(
        default="auto", description="auto: Glance's interoperable import (glance-direct) where offered, else upload"
    )

    @field_validator("image_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _resource(value)

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, str]) -> dict[str, str]:
        return check_properties(value)


class VsphereLibraryDestination(BaseModel):
    """A vSphere content library: the image converted to a stream-optimized VMDK, described by an
    OVF descriptor, uploaded as an OVF template item."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vsphere_conn_id: ConnId = Field(
        default="vsphere_default", description="the vCenter's connection: host, login, password, TLS settings"
    )
    library: str = Field(description="the content library the OVF template item goes to")
    item_name: str | None = Field(default=None, description="the library item's name; default <pipeline>-<build id>")
    cpus: int = Field(2, ge=1, le=128, description="virtual CPUs of the VM the OVF template describes")
    memory_mb: int = Field(2048, ge=256, le=1_048_576, description="memory in MB of the VM the OVF template describes")
    network: str = Field(default="VM Network", description="the network the OVF template's NIC is on")

    @field_validator("library", "item_name", "network")
    @classmethod
    def _inventory(cls, value: str | None) -> str | None:
        return None if value is None else _names(value, "content library")


class PublishSpec(BaseModel):
    """One destination: exactly one of ``target``, ``catalog``, ``glance``, ``vsphere_library``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None, description="the destination's name in the outputs, when a kind appears twice"
    )
    target: Nothing | None = Field(
        default=None, description="the target's own publish (a cloud's regions, gallery, family...)"
    )
    catalog: Nothing | None = Field(default=None, description="the local target's image catalog")
    glance: GlanceDestination | None = Field(
        default=None, description="an OpenStack Glance the image file is uploaded to (local target)"
    )
    vsphere_library: VsphereLibraryDestination | None = Field(
        default=None, description="a vSphere content library the image file is uploaded to (local target)"
    )
    retention: RetentionSpec | None = Field(
        default=None, description="this destination's published images kept, replacing the pipeline's retention"
    )

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, raw: Any) -> Any:
        """``- catalog`` (a bare kind) is ``- catalog: {}``; ``catalog:`` with nothing too."""
        if isinstance(raw, str) and raw in ("target", "catalog"):
            return {raw: {}}
        if isinstance(raw, dict):
            return {k: ({} if v is None and k in KINDS else v) for k, v in raw.items()}
        return raw

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str | None) -> str | None:
        if value is not None and not KEY_RE.fullmatch(value):
            raise ValueError("must be letters, digits, '_', '.' or '-' (a key of the publish outputs)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> PublishSpec:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        """``target``, ``catalog``, ``glance`` or ``vsphere_library``."""
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    @property
    def label(self) -> str:
        """The destination's name in the publish outputs and the build's metadata."""
        return self.name or self.kind


def publish_problem(destinations: list[PublishSpec], cloud: str, has_publish: bool) -> tuple[str, str] | None:
    """(where, why) the ``publish:`` list does not fit the pipeline, or None."""
    if destinations and not has_publish:
        return "publish", "needs a milestone with action: publish (100)"
    seen: set[str] = set()
    for i, destination in enumerate(destinations):
        where = f"publish.{i}"
        if destination.label in seen:
            return where, f"{destination.label!r} is listed twice; give each a different 'name'"
        seen.add(destination.label)
        if destination.kind == "catalog" and cloud != "local":
            return f"{where}.catalog", f"the catalog is the local target's; on {cloud} use '- target'"
        if destination.kind in FILE_KINDS and cloud != "local":
            return (
                f"{where}.{destination.kind}",
                f"uploads the sealed image file, which only the local target makes; a {cloud} image is "
                "published through its own '- target' entry",
            )
    return None
