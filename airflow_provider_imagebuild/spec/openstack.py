"""The ``target:`` settings of an OpenStack pipeline, and the OpenStack login every OpenStack use
shares (the target, and a Glance publish destination), checked at parse time."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_provider_imagebuild.spec.boot import BootSpec
from airflow_provider_imagebuild.spec.fields import ConnId, LoginName

# Names and ids of flavors, networks, images and key pairs: Nova and Glance allow up to 255
# characters; control characters are refused.
RESOURCE_RE = re.compile(r"[^\x00-\x1f]{1,255}")
PROJECT_RE = re.compile(r"[0-9a-fA-F-]{32,36}")
# Image property names Glance accepts (the metadefs' convention), lower case, at most 255.
PROPERTY_RE = re.compile(r"[a-z][a-z0-9_.:-]{0,254}")
# Properties the provider sets itself: a spec may not set them (that would spoof ownership).
RESERVED_PROPERTIES = ("imagebuild_", "owner_specified.")
# Glance's own namespace: it refuses them, 403 "Attribute '...' is reserved." (glance/api/v2/images.py)
GLANCE_RESERVED = "os_glance_"
# Glance's own image attributes: not properties, so not settable through ``properties``.
GLANCE_ATTRIBUTES = frozenset(
    {"id", "name", "status", "visibility", "protected", "owner", "checksum", "os_hash_algo", "os_hash_value",
     "size", "virtual_size", "disk_format", "container_format", "min_disk", "min_ram", "tags", "locations",
     "created_at", "updated_at", "file", "schema", "self", "direct_url", "os_hidden"}
)  # fmt: skip
CLOUD_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _resource(value: str | None) -> str | None:
    if value is not None and (not RESOURCE_RE.fullmatch(value) or value != value.strip()):
        raise ValueError(f"{value!r} is not an OpenStack name or id (1-255 characters, no control characters)")
    return value


def check_properties(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if not PROPERTY_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not an image property name (lower case letters, digits, '_.:-')")
        if name.startswith(RESERVED_PROPERTIES):
            raise ValueError(f"{name!r} is set by the provider itself (ownership), not by a spec")
        if name.startswith(GLANCE_RESERVED):
            raise ValueError(f"{name!r} is reserved by Glance (os_glance_*), which refuses it")
        if name in GLANCE_ATTRIBUTES:
            raise ValueError(f"{name!r} is an image attribute, not a property")
    return value


class OpenstackLogin(BaseModel):
    """Which OpenStack to talk to: an Airflow connection, or a ``clouds.yaml`` cloud name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # login, password; ``extra``: auth_url (required), project_name or project_id,
    # user_domain_name, project_domain_name, region_name, interface, cacert, insecure
    openstack_conn_id: ConnId = Field(
        default="openstack_default",
        description="an Airflow connection: login, password, extra auth_url, project, domains",
    )
    cloud: str | None = Field(
        default=None, description="a cloud of the worker's clouds.yaml, instead of the connection"
    )
    region: str | None = Field(default=None, description="the region; else the connection's or the cloud's")

    @field_validator("cloud", "region")
    @classmethod
    def _cloud(cls, value: str | None) -> str | None:
        if value is not None and not CLOUD_NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a cloud or region name (letters, digits, '_.-')")
        return value


class OpenstackTargetSpec(OpenstackLogin):
    """Where an OpenStack build server runs and how the final image is published (Glance)."""

    flavor: str | None = Field(default=None, description="the build server's and Packer's flavor")
    network: str | None = Field(default=None, description="the network of the build server's one NIC (name or id)")
    source_image: str | None = Field(
        default=None, description="the Glance image (name or id) the Packer template starts from"
    )
    key_name: str | None = Field(default=None, description="a Nova key pair for SSH to the build server")
    security_groups: list[str] = Field(
        default_factory=list, description="the project's security groups Packer's server and build servers get"
    )
    ssh_user: LoginName = Field(default="cloud-user", description="the user Ansible logs in to the build server as")
    ssh_private_key_file: str | None = Field(
        default=None, description="the private half of key_name's key pair, on the workers"
    )
    # public needs Glance's publicize_image policy, which is the admin role's by default: a member
    # login is refused (an error naming target.visibility); shared or community need no admin
    visibility: Literal["private", "shared", "community", "public"] = Field(
        default="private",
        description="Glance visibility of the published image; public needs the admin role (publicize_image policy)",
    )
    share_with_projects: list[str] = Field(
        default_factory=list, description="projects the published image is shared with (visibility shared)"
    )
    # Glance image properties of the published image: os_distro, os_version, hw_disk_bus...
    properties: dict[str, str] = Field(
        default_factory=dict,
        description="Glance properties of the published image: os_distro, os_version, hw_disk_bus...",
    )
    keep_checkpoints: list[int] = Field(
        default_factory=list,
        description="checkpoint images kept after the seal (a redo needs one); the others are deleted",
    )
    connection: dict[str, str] = Field(
        default_factory=dict, description="Ansible connection settings for the build server (a bastion's SSH settings)"
    )
    # the launch test's settings (spec/boot: timeout, verification playbook, user, ssh_address)
    boot: BootSpec = Field(
        default=BootSpec(), description="the launch test's settings (timeout, verification playbook, user, ssh_address)"
    )

    @field_validator("flavor", "network", "source_image", "key_name")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return _resource(value)

    @field_validator("security_groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for group in value:
            _resource(group)
        return value

    @field_validator("share_with_projects")
    @classmethod
    def _projects(cls, value: list[str]) -> list[str]:
        for project in value:
            if not PROJECT_RE.fullmatch(project):
                raise ValueError(f"{project!r} is not a project id (32 hex digits)")
        if len(set(value)) != len(value):
            raise ValueError("lists a project twice")
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, str]) -> dict[str, str]:
        return check_properties(value)

    @model_validator(mode="after")
    def _sharing(self) -> OpenstackTargetSpec:
        if self.share_with_projects and self.visibility != "shared":
            raise ValueError(
                "share_with_projects: needs visibility: shared (Glance adds members to shared images only)"
            )
        return self

    def missing_for(self, actions: set[str]) -> list[str]:
        """The settings the pipeline's target actions need and this spec does not give."""
        needed: list[str] = []
        if actions & {"packer", "ansible", "seal"}:
            needed += ["flavor", "network"]
        if "packer" in actions:
            needed.append("source_image")
        return [name for name in needed if getattr(self, name) in (None, "")]
