"""The stand-in guest of the clouds' launch tests: a local qemu VM of the same kind of image.

The cloud fakes (moto, the OpenStack, Compute Engine and Resource Manager fakes, vcsim) run no
guest: an instance they "launch" from an image is a record, nothing boots and nothing answers SSH.
A launch test against them makes its cloud calls for real (launch from the sealed image, describe,
console output, terminate) and reaches this VM instead of the instance, through
``target.boot.ssh_address: 127.0.0.1:<port>``: SSH with the key, sudo, the network and the
verification playbook run against a real booted Debian. What is not exercised: the guest is not
booted from the fake's image (a fake's image holds no disk), and the cloud's own networking (the
instance's address) is never dialled.

The VM is made the way the local target makes a green image and boots it, with the same code:
the cached bootstrapped root filesystem (:func:`~airflow_provider_imagebuild.targets.rootfs.bootstrapped_archive`),
the shipped green-image playbook over chroot with a test key for the default user ``admin``, a
bootable disk by :func:`~airflow_provider_imagebuild.targets.disk.make_disk`, and
:func:`~airflow_provider_imagebuild.toolchain.qemu.running_vm` (BIOS, TCG unless KVM probes well,
the disk behind a throw-away overlay, SSH forwarded to a loopback port). The disk and its key are
cached beside the rootfs cache (keyed by the archive, the playbook and disk.py), so a session only
boots it: one VM per session and xdist worker, about a minute under TCG, shared by every test.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_imagebuild.targets import disk, rootfs
from airflow_provider_imagebuild.targets.boot import GREEN_IMAGE, BootReport, BootRequest, SshEndpoint, check_guest
from airflow_provider_imagebuild.toolchain import qemu
from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars, run_playbook
from tests.servers.process import ROOT

GREEN = ROOT / "dags/ansible/10-green-image.yml"
USER = "admin"  # the green image's default user (imagebuild_admin_user's default)
BOOT_TIMEOUT_S = 600.0  # one TCG boot on a loaded two-core worker


@dataclass(frozen=True)
class StandInGuest:
    """A running stand-in: SSH on ``127.0.0.1:port`` as ``user`` with ``key``; ``console`` is its
    serial log (a fake may serve it as the instance's console output)."""

    port: int
    key: Path
    user: str
    console: Path
    disk: Path | None = None  # its raw disk (cached, read-only: the VM writes to an overlay)

    @property
    def ssh_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def boot_settings(self, timeout: int = 180, **more: object) -> dict[str, object]:
        """``target.boot`` of a cloud spec whose launch test reaches this VM."""
        return {"ssh_address": self.ssh_address, "user": self.user, "timeout": timeout, **more}

    def ssh(self) -> SshEndpoint:
        return SshEndpoint(self.port, self.user, self.key)


def _digest() -> str:
    archive = rootfs.bootstrapped_archive()
    parts = [archive.name, str(archive.stat().st_size), GREEN.read_text(), Path(disk.__file__).read_text()]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def standin_disk() -> tuple[Path, Path]:
    """The stand-in's bootable raw disk and the private key its default user accepts (made once
    per rootfs, green playbook and disk code; under a lock, so parallel workers make it once)."""
    folder = rootfs.cache_dir() / f"standin-guest-{_digest()}"
    image, key = folder / "disk.raw", folder / "id_ed25519"
    if image.exists():
        return image, key
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".standin-guest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.exists():
            return image, key
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "standin", "-f", str(key)], check=True)
        tree = folder / "rootfs"
        rootfs.restore(rootfs.bootstrapped_archive(), tree)
        rootfs.chroot_name_servers(tree)
        result = run_playbook(
            GREEN,
            host_vars=chroot_host_vars(tree),
            extravars={
                "imagebuild_ssh_public_key": key.with_suffix(".pub").read_text().strip(),
                "imagebuild_pipeline": "standin",
            },
            log=lambda _: None,
        )
        assert result.status == "successful" and not result.failed, result.failures
        shutil.rmtree(tree / rootfs.CHROOT_RESOLV, ignore_errors=True)  # as the local target's disks
        partial = folder / "disk.raw.partial"
        disk.make_disk(tree, partial)
        shutil.rmtree(tree)
        partial.rename(image)
    return image, key


@contextlib.contextmanager
def running_guest(work: Path) -> Iterator[StandInGuest]:
    """Boot the stand-in (checked as milestone 10 checks a green image) and keep it running."""
    image, key = standin_disk()
    work.mkdir(parents=True, exist_ok=True)
    accel = qemu.accelerator("auto", rootfs.cache_dir(), lambda _: None)
    marker = hashlib.sha256(str(work).encode()).hexdigest()[:24]
    settings = qemu.VmSettings(image, "raw", "bios", accel, 1024, 1, work / "console.log", work, marker)
    with qemu.running_vm(settings) as vm:
        request = BootRequest(GREEN_IMAGE, "bios", timeout_s=BOOT_TIMEOUT_S, user=USER)
        report = check_guest(settings.console, SshEndpoint(vm.ssh_port, USER, key), request,
                             BootReport(GREEN_IMAGE, "bios", accel), vm.exited)  # fmt: skip
        assert report.passed, report.error_text()
        yield StandInGuest(vm.ssh_port, key, USER, settings.console, image)
