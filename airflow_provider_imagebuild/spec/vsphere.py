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
    vsphere_conn_id: ConnId = "vsphere_default"
    datacenter: str | None = None
    cluster: str | None = None
    # An ESXi host: a stand-alone one instead of a cluster, or one of the cluster's to place the
    # build's VMs on. A cluster without DRS needs a host for every clone; without this setting the
    # target chooses one (connected, not in maintenance mode, mounting the datastore).
    host: str | None = None
    resource_pool: str | None = None  # below the cluster or host; default its root pool
    datastore: str | None = None
    folder: str = ""  # VM folder below the datacenter's, for build VMs and templates
    network: str | None = None
    template: str | None = None  # the source VM template the green image is cloned from
    content_library: str | None = None
    # vSphere tags (category: tag) attached to the published template; made when missing
    publish_tags: dict[str, str] = Field(default_factory=dict)
    ssh_user: LoginName = "imagebuild"
    ssh_private_key_file: str | None = None
    keep_checkpoints: list[int] = Field(default_factory=list)
    connection: dict[str, str] = Field(default_factory=dict)
    # the launch test's settings (spec/boot: timeout, verification playbook, user, ssh_address)
    boot: BootSpec = BootSpec()

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
