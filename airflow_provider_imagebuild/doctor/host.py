"""The executables and host conditions milestones rely on: Ansible's, the local target's, SSH.

Tools are looked up as the milestones look them up (:func:`toolchain.locate.find_tool`: beside
the worker's Python, ``$IMAGEBUILD_TOOLS_DIR``, ``PATH``, the sbin folders), so a tool that is
only on an interactive shell's ``PATH`` is not taken for present.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.doctor.findings import ABSENT, OK, WARN, Finding, judged
from airflow_provider_imagebuild.toolchain.locate import find_tool

# Where each tool comes from (Debian/Ubuntu package names, as the Dockerfile installs them).
TOOL_FIXES = {
    "packer": "make packer-tools in a clone of the provider, or put packer in $IMAGEBUILD_TOOLS_DIR or on PATH",
    "ansible-playbook": "pip install 'airflow-provider-imagebuild[ansible]' (into the worker's Python)",
    "ssh": "apt-get install openssh-client",
    "ssh-keygen": "apt-get install openssh-client",
    "debootstrap": "apt-get install debootstrap",
    "qemu-img": "apt-get install qemu-utils",
    "mkfs.ext4": "apt-get install e2fsprogs",
    "truncate": "apt-get install coreutils",
    "sfdisk": "apt-get install fdisk",
    "mkfs.vfat": "apt-get install dosfstools",
    "mmd": "apt-get install mtools",
    "mcopy": "apt-get install mtools",
    "grub-mkimage": "apt-get install grub-common",
    "qemu-system-x86_64": "apt-get install qemu-system-x86",
}
COLLECTION = "community.general"  # the chroot connection the local target's Ansible uses
ROOTFS_FIX = "python -m airflow_provider_imagebuild.targets.rootfs (make rootfs-cache in a clone)"


def host_files() -> dict[str, tuple[str, tuple[Path, ...], str]]:
    """Files of the host the local target's disk and boots read: name -> (what, paths, fix)."""
    from airflow_provider_imagebuild.targets.disk import GRUB_LIB
    from airflow_provider_imagebuild.toolchain.qemu import OVMF_CODE, OVMF_VARS

    return {
        "grub-efi": ("GRUB's UEFI modules", (GRUB_LIB / "x86_64-efi",), "apt-get install grub-efi-amd64-bin"),
        "grub-bios": ("GRUB's BIOS modules", (GRUB_LIB / "i386-pc/boot.img",), "apt-get install grub-pc-bin"),
        "ovmf": ("UEFI firmware (OVMF)", (OVMF_CODE, OVMF_VARS), "apt-get install ovmf"),
    }


def examine_host_file(name: str, needed_by: list[str]) -> tuple[str | None, Finding]:
    what, paths, fix = host_files()[name]
    missing = [str(path) for path in paths if not path.exists()]
    detail = f"{', '.join(missing)} missing" if missing else ", ".join(map(str, paths))
    return (None if missing else str(paths[0])), judged(what, not missing, detail, fix, needed_by)


def examine_tool(name: str, needed_by: list[str]) -> tuple[str | None, Finding]:
    found = find_tool(name)
    detail = found or "not found beside the worker's Python, in $IMAGEBUILD_TOOLS_DIR, on PATH or in sbin"
    return found, judged(f"tool {name}", found is not None, detail, TOOL_FIXES.get(name, ""), needed_by)


def _collection_paths() -> list[Path]:
    """Where Ansible looks for collections besides the Python path (its defaults and the setting)."""
    configured = os.environ.get("ANSIBLE_COLLECTIONS_PATH") or os.environ.get("ANSIBLE_COLLECTIONS_PATHS")
    paths = configured.split(os.pathsep) if configured else ["~/.ansible/collections", "/usr/share/ansible/collections"]
    return [Path(p).expanduser() for p in paths if p]


def chroot_connection() -> str | None:
    """Where the ``community.general`` collection (its chroot connection plugin) is, or None."""
    namespace, name = COLLECTION.split(".")
    for folder in _collection_paths():
        plugin = folder / "ansible_collections" / namespace / name / "plugins/connection/chroot.py"
        if plugin.is_file():
            return str(plugin.parent.parent.parent)
    try:
        spec = importlib.util.find_spec(f"ansible_collections.{COLLECTION}.plugins.connection.chroot")
    except (ImportError, ValueError):
        return None
    return str(Path(spec.origin).parents[2]) if spec is not None and spec.origin else None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def examine_ansible(needed_by: list[str], chroot_needed_by: list[str]) -> tuple[dict[str, Any], list[Finding]]:
    """ansible-core, ansible-runner and ansible-playbook as a milestone runs them, and the chroot
    connection plugin the local target's playbooks reach the build host's tree with."""
    playbook, found = examine_tool("ansible-playbook", needed_by)
    chroot = chroot_connection()
    entry = {
        "needed_by": needed_by,
        "ansible": _version("ansible"),
        "ansible_core": _version("ansible-core"),
        "ansible_runner": _version("ansible-runner"),
        "ansible_playbook": playbook,
        "chroot_connection": chroot,
    }
    findings = [found]
    findings.append(
        judged(
            f"ansible collection {COLLECTION} (chroot connection)",
            chroot is not None,
            chroot or "not found on the Python path or in Ansible's collection paths",
            f"ansible-galaxy collection install {COLLECTION}, or pip install 'airflow-provider-imagebuild[ansible]'",
            chroot_needed_by,
        )
    )
    return entry, findings


def examine_root(needed_by: list[str]) -> Finding:
    root = os.geteuid() == 0
    detail = "running as root" if root else f"running as uid {os.geteuid()}"
    fix = "run the worker as root (debootstrap, chroot and mkfs need it)"
    return judged("root (local target)", root, detail, fix, needed_by)


def base_tarball_path() -> Path:
    """Where :func:`targets.rootfs.base_tarball` keeps the Debian base of today's package list
    (named by a digest of that list: a base made for another list is downloaded again)."""
    from airflow_provider_imagebuild.targets.rootfs import PACKAGES, SUITE, cache_dir

    digest = hashlib.sha256(" ".join(sorted(PACKAGES)).encode()).hexdigest()[:12]
    return cache_dir() / f"debootstrap-{SUITE}-minbase-{digest}.tgz"


def examine_rootfs_cache(needed_by: list[str]) -> tuple[str | None, Finding]:
    """The Debian base debootstrap unpacks from. Missing, the first build downloads it: it works
    where the worker reaches a Debian mirror, hence a warning, not a failure."""
    path = base_tarball_path()
    if path.is_file():
        return str(path), Finding("debootstrap base cache", OK, str(path), "", tuple(needed_by))
    detail = f"no {path.name} in {path.parent}: the first build downloads the Debian base from a mirror"
    return None, Finding("debootstrap base cache", WARN if needed_by else ABSENT, detail, ROOTFS_FIX, tuple(needed_by))
