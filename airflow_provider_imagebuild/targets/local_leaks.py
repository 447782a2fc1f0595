"""The local target's leak collector: what builds leave under the target's work root.

A local build keeps everything in ``<work_dir>/<build_id>/`` (:mod:`.local`): the build host's
tree (``rootfs/``), checkpoint archives (``checkpoint-NNN.tar``), the sealed image
(``<pipeline>-<build_id>.qcow2``), the build's SSH key (``ssh/``) and, while a tool runs, scratch:
the raw disk a seal converts (``image.raw``), the disk a boot check of the green image makes
(``boot-<stage>.raw``), a checkpoint archive not yet renamed (``checkpoint-NNN.tar.partial``
captured, ``.checkpoint-NNN.tar.part`` copied from an earlier build), a boot check's folder
(``boot-<stage>/``: console log, UEFI variables) and the disk maker's temporary folders
(``imagebuild-disk-*``). A worker killed at the wrong moment
leaves scratch behind (gigabytes for a raw disk), a build never resumed leaves its tree and
checkpoints, and a qemu VM of a boot check whose worker was SIGKILLed keeps running, marked with
the build's marker (:func:`vm_marker`, in its environment). No loop or nbd device is ever used
(:mod:`.disk` makes disks without mounting), so there are none to collect.

Ownership, as the cloud targets prove it with tags: a build folder is this pipeline's only when it
is a real directory directly under the work root, named as a build id, holding the mark the target
writes when it first makes the folder (:data:`BUILD_MARK`: the provider, the pipeline and the build
id, :func:`mark_build_folder`). Several pipelines may share a work root; a folder without the mark
(made before marks were written, or by hand) or with another pipeline's is never listed. Inside a
folder only names the target itself makes are listed; symlinks never (the tree, a checkpoint or a
scratch name that is a symlink points outside). Just before a delete, the path is derived again
from the build id and proven again (:meth:`LocalLeaks.delete_resource`), a tree with a file system
mounted inside it is left alone (a playbook's bind mount would take the host's files with it),
and a VM is killed only while its environment still carries the build's marker. A folder left with
nothing but its mark and SSH key is removed with them.

The published copies in the catalog (``<catalog>/<pipeline>/versions/``) are retention's
(``target.catalog_keep``), never the collector's; the shared debootstrap cache is never touched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

from airflow_provider_imagebuild.build.ids import BUILD_ID_RE
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.targets.base import MANAGED_BY, build_digest
from airflow_provider_imagebuild.targets.leaks import LeakCollecting, Resource

BUILD_MARK = ".imagebuild-build"  # JSON: managed_by, pipeline, build_id
ROOTFS = "rootfs"
SSH_DIR = "ssh"
CHECKPOINT_NAME_RE = re.compile(r"checkpoint-([0-9]{3})\.tar")
# Scratch files: the raw disks, and a checkpoint being captured (``rootfs.archive``) or copied from
# an earlier build (``LocalTarget.adopt_checkpoint``) when its worker was killed before the rename.
SCRATCH_FILE_RE = re.compile(r"image\.raw|boot-[A-Za-z0-9_-]{1,64}\.raw|\.?checkpoint-[0-9]{3}\.tar\.part(ial)?")
SCRATCH_DIR_RE = re.compile(r"boot-[A-Za-z0-9_-]{1,64}|imagebuild-disk-[A-Za-z0-9_]{1,64}")
VM_PREFIX = "pid:"

log = logging.getLogger(__name__)


def vm_marker(pipeline: str, build_id: str) -> str:
    """The marker a boot check's qemu carries in its environment (``toolchain.qemu.VM_MARK_ENV``)."""
    return build_digest(pipeline, build_id, 24)


def read_mark(folder: Path) -> tuple[str, str] | None:
    """(pipeline, build id) of a build folder's mark, or None when it has no readable mark of ours."""
    mark = folder / BUILD_MARK
    if mark.is_symlink() or not mark.is_file():
        return None
    try:
        data = json.loads(mark.read_text()[:4096])
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("managed_by") != MANAGED_BY:
        return None
    pipeline, build_id = data.get("pipeline"), data.get("build_id")
    return (pipeline, build_id) if isinstance(pipeline, str) and isinstance(build_id, str) else None


