"""The ``target:`` settings of a vSphere pipeline, checked at parse time (as ``spec/azure``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_imagebuild.spec.boot import BootSpec
from airflow_provider_imagebuild.spec.fields import ConnId, LoginName

# Inventory names: vCenter allows up to 80 characters; '/' separates inventory paths, '%' escapes.
INVENTORY_RE = re.compile(r"[^/%\\\x00-\x1f]{1,80}")
FOLDER_RE = re.compile(r"[^%\\\x00-\x1f]{1,255}")  # a path of names, "templates/golden"


def _names(value: str, what: str, pattern: re.Pattern[str] = INVENTORY_RE) -> str:
    if not pattern.fullmatch(value) or value != value.strip():
        raise ValueError(f"{value!r} is not a vSphere {what} name (1-80 characters, no '/', '%' or '\\\\')")
    return value


class VsphereTargetSpec(BaseModel):
    """Where a vSphere build VM runs and where the image is published (a content library)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # host, port, login, password; ``extra``: {"insecure": true} for a self-signed vCenter, or
    # {"ca_file": "/path/ca.pem"}
    vsphere_conn_id: ConnId = Field(
        default="vsphere_default",
        description="the vCenter's connection: host, port, login, password; extra insecure or ca_file",
    )
    datacenter: str | None = Field(default=None, description="the datacenter to build in")
    cluster: str | None = Field(
        default=None, description="the cluster the build VMs run on (or host: a stand-alone ESXi host)"
    )
    # An ESXi host: a stand-alone one instead of a cluster, or one of the cluster's to place the
    # build's VMs on. A cluster without DRS needs a host for every clone; without this setting the
    # target chooses one (connected, not in maintenance mode, mounting the datastore).
    host: str | None = Field(
        default=None, description="an ESXi host: a stand-alone one, or the cluster's to place VMs on (no DRS)"
    )
    resource_pool: str | None = Field(
        default=None, description="the resource pool below the cluster or host; default its root pool"
    )
    datastore: str | None = Field(default=None, description="the datastore of the build VMs and templates")
    folder: str = Field(default="", description="VM folder below the datacenter's, for build VMs and templates")
    network: str | None = Field(default=None, description="the network of the build VMs' NIC")
    template: str | None = Field(default=None, description="the source VM template the green image is cloned from")
    content_library: str | None = Field(default=None, description="the content library publish adds the template to")
    # vSphere tags (category: tag) attached to the published template; made when missing
    publish_tags: dict[str, str] = Field(
        default_factory=dict, description="vSphere tags on the published template (category: tag)"
    )
    ssh_user: LoginName = Field(default="imagebuild", description="the user Ansible logs in to the build VM as")
    ssh_private_key_file: str | None = Field(
        default=None, description="the private key the template accepts for ssh_user, on the workers"
    )
    keep_checkpoints: list[int] = Field(
        default_factory=list,
        description="checkpoint images kept after the seal (a redo needs one); the others are deleted",
    )
    connection: dict[str, str] = Field(
        default_factory=dict, description="Ansible connection settings for the build VM (a bastion's SSH settings)"
    )
    # the launch test's settings (spec/boot: timeout, verification playbook, user, ssh_address)
    boot: BootSpec = Field(
        default=BootSpec(), description="the launch test's settings (timeout, verification playbook, user, ssh_address)"
    )

    @field_validator("datacenter", "cluster", "host", "datastore", "network", "template", "content_library")
    @classmethod
    def _inventory(cls, value: str | None) -> str | None:
        return None if value is None else _names(value, "inventory")

    @field_validator("publish_tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for category, tag in value.items():
            _names(category, "tag category")
            _names(tag, "tag")
        return value

    @field_validator("resource_pool", "folder")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value:
            if value.startswith("/") or value.endswith("/") or "//" in value:
                raise ValueError(f"{value!r} is not a relative inventory path (names separated by '/')")
            for part in value.split("/"):
                _names(part, "folder or pool")
        return value

    def missing_for(self, actions: set[str]) -> list[str]:
        """The settings the pipeline's target actions need and this spec does not give."""
        needed: list[str] = []
        if actions & {"packer", "ansible", "seal", "launch_test", "publish"}:
            needed += ["datacenter", "datastore"]
            if not self.host:
                needed.append("cluster")
        if "packer" in actions:
            needed.append("template")
        if "publish" in actions:
            needed.append("content_library")
        return [name for name in needed if getattr(self, name) in (None, "")]
