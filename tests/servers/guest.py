"""The stand-in guest of the clouds' launch tests: a local qemu VM of the same kind of image.

The cloud fakes (moto, the OpenStack, Compute Engine and Resource Manager fakes, vcsim) run no
guest: an instance they "launch" from an image is a record, nothing boots and nothing answers SSH.
A launch test against them makes its cloud calls for real (launch from the sealed image, describe,
console output, terminate) and reaches this VM instead of the instance, through
``target.boot.ssh_address: 127.0.0.1:<port>``: SSH with the key, sudo, the network and the
verification playbook run against a real booted Debian. What is not exercised: the guest is not
booted from the fake's image (a fake's image holds no disk), and the cloud's own networking (the
instance's address) is never dialled.

The VM is made the way the local target makes a green image, with the same code: the cached
bootstrapped root filesystem (:func:`~airflow_provider_imagebuild.targets.rootfs.bootstrapped_archive`),
the shipped green-image playbook over chroot with a test key for the default user ``admin``, a
bootable disk by :func:`~airflow_provider_imagebuild.targets.disk.make_disk`; it boots with the
line the docs give for a delivered image (:func:`running_guest`: BIOS, TCG unless KVM probes well,
the disk behind a throw-away overlay, SSH forwarded to a loopback port). The disk and its key are
cached beside the rootfs cache (keyed by the archive, the playbook and disk.py), so a session only
boots it: one VM per session, about a minute under TCG, shared by every test and by both xdist
workers (:func:`shared_guest`: an idle TCG guest still costs CPU, and a second boot a minute).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_imagebuild.targets import disk, rootfs
from airflow_provider_imagebuild.targets.boot import GREEN_IMAGE, BootReport, BootRequest, SshEndpoint, check_guest
from airflow_provider_imagebuild.toolchain import qemu
from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars, run_playbook
from airflow_provider_imagebuild.toolchain.process import die_with_parent
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
    """Boot the stand-in (checked as milestone 10 checks a green image) and keep it running.

    It boots with :func:`~airflow_provider_imagebuild.toolchain.qemu.boot_command`, the one line
    docs/authors-guide/local.md and ``make demo`` give for booting a delivered image by hand (BIOS,
    the serial console on stdout, here into the console file): every session proves that line
    boots a disk :func:`~airflow_provider_imagebuild.targets.disk.make_disk` made and lets the key
    in, over a qcow2 overlay as a delivered image is one."""
    image, key = standin_disk()
    work.mkdir(parents=True, exist_ok=True)
    overlay, console = work / "standin.qcow2", work / "console.log"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "raw", str(overlay)], check=True)
    accel = qemu.accelerator("auto", rootfs.cache_dir(), lambda _: None)
    for attempt in range(3):
        port = qemu.free_loopback_port()
        with open(console, "wb") as out:
            argv = shlex.split(qemu.boot_command(overlay, "bios", accel, port))
            vm = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=die_with_parent)  # fmt: skip
        try:
            time.sleep(1.0)
            if vm.poll() is not None and qemu.PORT_TAKEN in console.read_text(errors="replace") and attempt < 2:
                continue  # another process took the port first
            request = BootRequest(GREEN_IMAGE, "bios", timeout_s=BOOT_TIMEOUT_S, user=USER)
            report = check_guest(console, SshEndpoint(port, USER, key), request, BootReport(GREEN_IMAGE, "bios", accel),
                                 vm.poll)  # fmt: skip
            assert report.passed, report.error_text()
            yield StandInGuest(port, key, USER, console, image)
            return
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(vm.pid, signal.SIGKILL)
            vm.wait()


SHARE_WAIT_S = 3600.0  # the booting worker waits this long at most for the others to let the VM go


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _users(folder: Path) -> list[int]:
    """The processes that use the shared VM and still run (a crashed worker lets it go)."""
    pids = [int(p.name.removeprefix("user-")) for p in folder.glob("user-*")]
    return [pid for pid in pids if _alive(pid)]


@contextlib.contextmanager
def shared_guest(folder: Path) -> Iterator[StandInGuest]:
    """:func:`running_guest` shared by the processes of one test session (``folder`` is the
    session's): the first to ask boots it, holding ``folder/lock`` so that the others wait for it
    and then read its address from ``folder/guest.json``. Each user is a ``user-<pid>`` file; the
    one that booted it keeps it running, once its own tests are done, until no other user is left
    (or alive, or SHARE_WAIT_S has passed), then withdraws the address before it stops the VM, so
    a process that asks later boots a new one."""
    folder.mkdir(parents=True, exist_ok=True)
    info, me = folder / "guest.json", folder / f"user-{os.getpid()}"
    with contextlib.ExitStack() as stack:
        with _locked(folder / "lock"):
            me.touch()
            known = json.loads(info.read_text()) if info.exists() else None
            if known is not None and _alive(known.pop("owner")):
                paths = {k: Path(v) for k, v in known.items() if k in ("key", "console", "disk") and v is not None}
                guest = StandInGuest(**{**known, **paths})
                owner = False
            else:
                guest = stack.enter_context(running_guest(folder / f"vm-{os.getpid()}"))
                fields = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(guest).items()}
                info.write_text(json.dumps({**fields, "owner": os.getpid()}))
                owner = True
        try:
            yield guest
        finally:
            me.unlink(missing_ok=True)
            deadline = time.monotonic() + SHARE_WAIT_S
            while owner:
                with _locked(folder / "lock"):
                    if not _users(folder) or time.monotonic() > deadline:
                        info.unlink(missing_ok=True)
                        break
                time.sleep(1)
