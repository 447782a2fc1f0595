"""What ``imagebuild init`` writes for each cloud and OS: one table per cloud.

Each cloud's project starts from its shipped sample spec. The table says which OSes that sample
can build (``--os``), and for each the values that differ by OS: where the image starts (a public
marketplace image or family where the cloud has one, else a placeholder naming what to find),
the SSH user the image's cloud-init makes, and the OS properties a registry keeps. The package
manager follows the OS family in the playbooks themselves (``dags/ansible/vars/<family>.yml``,
loaded by ``family.yml``), so no OS needs a playbook of its own. Values only the team knows (its
network, account, build key) are placeholders for every OS: ``spec check`` refuses them by name
until they are filled in (:func:`airflow_provider_imagebuild.spec.yaml_reader.placeholders`).

An OS a cloud's sample cannot build is refused, listing what each cloud supports: the local target
debootstraps Debian on the worker, so it builds Debian 12 only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_imagebuild.errors import InvalidInput


def replace(what: str) -> str:
    """A placeholder value: ``spec check`` refuses it as ``key.path: fill in <what>``."""
    return f"<REPLACE: {what}>"


@dataclass(frozen=True)
class OsImage:
    """One OS a cloud's sample builds: its name and the ``target`` values that differ by OS."""

    title: str
    target: Mapping[str, Any]


@dataclass(frozen=True)
class CloudScaffold:
    """One cloud's project: its sample, its connection, its OSes and the values every OS fills in.

    ``fill`` values are set in ``target`` whatever the OS; a string may name the pipeline as
    ``{name}`` (an SSM parameter or an image family of the pipeline's own)."""

    sample: str
    connection: str
    systems: Mapping[str, OsImage]
    fill: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""  # why the list of OSes is what it is, when it is short


_AWS_OWNERS = {"rhel": "Red Hat's account 309956199498", "ubuntu": "Canonical's account 099720109477",
               "debian": "Debian's account 136693071363"}  # fmt: skip


def _ami(title: str, owner: str) -> str:
    return replace(f"the vendor AMI to start from: {title} in target.region ({_AWS_OWNERS[owner]})")


def _glance(title: str) -> str:
    return replace(f"the Glance image to start from: {title} with cloud-init (name or id)")


def _vm_template(title: str) -> str:
    return replace(f"the VM template to start from: {title} with cloud-init, its guest on DHCP")


_BUILD_KEY = replace("the public half of the build's SSH key (ssh-ed25519 AAAA... imagebuild)")

