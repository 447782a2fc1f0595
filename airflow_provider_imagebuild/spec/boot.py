"""``target.boot``: how a build proves that its image boots (the boot checks of :mod:`.targets.boot`).

Two boots per build, each a plain ``uefi`` or ``bios`` firmware name, or ``false`` to leave it out:

- ``green_image`` (milestone 10): the green image is booted and must show a login prompt on its
  serial console, accept SSH with the build's key, give the default user sudo and have its network
  up. BIOS by default: the quicker boot under emulation, and the other firmware than the seal's,
  so that every build exercises both ways its disk boots;
- ``before_publish`` (milestone 95, after the capture): the sealed image itself, from a throw-away
  overlay, must do the same and pass the verification ``playbook`` over SSH. UEFI by default.
  Publishing (100) refuses a sealed image without a passed check.

``timeout`` bounds one boot, from starting the VM to the last check; the default is generous
because an emulated (TCG) boot on a busy two-core worker takes one to two minutes. A boot that
fails visibly (no kernel, a kernel panic, the firmware finding nothing to boot) ends at once.

The **launch test** (a ``launch_test`` milestone, typically 97, between the seal and publish) is the
same sealed-image check as a milestone of its own: on a cloud it launches one test instance from the
sealed image (:mod:`.targets.launch`), so a retried launch test relaunches only the instance and
never captures the image again; on the local target it is the seal's qemu boot, moved out of the
seal. With a launch test in the plan the seal does not boot the image itself. A cloud's test
instance is logged in to as ``target.ssh_user`` (unless ``user`` is given here) with
``target.ssh_private_key_file``; its firmware is the cloud's, ``accel``, ``memory_mb`` and ``cpus``
are qemu's only. ``ssh_address`` reaches the test instance's SSH at a fixed ``host:port`` instead of
the address the cloud gives it (a jump host's forwarded port; the tests' stand-in guest): the
instance is launched, waited for, its console read and it is deleted all the same.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_imagebuild.spec.fields import LoginName, WholeSeconds
from airflow_provider_imagebuild.targets.registry import clouds_for

# The targets that implement ``Target.boot_check``: those whose registry entry lists the
# ``launch_test`` action (a cloud adds it there once its launch test passes the target contract).
BOOT_CHECK_CLOUDS = clouds_for("launch_test")
SSH_ADDRESS_RE = re.compile(r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(?P<port>[0-9]{1,5})", re.ASCII)
DEFAULT_PLAYBOOK = "verify-boot.yml"  # shipped beside the milestone playbooks (dags/ansible)

Firmware = Literal["uefi", "bios"]


class BootSpec(BaseModel):
    """The boot checks of a pipeline (``target.boot``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    green_image: Firmware | Literal[False] = Field(
        default="bios", description="firmware of milestone 10's boot of the green image, or false: not booted"
    )
    before_publish: Firmware | Literal[False] = Field(
        default="uefi", description="firmware of the sealed image's boot before it is published, or false: not booted"
    )
    timeout: WholeSeconds = Field(
        default=600, ge=30, le=7200, description="seconds (or 10m) one boot may take, checks included"
    )
    playbook: str | None = Field(
        default=None,
        description="verification playbook run over SSH on the booted sealed image (default: the shipped one)",
    )
    user: LoginName = Field(
        default="admin", description="the default user the green image makes (imagebuild_admin_user)"
    )
    accel: Literal["auto", "tcg", "kvm"] = Field(
        default="auto", description="auto: KVM when a short probe shows it works, else TCG (emulation)"
    )
    memory_mb: int = Field(default=1024, ge=256, le=65536, description="the boot check VM's memory in MB")
    cpus: int = Field(default=1, ge=1, le=64, description="the boot check VM's virtual CPUs")
    ssh_address: str | None = Field(
        default=None,
        description="host:port the launch test reaches its test instance's SSH at, instead of the instance's "
        "address (a jump host's forwarded port; the tests' stand-in guest)",
    )

    @field_validator("ssh_address")
    @classmethod
    def _ssh_address(cls, value: str | None) -> str | None:
        if value is not None:
            found = SSH_ADDRESS_RE.fullmatch(value)
            if found is None or not 0 < int(found["port"]) < 65536:
                raise ValueError(f"{value!r} is not host:port (like 10.0.0.5:2222)")
        return value

    def ssh_endpoint(self) -> tuple[str, int] | None:
        """``ssh_address`` as (host, port), or None: the test instance's own address, port 22."""
        if self.ssh_address is None:
            return None
        found = SSH_ADDRESS_RE.fullmatch(self.ssh_address)
        assert found is not None  # validated
        return found["host"].strip("[]"), int(found["port"])

    @property
    def enabled(self) -> bool:
        return self.green_image is not False or self.before_publish is not False
