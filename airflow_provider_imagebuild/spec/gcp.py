"""The ``target:`` settings of a Google Cloud pipeline, checked at parse time (as ``spec/azure``)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_provider_imagebuild.clouds.gcp import PROJECT_RE, STORAGE_LOCATION_RE, ZONE_RE
from airflow_provider_imagebuild.spec.boot import BootSpec
from airflow_provider_imagebuild.spec.fields import ConnId, LoginName

NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)  # images, families, instances
MACHINE_TYPE_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,62}", re.ASCII)
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}", re.ASCII)
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}", re.ASCII)
MEMBER_RE = re.compile(r"(user|group|serviceAccount|domain):[A-Za-z0-9._%+@-]{3,200}", re.ASCII)
SERVICE_ACCOUNT_RE = re.compile(r"[a-z0-9-]+@[a-z0-9.-]+\.iam\.gserviceaccount\.com|default", re.ASCII)
NETWORK_PATH_RE = re.compile(
    r"(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/(global|regions/[a-z0-9-]+)/[a-zA-Z]+/)?[a-z][-a-z0-9]{0,62}"
)
RESERVED_LABELS = {"imagebuild-key", "imagebuild-build", "imagebuild-pipeline", "imagebuild-milestone",
                   "imagebuild-role", "managed-by"}  # fmt: skip
MAX_USER_LABELS = 56  # 64 per resource; the build sets 6, and built-with-* ones while there is room


class Deprecation(BaseModel):
    """What happens to the family's previous image when a new one is published: its deprecation
    status is set (``images.deprecate``). The dates are what Compute Engine's DeprecationStatus
    calls "only informational": it changes no image on them, and neither does the provider (a
    build's tasks delete only what the build made; retention belongs to the watchdog)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["DEPRECATED", "OBSOLETE", "DELETED"] = Field(
        default="DEPRECATED",
        description="set now; OBSOLETE and DELETED images are refused for new disks, none is deleted",
    )
    obsolete_after_days: int | None = Field(
        default=None, ge=1, le=3650,
        description="recorded as the 'obsolete' date, informational only: nothing makes the image obsolete then",
    )  # fmt: skip
    delete_after_days: int | None = Field(
        default=None, ge=1, le=3650,
        description="recorded as the 'deleted' date, informational only: nothing deletes the image then",
    )  # fmt: skip


