"""Every name the Azure target and its Packer template give a resource, in one place, each checked
against the rule Azure (or Packer) holds it to.

A build id may be 128 characters and a pipeline 63 or more: neither fits in a name Azure takes
(a VM name is at most 64 characters on Linux, a disk, snapshot, image or NIC 80, and Packer's
``managed_image_name`` 80), so every name is derived from the build's digest (``build_digest``),
which is short, fixed in length and made of hex digits. The full identity is in the tags.

The rules, and where they are published:

- Packer's azure-arm ``managed_image_name``: ``^[^_\\W][\\w-._)]{0,79}$``, not ending in ``-`` or
  ``.`` (``validManagedDiskName`` and ``isValidAzureName`` in builder/azure/arm/config.go, the same in
  Packer 1.6.6 and packer-plugin-azure 1.4.0);
- ``Microsoft.Compute/virtualMachines``: 1-64 characters on Linux, none of ``\\/"'[]:|<>+=;,?*@&``
  or whitespace, not starting with ``_``, not ending in ``.`` or ``-`` ("Naming rules and
  restrictions for Azure resources"); the ``osProfile.computerName`` is the same name (at most 64 on
  Linux, ``OSProfile`` in ComputeRP.json);
- ``disks`` and ``snapshots``: "a-z, A-Z, 0-9, _ and -", at most 80 (the ``diskName`` and
  ``snapshotName`` parameters of DiskRP.json);
- ``images``, ``networkInterfaces``, ``publicIPAddresses``: 1-80 alphanumerics, ``_``, ``.``,
  ``-``, starting with an alphanumeric, ending with an alphanumeric or ``_`` (naming rules page);
- ``galleries/images/versions``: ``Major.Minor.Patch``, each part a 32-bit integer (the
  ``galleryImageVersionName`` parameter of GalleryRP.json).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timezone

from airflow_provider_imagebuild.build.record import BuildRecord, parse_ts
from airflow_provider_imagebuild.errors import TargetError
from airflow_provider_imagebuild.targets.base import build_digest

INT32_MAX = 2**31 - 1
# Go's \w is ASCII [0-9A-Za-z_]; [^_\W] is an ASCII letter or digit.
_PACKER_IMAGE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_\-._)]{0,79}", re.ASCII)
_VM = re.compile(r"[^_\\/\"'\[\]:|<>+=;,?*@&\s][^\\/\"'\[\]:|<>+=;,?*@&\s]{0,63}", re.ASCII)
_DISK = re.compile(r"[A-Za-z0-9_-]{1,80}", re.ASCII)
_ARM80 = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?", re.ASCII)
_VERSION = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)", re.ASCII)


@dataclass(frozen=True)
class NameRule:
    """What Azure accepts as a name of one kind of resource."""

    kind: str
    pattern: re.Pattern[str]
    no_trailing: str = ""  # characters a name may not end with, beyond the pattern

    def problem(self, name: str) -> str | None:
        if not self.pattern.fullmatch(name):
            return f"does not match {self.pattern.pattern}"
        if self.no_trailing and name[-1] in self.no_trailing:
            return f"ends with {name[-1]!r}"
        if self is RULES["gallery image version"] and any(int(part) > INT32_MAX for part in name.split(".")):
            return "has a part larger than a 32-bit integer"
        return None


RULES: dict[str, NameRule] = {
    "packer managed image": NameRule("packer managed image", _PACKER_IMAGE, "-."),
    "virtual machine": NameRule("virtual machine", _VM, ".-"),
    "disk": NameRule("disk", _DISK),
    "snapshot": NameRule("snapshot", _DISK),
    "image": NameRule("image", _ARM80),
    "network interface": NameRule("network interface", _ARM80),
    "public IP address": NameRule("public IP address", _ARM80),
    "gallery image version": NameRule("gallery image version", _VERSION),
}


def checked(kind: str, name: str) -> str:
    """``name`` if Azure takes it for a resource of ``kind``; a derived name that breaks its rule
    is a bug here, never something to send (Azure would refuse it an hour into a build)."""
    problem = RULES[kind].problem(name)
    if problem:
        raise TargetError(f"Azure {kind} name {name!r} {problem} (a bug in the Azure target's names)")
    return name


def gallery_version(build: BuildRecord) -> str:
    """``YYYY.MMDD.HHMMSS`` of the build's creation (UTC): ordered like the builds, the same on every
    retry, and within the 32-bit parts a gallery version allows."""
    at = parse_ts(build.created_at).astimezone(timezone.utc)
    return checked(
        "gallery image version", f"{at.year}.{at.month * 100 + at.day}.{at.hour * 10000 + at.minute * 100 + at.second}"
    )


class AzureNames:
    """The names of one build's resources. ``ib-<10 hex>`` starts every resource the target makes;
    the managed images Packer makes keep a readable start (the pipeline, cut to fit) because they
    are what users find in the portal."""

    def __init__(self, pipeline: str, build: BuildRecord) -> None:
        self.key = build_digest(pipeline, build.build_id, 20)
        self.prefix = f"ib-{self.key[:10]}"
        self.pipeline = pipeline
        self.build = build

    def host(self, code: int) -> str:
        """The build host launched from the checkpoint after milestone ``code`` (also its computer name)."""
        return checked("virtual machine", f"{self.prefix}-h{code:03d}")

    def os_disk(self, code: int) -> str:
        return checked("disk", f"{self.host(code)}-os")

    def nic(self, code: int) -> str:
        return checked("network interface", f"{self.host(code)}-nic")

    def public_ip(self, code: int) -> str:
        return checked("public IP address", f"{self.host(code)}-ip")

    def test_host(self) -> str:
        """The launch test's VM (one per build at a time; its OS disk, NIC and public IP take
        :meth:`test_part`'s names)."""
        return checked("virtual machine", f"{self.prefix}-lt")

    def test_part(self, kind: str) -> str:
        """The launch test VM's ``disk``, ``network interface`` or ``public IP address``."""
        suffix = {"disk": "os", "network interface": "nic", "public IP address": "ip"}[kind]
        return checked(kind, f"{self.test_host()}-{suffix}")

    def snapshot(self, code: int) -> str:
        return checked("snapshot", f"{self.prefix}-cp{code:03d}")

    def final_image(self) -> str:
        return checked("image", f"{self.prefix}-final")

    def packer_image(self, milestone: int) -> str:
        """``<pipeline>-<10 hex>-m<milestone>``: the pipeline cut to 48 characters and its last
        ``-._`` dropped, so the name stays within Packer's 80 and Azure's image rule."""
        readable = self.pipeline[:48].rstrip("-._") or "image"
        name = checked("packer managed image", f"{readable}-{self.key[:10]}-m{milestone:03d}")
        return checked("image", name)

    def gallery_version(self) -> str:
        return gallery_version(self.build)
