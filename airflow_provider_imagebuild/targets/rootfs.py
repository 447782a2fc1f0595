"""Debian root filesystems made by debootstrap, with the downloaded base cached.

The local target's kickstart and the tests' stand-in build hosts both start from here. The
first call downloads the packages once into a debootstrap tarball (``--make-tarball``) under the
cache directory; a root filesystem is unpacked from it (``--unpack-tarball``) without touching the
network, and that freshly bootstrapped tree is itself cached as a tar archive
(:func:`bootstrapped_archive`), which every build host starts from. Both file names carry a digest
of the package list, so a changed list is downloaded and bootstrapped once, on first use.
``python -m airflow_provider_imagebuild.targets.rootfs --rootfs`` fills the cache (``make setup``
does, so that tests and builds never download).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.toolchain.locate import find_tool

SUITE = "bookworm"
# minbase plus what the green image and the sample playbooks use (their package tasks then find
# them installed and need no network): Python for Ansible, sudo, SSH, time sync, the web server;
# and what makes the tree a system that boots by itself: the cloud kernel (its initramfs is made
# by debootstrap's configure step), systemd as init with udev and D-Bus, networking by DHCP
# (systemd-networkd is part of systemd) with name resolution (systemd-resolved), iproute2.
PACKAGES = (
    "python3", "sudo", "openssh-server", "chrony", "nginx", "ca-certificates", "curl", "less",
    "linux-image-cloud-amd64", "systemd-sysv", "udev", "dbus", "systemd-resolved", "iproute2",
    "python3-apt",  # Ansible's apt module: without it the first package task fetches it from the network
)  # fmt: skip
CACHE_ENV = "IMAGEBUILD_CACHE"
# Where a Debian tree with systemd-resolved looks for name servers (/etc/resolv.conf links there).
# A booted system has its own under /run; a build host reached over chroot gets a copy of the
# worker's for its playbooks, which the local target leaves out of every disk made from the tree.
CHROOT_RESOLV = Path("run/systemd/resolve")


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "/var/cache/imagebuild")


def _debootstrap() -> str:
    exe = find_tool("debootstrap")
    if exe is None:
        raise InvalidInput("debootstrap", "is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise InvalidInput("debootstrap", "needs root (it creates device nodes and chroots); run as root")
    return exe


def _tarball_path(packages: tuple[str, ...], suite: str, folder: Path) -> Path:
    digest = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    return folder / f"debootstrap-{suite}-minbase-{digest}.tgz"


def cached_base(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> Path | None:
    """The cached debootstrap tarball if it was made already (never downloads): what a watch
    ``image: source`` of the local target reads."""
    tarball = _tarball_path(packages, suite, cache_dir())
    return tarball if tarball.is_file() else None


def base_tarball(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE, folder: Path | None = None) -> Path:
    """The cached debootstrap tarball for ``suite`` + ``packages``, downloaded on first use."""
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tarball = _tarball_path(packages, suite, folder)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds never download the same base at once
        if not tarball.exists():
            work = folder / f".make-{tarball.name.removesuffix('.tgz').rsplit('-', 1)[1]}"
            shutil.rmtree(work, ignore_errors=True)
            partial = tarball.with_suffix(".partial")
            run_tool(
                [
                    _debootstrap(),
                    "--variant=minbase",
                    f"--include={','.join(packages)}",
                    f"--make-tarball={partial}",
                    suite,
                    str(work),
                ],
                "debootstrap --make-tarball",
            )
            shutil.rmtree(work, ignore_errors=True)
            partial.rename(tarball)
    return tarball


def bootstrap(target: Path, packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> None:
    """A fresh Debian root filesystem in ``target`` (empty or missing), from the cached tarball."""
    tarball = base_tarball(packages, suite)
    target.mkdir(parents=True, exist_ok=True)
    run_tool(
        [
            _debootstrap(),
            "--variant=minbase",
            f"--include={','.join(packages)}",
            f"--unpack-tarball={tarball}",
            suite,
            str(target),
        ],
        "debootstrap",
    )


def archive(root: Path, tarball: Path) -> None:
    """Capture a root filesystem as a tar archive (numeric owners, xattrs), written atomically."""
    partial = tarball.with_name(tarball.name + ".partial")
    run_tool(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."], "tar (capture)")
    partial.rename(tarball)


def restore(tarball: Path, root: Path) -> None:
    """Unpack a captured root filesystem into ``root`` (created; must be empty)."""
    root.mkdir(parents=True, exist_ok=True)
    run_tool(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-xf", str(tarball)], "tar (restore)")


def bootstrapped_archive(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE) -> Path:
    """A tar of a freshly bootstrapped tree, cached: unpacking it takes seconds, bootstrapping (the
    packages' configure scripts, the kernel's initramfs) a minute or two. Made once per package
    list, under a lock of its own: a second build or test session waits for it instead of
    bootstrapping into the same work folder."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    tarball = folder / f"rootfs-{suite}-{digest}.tar"
    if tarball.exists():
        return tarball
    with open(folder / ".rootfs.lock", "w") as lock:  # not base_tarball's lock, which bootstrap takes
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            work = folder / f".rootfs-{digest}"
            shutil.rmtree(work, ignore_errors=True)
            bootstrap(work, packages, suite)
            archive(work, tarball)
            shutil.rmtree(work, ignore_errors=True)
    return tarball


def chroot_name_servers(root: Path) -> None:
    """Name resolution for playbooks in the chroot: the worker's servers where the tree's
    /etc/resolv.conf points (under /run, which a booted system mounts over)."""
    folder = root / CHROOT_RESOLV
    if any(p.is_symlink() for p in (root / "run", root / "run/systemd", folder)):
        return  # never written through a link planted in the tree
    folder.mkdir(parents=True, exist_ok=True)
    try:
        servers = Path("/etc/resolv.conf").read_text()
    except OSError:
        servers = ""
    for name in ("stub-resolv.conf", "resolv.conf"):
        (folder / name).unlink(missing_ok=True)
        (folder / name).write_text(servers)


def run_tool(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> None:
    """Run a system tool; a failure is a :class:`TargetError` with its last output lines."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, check=False, env=None if env is None else {**os.environ, **env}
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise TargetError(f"{what} failed (exit status {proc.returncode}): {tail}")


if __name__ == "__main__":
    print(base_tarball(), file=sys.stdout)
    if "--rootfs" in sys.argv:
        print(bootstrapped_archive(), file=sys.stdout)
