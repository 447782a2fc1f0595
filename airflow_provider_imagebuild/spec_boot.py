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
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_imagebuild.spec_types import LoginName

# The targets that implement ``Target.boot_check`` (a cloud adds itself once its launch test is in).
BOOT_CHECK_CLOUDS = ("local",)
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
    timeout: int = Field(default=600, ge=30, le=7200, description="seconds one boot may take, checks included")
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
    memory_mb: int = Field(default=1024, ge=256, le=65536)
    cpus: int = Field(default=1, ge=1, le=64)

    @property
    def enabled(self) -> bool:
        return self.green_image is not False or self.before_publish is not False