CLOUDS: dict[str, CloudScaffold] = {
    "local": CloudScaffold(
        sample="local-debian-base.yaml",
        connection="",
        systems={"debian-12": OsImage("Debian 12", {})},
        note="the local target debootstraps Debian on this worker",
    ),
    "aws": CloudScaffold(
        sample="aws-rhel8-webserver.yaml",
        connection="aws_default",
        systems={
            "rhel-8": OsImage("RHEL 8", {"source_image": _ami("RHEL 8", "rhel"), "ssh_user": "ec2-user"}),
            "rhel-9": OsImage("RHEL 9", {"source_image": _ami("RHEL 9", "rhel"), "ssh_user": "ec2-user"}),
            "ubuntu-22.04": OsImage(
                "Ubuntu 22.04", {"source_image": _ami("Ubuntu 22.04", "ubuntu"), "ssh_user": "ubuntu"}
            ),
            "ubuntu-24.04": OsImage(
                "Ubuntu 24.04", {"source_image": _ami("Ubuntu 24.04", "ubuntu"), "ssh_user": "ubuntu"}
            ),
            "debian-12": OsImage("Debian 12", {"source_image": _ami("Debian 12", "debian"), "ssh_user": "admin"}),
        },
        fill={"ssm_parameter": "/imagebuild/{name}/image_id"},
    ),
    "azure": CloudScaffold(
        sample="azure-rhel8-webserver.yaml",
        connection="azure_default",
        systems={
            "rhel-8": OsImage("RHEL 8", {"source_image": "RedHat:RHEL:8-lvm-gen2:latest"}),
            "rhel-9": OsImage("RHEL 9", {"source_image": "RedHat:RHEL:9-lvm-gen2:latest"}),
            "ubuntu-22.04": OsImage(
                "Ubuntu 22.04", {"source_image": "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest"}
            ),
            "ubuntu-24.04": OsImage("Ubuntu 24.04", {"source_image": "Canonical:ubuntu-24_04-lts:server:latest"}),
            "debian-12": OsImage("Debian 12", {"source_image": "Debian:debian-12:12-gen2:latest"}),
        },
        fill={
            "resource_group": replace("the resource group the build's VMs, disks and images go in"),
            "network": replace("the build hosts' virtual network and subnet, as VNET/SUBNET"),
            "ssh_public_key": _BUILD_KEY,
            "gallery": replace("the Compute Gallery to publish to"),
            "gallery_image": replace(
                "the gallery's image definition (made once: az sig image-definition create, Hyper-V V2)"
            ),
        },
    ),
    "gcp": CloudScaffold(
        sample="gcp-rhel8-webserver.yaml",
        connection="google_cloud_default",
        systems={
            "rhel-8": OsImage("RHEL 8", {"source_image_family": "rhel-8", "source_image_project": "rhel-cloud"}),
            "rhel-9": OsImage("RHEL 9", {"source_image_family": "rhel-9", "source_image_project": "rhel-cloud"}),
            "ubuntu-22.04": OsImage(
                "Ubuntu 22.04", {"source_image_family": "ubuntu-2204-lts", "source_image_project": "ubuntu-os-cloud"}
            ),
            "ubuntu-24.04": OsImage(
                "Ubuntu 24.04",
                {"source_image_family": "ubuntu-2404-lts-amd64", "source_image_project": "ubuntu-os-cloud"},
            ),
            "debian-12": OsImage(
                "Debian 12", {"source_image_family": "debian-12", "source_image_project": "debian-cloud"}
            ),
        },
        fill={
            "project": replace("the Google Cloud project id the images are made in"),
            "subnetwork": replace("the VPC subnetwork of the build hosts"),
            "service_account": replace("the build hosts' service account e-mail"),
            "ssh_public_key": _BUILD_KEY,
            "image_family": "{name}",
            "share_with": [replace("who may use the image: a group, user or domain in IAM member form")],
        },
    ),
    "vsphere": CloudScaffold(
        sample="vsphere-rhel8-webserver.yaml",
        connection="vsphere_default",
        systems={
            "rhel-8": OsImage("RHEL 8", {"template": _vm_template("RHEL 8")}),
            "rhel-9": OsImage("RHEL 9", {"template": _vm_template("RHEL 9")}),
            "ubuntu-22.04": OsImage("Ubuntu 22.04", {"template": _vm_template("Ubuntu 22.04")}),
            "ubuntu-24.04": OsImage("Ubuntu 24.04", {"template": _vm_template("Ubuntu 24.04")}),
            "debian-12": OsImage("Debian 12", {"template": _vm_template("Debian 12")}),
        },
        fill={
            "datacenter": replace("the vSphere datacenter to build in"),
            "cluster": replace("the cluster the build VMs run on"),
            "datastore": replace("the datastore of the build VMs and templates"),
        },
    ),
    "openstack": CloudScaffold(
        sample="openstack-rhel8-webserver.yaml",
        connection="openstack_default",
        systems={
            "rhel-8": OsImage("RHEL 8", {"source_image": _glance("RHEL 8"), "ssh_user": "cloud-user"}),
            "rhel-9": OsImage("RHEL 9", {"source_image": _glance("RHEL 9"), "ssh_user": "cloud-user"}),
            "ubuntu-22.04": OsImage("Ubuntu 22.04", {"source_image": _glance("Ubuntu 22.04"), "ssh_user": "ubuntu"}),
            "ubuntu-24.04": OsImage("Ubuntu 24.04", {"source_image": _glance("Ubuntu 24.04"), "ssh_user": "ubuntu"}),
            "debian-12": OsImage("Debian 12", {"source_image": _glance("Debian 12"), "ssh_user": "debian"}),
        },
        fill={
            "flavor": replace("the flavor of the build servers (2 vCPU, 4 GB is plenty)"),
            "network": replace("the network the build servers boot on"),
            "share_with_projects": [replace("the id of a project to share the image with")],
        },
    ),
}

# What a registry records of the OS (Glance's os_distro/os_version, a vSphere tag), by OS name.
_DISTRO = {"rhel": "rhel", "ubuntu": "ubuntu", "debian": "debian"}


def os_properties(os_key: str) -> tuple[str, str]:
    """``("rhel", "9")`` for ``rhel-9``: the distribution and version as image registries name them."""
    distro, _, version = os_key.partition("-")
    return _DISTRO[distro], version


def supported() -> str:
    """Every cloud's OSes in one line, for the refusal of another."""
    return "; ".join(f"{cloud}: {', '.join(table.systems)}" for cloud, table in CLOUDS.items())


def os_choice(cloud: str, os_name: str) -> tuple[str, OsImage]:
    """The table's OS for ``--os``: its own name or a point release of it (``rhel-9.4``, ``rhel-8.10``);
    any other is refused, naming what each cloud builds."""
    table = CLOUDS[cloud]
    for key, image in table.systems.items():
        if os_name == key or re.fullmatch(re.escape(key) + r"\.[0-9]+", os_name):
            return key, image
    why = f" ({table.note})" if table.note else ""
    raise InvalidInput(
        "--os",
        f"{cloud} builds {', '.join(table.systems)}{why}, not {os_name!r}; supported per cloud: {supported()}",
    )