def mark_build_folder(folder: Path, pipeline: str, build_id: str) -> None:
    """Make the build's folder and mark it the pipeline's (once). A folder another pipeline's build
    of the same id marked is refused: two pipelines sharing a work root must not share a folder."""
    folder.mkdir(parents=True, exist_ok=True)
    found = read_mark(folder)
    if found == (pipeline, build_id):
        return
    if found is not None:
        raise InvalidInput(
            "target.work_dir",
            f"{folder} is build {found[1]} of pipeline {found[0]}; give pipeline {pipeline} its own work_dir",
        )
    mark = folder / BUILD_MARK
    if mark.is_symlink():
        mark.unlink()
    mark.write_text(json.dumps({"managed_by": MANAGED_BY, "pipeline": pipeline, "build_id": build_id}) + "\n")


def _changed_at(path: Path) -> datetime:
    """When the path was made or last changed: the later of its mtime and ctime (tar restores a
    tree's old mtime; ctime is when it was unpacked here), so a fresh resource never looks old."""
    st = path.lstat()
    return datetime.fromtimestamp(max(st.st_mtime, st.st_ctime), timezone.utc)


def _process_started(pid: int) -> datetime | None:
    """When process ``pid`` started (``/proc``: boot time plus its start in clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))  # fmt: skip
        return datetime.fromtimestamp(boot + int(fields[19]) / os.sysconf("SC_CLK_TCK"), timezone.utc)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _mount_points() -> list[str]:
    """Every mount point of this machine (``/proc/self/mountinfo``, octal escapes undone)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    decode = re.compile(r"\\([0-7]{3})")
    return [decode.sub(lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in lines if len(line.split()) > 4]


def has_mount_inside(path: Path) -> bool:
    """Whether a file system is mounted at or under ``path``: removing the tree would cross into it."""
    inside = str(path.resolve())
    return any(p == inside or p.startswith(inside + "/") for p in _mount_points())


class LocalLeaks(LeakCollecting):
    """The leak collector's two hooks for :class:`~.local.LocalTarget` (see the module's docstring)."""

    work_dir: Path
    pipeline: str

    def build_dir(self, build_id: str) -> Path:  # the local target's, for the type checker
        return self.work_dir / build_id

    def _our_folder(self, build_id: str) -> Path | None:
        """The build's folder when it is provably this pipeline's (see the module's docstring)."""
        if not BUILD_ID_RE.fullmatch(build_id) or ".." in build_id:
            return None
        folder = self.build_dir(build_id)
        if folder.is_symlink() or not folder.is_dir() or folder.resolve().parent != self.work_dir.resolve():
            return None
        return folder if read_mark(folder) == (self.pipeline, build_id) else None

    def _marked_elsewhere(self, build_id: str) -> tuple[str, str] | None:
        """The (pipeline, build id) mark of the build's folder when it names another pipeline's build
        of that id (a record is the store's word, the mark the disk's); None for this pipeline's
        folder and for a folder without a mark (it predates marks)."""
        marked = read_mark(self.build_dir(build_id))
        return marked if marked is not None and marked != (self.pipeline, build_id) else None

    def _classify(self, entry: Path, build_id: str) -> tuple[str, str, int | None] | None:
        """(kind, role, milestone) of a name the target makes in a build's folder; None otherwise."""
        if entry.is_symlink():
            return None
        name = entry.name
        if entry.is_dir():
            if name == ROOTFS:
                return "host", "buildhost", None
            return ("folder", "scratch", None) if SCRATCH_DIR_RE.fullmatch(name) else None
        if not entry.is_file():
            return None
        if match := CHECKPOINT_NAME_RE.fullmatch(name):
            return "checkpoint", "checkpoint", int(match.group(1))
        if name == f"{self.pipeline}-{build_id}.qcow2":
            return "image", "final", 95  # the sealed image: retention's (leaks.KEPT_ROLES), listed as kept
        return ("disk", "scratch", None) if SCRATCH_FILE_RE.fullmatch(name) else None

    def _resource(self, entry: Path, build_id: str, what: tuple[str, str, int | None]) -> Resource:
        kind, role, milestone = what
        gb = round(entry.lstat().st_size / 1e9, 3) if kind in ("checkpoint", "image", "disk") else None
        return Resource(kind, str(entry), "", self.pipeline, build_id, _changed_at(entry), role=role,
                        milestone=milestone, gb=gb)  # fmt: skip

    def owned_resources(self) -> list[Resource]:
        """What the pipeline's marked build folders hold, and the qemu VMs carrying their markers."""
        from airflow_provider_imagebuild.toolchain.process import marked_processes
        from airflow_provider_imagebuild.toolchain.qemu import VM_MARK_ENV

        if not self.work_dir.is_dir():
            return []
        found: list[Resource] = []
        for folder in sorted(self.work_dir.iterdir()):
            if self._our_folder(folder.name) is None:
                continue
            for entry in sorted(folder.iterdir()):
                what = self._classify(entry, folder.name)
                if what is not None:
                    found.append(self._resource(entry, folder.name, what))
            for pid in marked_processes(VM_MARK_ENV, vm_marker(self.pipeline, folder.name)):
                found.append(Resource("vm", f"{VM_PREFIX}{pid}", "", self.pipeline, folder.name,
                                      _process_started(pid), role="boot-check"))  # fmt: skip
        return found

    def delete_resource(self, resource: Resource) -> bool:
        """Proven again from the build id (the folder's mark, the path derived under the work root,
        the name's kind) and deleted; False when gone or no longer provably ours."""
        folder = self._our_folder(resource.build_id) if resource.pipeline == self.pipeline else None
        if folder is None:
            return False
        if resource.kind == "vm":
            killed = self._kill_vm(resource)
            if killed:
                self._tidy(folder, resource.build_id)
            return killed
        path = Path(resource.id)
        if (
            path.parent != folder
            or path.is_symlink()
            or not (path.exists() and path.resolve().parent == folder.resolve())
        ):
            return False
        what = self._classify(path, resource.build_id)
        if what is None or what[:2] != (resource.kind, resource.role) or resource.role == "final":
            return False
        if path.is_dir():
            if has_mount_inside(path):
                log.warning("%s has a file system mounted inside; left alone", path)
                return False
            shutil.rmtree(path)
        else:
            path.unlink()
        log.info("deleted leaked %s %s", resource.kind, path)
        self._tidy(folder, resource.build_id)
        return True

    def _kill_vm(self, resource: Resource) -> bool:
        from airflow_provider_imagebuild.toolchain.process import marked_processes
        from airflow_provider_imagebuild.toolchain.qemu import VM_MARK_ENV

        pid_text = resource.id.removeprefix(VM_PREFIX)
        if not pid_text.isdigit():
            return False
        pid = int(pid_text)
        if pid not in marked_processes(VM_MARK_ENV, vm_marker(self.pipeline, resource.build_id)):
            return False  # ended, or the pid is another process's now
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        # SIGKILL is delivered, not done, when kill returns: until the VM is gone its marker still
        # proves the folder the build's, and the tidy after it would keep the folder.
        deadline = time.monotonic() + 10
        while pid in marked_processes(VM_MARK_ENV, vm_marker(self.pipeline, resource.build_id)):
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        log.info("killed leaked boot check VM %s of build %s", pid, resource.build_id)
        return True

    def _tidy(self, folder: Path, build_id: str) -> None:
        """Remove a build folder left with nothing but its mark and SSH key (the mark last), unless
        a VM of the build still runs (the mark is what proves it the pipeline's)."""
        from airflow_provider_imagebuild.toolchain.process import marked_processes
        from airflow_provider_imagebuild.toolchain.qemu import VM_MARK_ENV

        left = set(os.listdir(folder))
        if not left <= {BUILD_MARK, SSH_DIR} or (folder / SSH_DIR).is_symlink():
            return
        if marked_processes(VM_MARK_ENV, vm_marker(self.pipeline, build_id)):
            return
        shutil.rmtree(folder / SSH_DIR, ignore_errors=True)
        (folder / BUILD_MARK).unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:  # something appeared meanwhile: a worker's; kept
            return
