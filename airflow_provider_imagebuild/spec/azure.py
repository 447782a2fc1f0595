"""The ``target:`` settings of an Azure pipeline, checked at parse time.

A spec with ``cloud: azure`` is validated against this model instead of the AWS/local one, so a
key of another cloud (``instance_type``, ``region``) is an unknown key, and the formats Azure
would refuse an hour into a build (a display name for a location, a malformed marketplace URN, a
publish milestone without a gallery) fail when the DAG file is parsed.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_imagebuild.clouds.azure import AZURE_LOCATION_RE, RESOURCE_GROUP_RE, SUBSCRIPTION_RE
from airflow_provider_imagebuild.spec.boot import BootSpec
from airflow_provider_imagebuild.spec.fields import ConnId

# Marketplace image URN: Publisher:Offer:Sku:Version (RedHat:RHEL:8-lvm-gen2:latest).
URN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9][A-Za-z0-9._-]*:[A-Za-z0-9.]+")
IMAGE_ID_RE = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Compute/images/[^/]+", re.IGNORECASE
)
GALLERY_VERSION_ID_RE = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Compute/galleries/[^/]+/images/[^/]+"
    r"/versions/[0-9]+\.[0-9]+\.[0-9]+",
    re.IGNORECASE,
)
SUBNET_ID_RE = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+"
    r"/subnets/[^/]+",
    re.IGNORECASE,
)
NSG_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?")
NSG_ID_RE = re.compile(
    r"/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Network/networkSecurityGroups/[^/]+",
    re.IGNORECASE,
)
NETWORK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}/[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
GALLERY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._]{0,79}")
GALLERY_IMAGE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
VM_SIZE_RE = re.compile(r"(Standard|Basic)_[A-Za-z0-9_]+")
TAG_NAME_RE = re.compile(r"[^<>%&\\?/]{1,512}")
# The tags that prove what is a build's: the target writes them, a spec may not (Azure's tag
# names are case-insensitive).
RESERVED_TAGS = {"buildid", "pipeline", "milestone", "imagetype", "role", "managedby", "milestonehistory"}
MAX_USER_TAGS = 40  # Azure allows 50 per resource; the build's own tags take up to 7
# Two different storage settings, each with its own published enum (kept apart: a value of one is
# refused by the other an hour into a build).
# A managed disk's SKU: StorageAccountTypes (ComputeRP 2026-04-01, the VM's osDisk.managedDisk) and
# DiskStorageAccountTypes (DiskRP). UltraSSD_LRS "can only be used with data disks" (the same
# definition's note) and Premium SSD v2 cannot be an OS disk either (Azure's disk types page).
MANAGED_DISK_SKUS = (
    "Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS", "PremiumV2_LRS",
)  # fmt: skip
DATA_DISK_ONLY_SKUS = ("UltraSSD_LRS", "PremiumV2_LRS")
# OSProfile.adminUsername's "Disallowed values" (ComputeRP 2026-04-01): Azure refuses to create a VM
# with one of these as its admin user.
DISALLOWED_ADMIN_NAMES = frozenset({
    "administrator", "admin", "user", "user1", "test", "user2", "test1", "user3", "admin1", "1", "123", "a",
    "actuser", "adm", "admin2", "aspnet", "backup", "console", "david", "guest", "john", "owner", "root", "server",
    "sql", "support", "support_388945a0", "sys", "test2", "test3", "user4", "user5",
})  # fmt: skip
# How a gallery image version's replicas are stored: StorageAccountType (GalleryRP 2025-03-03).
REPLICA_STORAGE_TYPES = ("Standard_LRS", "Standard_ZRS", "Premium_LRS", "PremiumV2_LRS")


class AzureTargetSpec(BaseModel):
    """Where an Azure build host runs and where the image is published (a Compute Gallery)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    azure_conn_id: ConnId = Field(
        default="azure_default", description="the Azure provider's connection: the service principal, its tenant"
    )
    subscription_id: str | None = Field(
        default=None, description="the subscription to build in; else the connection's subscriptionId"
    )
    resource_group: str | None = Field(
        default=None, description="where the build's VMs, disks, snapshots and images live"
    )
    location: str | None = Field(default=None, description="the region, by its API name (westeurope, not West Europe)")
    vm_size: str = Field(default="Standard_D2s_v5", description="the build host's and Packer's VM size")
    source_image: str | None = Field(
        default=None,
        description="a marketplace URN, a gallery image version id, or a managed image of the subscription",
    )
    network: str | None = Field(default=None, description="vnet/subnet in the resource group, or a subnet id")
    public_ip: bool = Field(
        default=False, description="give the build host a public address (else it is reached on its private one)"
    )
    network_security_group: str | None = Field(default=None, description="NSG name in the resource group, or its id")
    ssh_user: str = Field(
        default="azureuser", description="the admin user the build host is made with; Ansible logs in as it"
    )
    ssh_public_key: str | None = Field(
        default=None, description="the public key the build host accepts; without it each build makes a key pair"
    )
    ssh_private_key_file: str | None = Field(
        default=None, description="the private half of ssh_public_key, on the workers"
    )
    gallery: str | None = Field(
        default=None, description="the Compute Gallery publish adds the image version to (it must exist)"
    )
    gallery_image: str | None = Field(
        default=None, description="the gallery's image definition (it must exist, of the image's Hyper-V generation)"
    )
    replication_regions: list[str] = Field(
        default_factory=list, description="regions the gallery version is replicated to, besides location"
    )
    replica_count: int = Field(default=1, ge=1, le=100, description="replicas of the gallery version per region")
    os_disk_type: str = Field(default="Standard_LRS", description="the build host's OS disk SKU")
    replica_storage_type: str = Field(default="Standard_LRS", description="how gallery replicas are stored")
    storage_account_type: str | None = Field(default=None, description="replaced by the two settings above")
    end_of_life_days: int | None = Field(
        default=None,
        ge=1,
        le=3650,
        description="the gallery version's endOfLifeDate, counted from the build's creation",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="tags added to everything the build makes")
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

    @field_validator("subscription_id")
    @classmethod
    def _subscription(cls, value: str | None) -> str | None:
        if value is not None and not SUBSCRIPTION_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a subscription id (a GUID)")
        return value

    @field_validator("resource_group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and not RESOURCE_GROUP_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a resource group name")
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is not None and not AZURE_LOCATION_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an Azure location name (like westeurope, not 'West Europe')")
        return value

    @field_validator("replication_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        for region in value:
            if not AZURE_LOCATION_RE.fullmatch(region):
                raise ValueError(f"{region!r} is not an Azure location name (like westeurope, not 'West Europe')")
        if len(set(value)) != len(value):
            raise ValueError("lists a region twice")
        return value

    @field_validator("vm_size")
    @classmethod
    def _size(cls, value: str) -> str:
        if not VM_SIZE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a VM size (like Standard_D2s_v5)")
        return value

    @field_validator("source_image")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and not any(r.fullmatch(value) for r in (URN_RE, IMAGE_ID_RE, GALLERY_VERSION_ID_RE)):
            raise ValueError(
                f"{value!r} is neither a marketplace URN (Publisher:Offer:Sku:Version, like "
                "RedHat:RHEL:8-lvm-gen2:latest), a managed image id (/subscriptions/.../images/NAME) nor a "
                "gallery image version id (/subscriptions/.../galleries/G/images/I/versions/1.2.3)"
            )
        return value

    @field_validator("network")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None and not (NETWORK_RE.fullmatch(value) or SUBNET_ID_RE.fullmatch(value)):
            raise ValueError(f"{value!r} is neither VNET/SUBNET nor a subnet resource id")
        return value

    @field_validator("network_security_group")
    @classmethod
    def _nsg(cls, value: str | None) -> str | None:
        if value is not None and not (NSG_RE.fullmatch(value) or NSG_ID_RE.fullmatch(value)):
            raise ValueError(f"{value!r} is neither a network security group name nor its resource id")
        return value

    @field_validator("gallery")
    @classmethod
    def _gallery(cls, value: str | None) -> str | None:
        if value is not None and not GALLERY_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a gallery name (letters, digits, '.' and '_')")
        return value

    @field_validator("gallery_image")
    @classmethod
    def _gallery_image(cls, value: str | None) -> str | None:
        if value is not None and not GALLERY_IMAGE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a gallery image definition name")
        return value

    @field_validator("os_disk_type")
    @classmethod
    def _os_disk_type(cls, value: str) -> str:
        if value in DATA_DISK_ONLY_SKUS:
            raise ValueError(f"{value!r} is for data disks only; an OS disk cannot use it")
        if value not in MANAGED_DISK_SKUS:
            also = " (it is a gallery replica type: replica_storage_type)" if value in REPLICA_STORAGE_TYPES else ""
            usable = ", ".join(v for v in MANAGED_DISK_SKUS if v not in DATA_DISK_ONLY_SKUS)
            raise ValueError(f"{value!r} is not a managed disk SKU{also}; one of {usable}")
        return value

    @field_validator("replica_storage_type")
    @classmethod
    def _replica_storage_type(cls, value: str) -> str:
        if value not in REPLICA_STORAGE_TYPES:
            also = " (it is a managed disk SKU: os_disk_type)" if value in MANAGED_DISK_SKUS else ""
            raise ValueError(
                f"{value!r} is not a gallery replica storage type{also}; one of {', '.join(REPLICA_STORAGE_TYPES)}"
            )
        return value

    @field_validator("storage_account_type")
    @classmethod
    def _storage_account_type(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "was both the OS disk's SKU and the gallery replicas' storage type, whose values differ "
                "(Standard_ZRS is only the latter): set os_disk_type and replica_storage_type instead"
            )
        return value

    @field_validator("ssh_user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value):
            raise ValueError(f"{value!r} is not a Linux user name (lowercase letters, digits, _ and -)")
        if value in DISALLOWED_ADMIN_NAMES:
            raise ValueError(f"{value!r} is one of the admin user names Azure refuses (user, test, guest, sql...)")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_USER_TAGS:
            raise ValueError(f"has {len(value)} tags; at most {MAX_USER_TAGS} (Azure allows 50, the build adds 7)")
        for name, item in value.items():
            if name.lower() in RESERVED_TAGS:
                raise ValueError(f"tag {name!r} is set by the build itself (it proves what is the build's)")
            if not TAG_NAME_RE.fullmatch(name):
                raise ValueError(f"tag name {name!r} must be 1-512 characters without < > % & \\ ? /")
            if len(item) > 256:
                raise ValueError(f"tag {name!r}: a value may be at most 256 characters")
        return value

    def missing_for(self, actions: set[str]) -> list[str]:
        """The settings the pipeline's target actions need and this spec does not give."""
        needed: list[str] = []
        if actions & {"packer", "ansible", "seal", "publish"}:
            needed += ["resource_group", "location"]
        if "packer" in actions:
            needed.append("source_image")
        if "ansible" in actions or "seal" in actions:
            needed.append("network")
        if "publish" in actions:
            needed += ["gallery", "gallery_image"]
        if "launch_test" in actions:  # a test VM from the sealed (generalized) image, in the build's subnet
            needed += ["resource_group", "location", "network", "ssh_public_key"]
        needed = list(dict.fromkeys(needed))
        return [name for name in needed if getattr(self, name) in (None, "")]
