"""Debian root filesystems made by debootstrap, with the downloaded base cached.

The local target's kickstart and the tests' stand-in build hosts both start from here. The
first call downloads the packages once into a debootstrap tarball (``--make-tarball``) under the
cache directory; every later root filesystem is unpacked from it (``--unpack-tarball``) without
touching the network. ``python -m airflow_provider_imagebuild.targets.rootfs`` fills the cache
(``make setup`` does, so that tests never download).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.toolchain.locate import find_tool

SUITE = "bookworm"
# minbase plus what the green image and the sample playbooks use (their package tasks then find
# them installed and need no network): Python for Ansible, sudo, SSH, time sync, the web server.
PACKAGES = ("python3", "sudo", "openssh-server", "chrony", "nginx", "ca-certificates", "curl", "less")
CACHE_ENV = "IMAGEBUILD_CACHE"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or "/var/cache/imagebuild")


def _debootstrap() -> str:
    exe = find_tool("debootstrap")
    if exe is None:
        raise InvalidInput("debootstrap", "is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise InvalidInput("debootstrap", "needs root (it creates device nodes and chroots); run as root")
    return exe


def base_tarball(packages: tuple[str, ...] = PACKAGES, suite: str = SUITE, folder: Path | None = None) -> Path:
    """The cached debootstrap tarball for ``suite`` + ``packages``, downloaded on first use."""
    folder = folder or cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    tarball = folder / f"debootstrap-{suite}-minbase-{digest}.tgz"
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds never download the same base at once
        if not tarball.exists():
            work = folder / f".make-{digest}"
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
    """A tar of a freshly bootstrapped tree, cached: unpacking it takes seconds, bootstrapping a minute."""
    folder = cache_dir()
    digest = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]
    tarball = folder / f"rootfs-{suite}-{digest}.tar"
    if not tarball.exists():
        work = folder / f".rootfs-{digest}"
        shutil.rmtree(work, ignore_errors=True)
        bootstrap(work, packages, suite)
        archive(work, tarball)
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def run_tool(argv: list[str], what: str) -> None:
    """Run a system tool; a failure is a :class:`TargetError` with its last output lines."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise TargetError(f"{what} failed (exit status {proc.returncode}): {tail}")


if __name__ == "__main__":
    print(base_tarball(), file=sys.stdout)
    if "--rootfs" in sys.argv:
        print(bootstrapped_archive(), file=sys.stdout)