class GcpTargetSpec(BaseModel):
    """Where a Compute Engine build host runs and where the image is published (an image family)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gcp_conn_id: ConnId = Field(
        default="google_cloud_default", description="the Google provider's connection: its key, its project"
    )
    project: str | None = Field(default=None, description="the project to build in; else the connection's project")
    zone: str | None = Field(default=None, description="the zone the build host and Packer's instance run in")
    machine_type: str = Field(default="e2-standard-2", description="the build host's and Packer's machine type")
    source_image: str | None = Field(
        default=None, description="the image milestone 5 starts from, by name, in source_image_project"
    )
    source_image_family: str | None = Field(
        default=None,
        description="else the newest image of this family in source_image_project (the template's default: rhel-8)",
    )
    source_image_project: str | None = Field(
        default=None, description="where the source is (the template's default when unset: rhel-cloud)"
    )
    network: str = Field(
        default="default", description="the VPC network of the build host (name, or a projects/... path)"
    )
    subnetwork: str | None = Field(
        default=None, description="its subnetwork, in the zone's region (name, or a projects/... path)"
    )
    public_ip: bool = Field(
        default=False, description="give the build host an external address (else it is reached on its private one)"
    )
    service_account: str | None = Field(
        default=None, description="the service account the build host runs as (none: the instance has no account)"
    )
    ssh_user: LoginName = Field(
        default="imagebuild", description="the user Ansible logs in to the build host as (its key goes in the metadata)"
    )
    ssh_public_key: str | None = Field(
        default=None, description="the public key the build host accepts; without it each build makes a key pair"
    )
    ssh_private_key_file: str | None = Field(
        default=None, description="the private half of ssh_public_key, on the workers"
    )
    image_family: str | None = Field(
        default=None, description="the final image's family; checkpoints go to <family>-staging"
    )
    storage_locations: list[str] = Field(
        default_factory=list,
        description="where the final image is stored (a region or multi-region); default Google's choice",
    )
    copy_locations: list[str] = Field(
        default_factory=list, description="storage locations publish copies the image to as well"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="labels added to everything the build makes")
    share_with: list[str] = Field(
        default_factory=list,
        description="members granted roles/compute.imageUser on the final image (user:, group:...)",
    )
    deprecate_previous: Deprecation | None = Field(
        default=None, description="what publish does to the family's previous image (deprecate, obsolete...)"
    )
    keep_checkpoints: list[int] = Field(
        default_factory=list,
        description="checkpoint images kept after the seal (a redo needs one); the others are deleted",
    )
    connection: dict[str, str] = Field(
        default_factory=dict, description="Ansible connection settings for the build host (a bastion's SSH settings)"
    )
    # the launch test's settings (spec/boot: timeout, verification playbook, user, ssh_address)
    boot: BootSpec = Field(
        default=BootSpec(), description="the launch test's settings (timeout, verification playbook, user, ssh_address)"
    )

    @field_validator("project", "source_image_project")
    @classmethod
    def _project(cls, value: str | None) -> str | None:
        if value is not None and not PROJECT_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a project id (6-30 lowercase letters, digits and '-')")
        return value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not ZONE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a zone name (like europe-west1-b)")
        return value

    @field_validator("machine_type")
    @classmethod
    def _machine(cls, value: str) -> str:
        if not MACHINE_TYPE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a machine type (like e2-standard-2)")
        return value

    @field_validator("source_image", "source_image_family", "image_family")
    @classmethod
    def _image_name(cls, value: str | None) -> str | None:
        if value is not None and not NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an image or family name (lowercase letters, digits and '-', 1-63)")
        return value

    @field_validator("network", "subnetwork")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None and not NETWORK_PATH_RE.fullmatch(value):
            raise ValueError(f"{value!r} is neither a network name nor a projects/.../networks/NAME path")
        return value

    @field_validator("storage_locations", "copy_locations")
    @classmethod
    def _locations(cls, value: list[str]) -> list[str]:
        for location in value:
            if not STORAGE_LOCATION_RE.fullmatch(location):
                raise ValueError(f"{location!r} is not a storage location (us, eu, asia or a region like europe-west1)")
        if len(set(value)) != len(value):
            raise ValueError("lists a location twice")
        return value

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str | None) -> str | None:
        if value is not None and not SERVICE_ACCOUNT_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)")
        return value

    @field_validator("share_with")
    @classmethod
    def _members(cls, value: list[str]) -> list[str]:
        for member in value:
            if not MEMBER_RE.fullmatch(member):
                raise ValueError(f"{member!r} is not an IAM member (user:, group:, serviceAccount: or domain:)")
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_USER_LABELS:
            raise ValueError(f"has {len(value)} labels; at most {MAX_USER_LABELS} (64 per resource, the build sets 6)")
        for key, item in value.items():
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by the build itself (it proves what is the build's)")
            if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(item):
                raise ValueError(f"label {key}={item!r}: keys and values are lowercase letters, digits, '_' and '-'")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> GcpTargetSpec:
        if self.source_image and self.source_image_family:
            raise ValueError(
                "source_image and source_image_family are both set: give the image by name or by family, not both"
            )
        return self

    def missing_for(self, actions: set[str]) -> list[str]:
        """The settings the pipeline's target actions need and this spec does not give."""
        needed: list[str] = []
        if actions & {"packer", "ansible", "seal", "launch_test", "publish"}:
            needed.append("zone")
        if "packer" in actions and not self.source_image:
            needed.append("source_image_family")
        if "seal" in actions:
            needed.append("image_family")
        return [name for name in needed if getattr(self, name) in (None, "")]
