"""The local target: a real Debian image built on this machine, no cloud account needed.

- the build host is a root filesystem under ``<work_dir>/<build_id>/rootfs``, unpacked from the
  cached, bootstrapped Debian (:mod:`.rootfs`: debootstrap once per package list) and reached by
  Ansible over the chroot connection;
- checkpoints are tar archives of that tree (with their sha256); a lost tree is relaunched
  from the latest one, like an EC2 instance from an AMI;
- the final image is a whole bootable disk (:mod:`.disk`: GPT, GRUB for BIOS and UEFI, the kernel's
  console on the serial port, root by UUID) converted to compressed qcow2 (``qemu-img convert -c``,
  zstd); it boots in qemu, libvirt, OpenStack or Proxmox as any cloud image does;
- boot checks (:meth:`LocalTarget.boot_check`) boot a disk in qemu (:mod:`..toolchain.qemu`) and
  log in over SSH with the build's key: the green image's tree at milestone 10, the sealed image
  itself (from a throw-away overlay) before it is published;
- publishing copies it into ``<catalog>/<pipeline>/versions/<build_id>/`` with ``metadata.json``
  (the build's milestones, durations, checksums) and points ``<catalog>/<pipeline>/latest`` at it.
  Versions and pointers live in separate namespaces, so no build id (``latest`` included) can
  turn a pointer into a version or the other way round. A copy already there is kept only if it
  has the SHA-256 the seal recorded (a build sealed again has the same path and may have the same
  size), and a sealed file that is not what its seal recorded is never published.

Everything a build owns is under ``<work_dir>/<build_id>/``: a recorded host, checkpoint or image
is used, copied or deleted only if it resolves to a regular file or tree there, so a value
written into the store by hand (``--output image_id=/etc/shadow``, ``--meta host_id=<another
build's tree>``) is refused instead of acted on. The folder carries a mark naming the pipeline and
the build (:mod:`.local_leaks`), which is how ``imagebuild gc --cloud local`` proves a leftover
folder the pipeline's; a build never takes a folder another pipeline's build of its id marked.

Runs as root (debootstrap, chroot and mkfs need it); without root it says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.targets import rootfs
from airflow_provider_imagebuild.targets.base import (
    CHECKPOINT_OUTPUT,
    IMAGE_OUTPUT,
    Checkpoint,
    Host,
    Target,
    file_hash,
)
from airflow_provider_imagebuild.targets.boot import (
    BootReport,
    BootRequest,
    SshEndpoint,
    check_guest,
    playbook_verifier,
)
from airflow_provider_imagebuild.targets.disk import DiskLayout, make_disk
from airflow_provider_imagebuild.targets.local_leaks import LocalLeaks, mark_build_folder, vm_marker
from airflow_provider_imagebuild.targets.rootfs import run_tool

WORK_ENV = "IMAGEBUILD_WORK"
CATALOG_ENV = "IMAGEBUILD_CATALOG"
HOST_MARK = ".imagebuild-host"
VERSIONS = "versions"  # <catalog>/<pipeline>/versions/<build_id>/; pointers such as latest beside it
CHECKPOINT_RE = re.compile(r"checkpoint-[0-9]{3}\.tar")
COPY_CHUNK = 1 << 20

log = logging.getLogger(__name__)


class LocalTarget(LocalLeaks, Target):
    name = "local"
    boot_checks = True
    seal_boots = True

    parks_by_default = False  # a parked tree is the tree: a failed build keeps it as is

    def __init__(self, settings: TargetSpec, *, pipeline: str, image_type: str) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.image_type = image_type
        self.work_dir = Path(settings.work_dir or os.environ.get(WORK_ENV) or "/var/tmp/imagebuild")
        self.catalog = Path(settings.catalog or os.environ.get(CATALOG_ENV) or "/var/lib/imagebuild/catalog")

    @classmethod
    def from_settings(cls, settings: TargetSpec, *, pipeline: str, image_type: str) -> LocalTarget:
        return cls(settings, pipeline=pipeline, image_type=image_type)

    def build_dir(self, build_id: str) -> Path:
        return self.work_dir / build_id

    def root_of(self, build_id: str) -> Path:
        return self.build_dir(build_id) / "rootfs"

    def image_path(self, build: BuildRecord) -> Path:
        return self.build_dir(build.build_id) / f"{self.pipeline}-{build.build_id}.qcow2"

    def _host(self, build: BuildRecord, image: str, checkpoint: int) -> Host:
        root = self.root_of(build.build_id)
        (root / HOST_MARK).write_text(build.build_id + "\n")
        rootfs.chroot_name_servers(root)
        return Host(str(root), "", image, checkpoint, checkpoint)

    def _disk_of(self, root: Path, disk: Path) -> DiskLayout:
        """A bootable disk of the tree, without the worker's name servers."""
        shutil.rmtree(root / rootfs.CHROOT_RESOLV, ignore_errors=True)
        try:
            return make_disk(root, disk)
        finally:
            rootfs.chroot_name_servers(root)  # the host goes on being used (a retry, a replay)

    # -- proof of ownership ----------------------------------------------------------------------
    def owned_file(self, build: BuildRecord, value: str, what: str) -> Path:
        """``value`` as a regular file directly in the build's work directory (no symlink, no
        ``..``), else :class:`InvalidInput` naming it: nothing outside is copied or deleted."""
        folder = self.build_dir(build.build_id).resolve()
        path = Path(value)
        foreign = InvalidInput(what, f"{value!r} is not a file of build {build.build_id} (under {folder})")
        if not path.is_absolute() or ".." in path.parts or path.is_symlink():
            raise foreign
        if self.build_dir(build.build_id).is_symlink():  # the folder itself points elsewhere (gc's rule too)
            raise foreign
        resolved = path.resolve()
        if resolved.parent != folder:
            raise foreign
        if not resolved.exists():
            raise TargetError(f"{what}: {value} is missing")
        if not resolved.is_file():
            raise foreign
        return resolved

    def owns_host(self, build: BuildRecord, host: Host) -> bool:
        """The recorded host is this build's tree: its own path, marked with its build id."""
        root = self.root_of(build.build_id)
        if host.id != str(root) or root.is_symlink() or not root.is_dir():
            return False
        try:
            return (root / HOST_MARK).read_text().strip() == build.build_id
        except OSError:
            return False

    def owns_image(self, build: BuildRecord, image: str) -> bool:
        """A file of the build's folder, unless the folder's mark names another pipeline's build of
        that id (a record is the store's word; a folder without a mark predates marks)."""
        if self._marked_elsewhere(build.build_id):
            return False
        try:
            self.owned_file(build, image, "image")
        except (InvalidInput, TargetError):
            return False
        return True

    # -- the target interface --------------------------------------------------------------------
    def bootstrap(self, build: BuildRecord, milestone: int) -> tuple[Host, dict[str, Any]]:
        if os.geteuid() != 0:
            raise InvalidInput(
                "target", "the local target needs root (debootstrap, chroot, mkfs); run the worker as root"
            )
        mark_build_folder(self.build_dir(build.build_id), self.pipeline, build.build_id)  # for imagebuild gc
        root = self.root_of(build.build_id)
        shutil.rmtree(root, ignore_errors=True)  # a half-made tree of an earlier attempt
        # The freshly bootstrapped tree, cached once per package list (debootstrap's configure
        # step, kernel and initramfs included, takes over a minute; unpacking it seconds).
        archive = rootfs.bootstrapped_archive()
        rootfs.restore(archive, root)
        host = self._host(build, str(archive), milestone)
        return host, {
            "rootfs": str(root),
            "base_tarball": str(rootfs.base_tarball()),
            "rootfs_archive": str(archive),
            "suite": rootfs.SUITE,
        }

    def launch(self, build: BuildRecord, checkpoint: Checkpoint) -> Host:
        archive = self.owned_file(build, checkpoint.image, f"milestones.{checkpoint.code}.outputs.checkpoint_image")
        if not CHECKPOINT_RE.fullmatch(archive.name):
            raise InvalidInput(
                f"milestones.{checkpoint.code}.outputs.checkpoint_image", f"{archive} is not a checkpoint archive"
            )
        mark_build_folder(self.build_dir(build.build_id), self.pipeline, build.build_id)  # for imagebuild gc
        root = self.root_of(build.build_id)
        shutil.rmtree(root, ignore_errors=True)
        rootfs.restore(archive, root)
        return self._host(build, str(archive), checkpoint.code)

    def adopt_checkpoint(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """The source build's checkpoint archive, proven its own (a file directly in its work
        directory, named as a checkpoint), linked into this build's work directory under this
        build's name for it (a copy across file systems), checked against the SHA-256 the source
        recorded; written under a temporary name and renamed, so that a half-made copy is never
        taken for one."""
        where = f"milestones.{checkpoint.code}.outputs.checkpoint_image"
        archive = self.owned_file(source, checkpoint.image, where)
        if not CHECKPOINT_RE.fullmatch(archive.name):
            raise InvalidInput(where, f"{archive} is not a checkpoint archive")
        # The folder's mark, written by the build that made it: a record is the store's word (a
        # forged one may name another pipeline's build sharing the work root), the mark the disk's.
        if self._our_folder(source.build_id) is None:
            raise InvalidInput(
                where, f"{archive.parent} is not marked build {source.build_id} of pipeline {self.pipeline}"
            )
        folder = self.build_dir(build.build_id)
        folder.mkdir(parents=True, exist_ok=True)
        mark_build_folder(folder, self.pipeline, build.build_id)  # for imagebuild gc
        self._adopt_key(build, source)
        copy = folder / f"checkpoint-{checkpoint.code:03d}.tar"
        recorded = str(source.milestones[checkpoint.code].outputs.get("checkpoint_sha256") or "")
        # An earlier attempt's copy, known by its content: a file of that name may be anything else
        # (a pruned build of the same id left its own archive there before gc came).
        if copy.is_file() and not copy.is_symlink():
            found = file_hash(copy)  # an archive is gigabytes: read once
            if found == (recorded or file_hash(archive)):
                return {CHECKPOINT_OUTPUT: str(copy), "checkpoint_sha256": found}
        # One name for every try: a try killed half-way (a link is instant, a copy across file
        # systems is not, the digest takes seconds) leaves it, the next removes it, gc lists it.
        partial = folder / f".{copy.name}.part"
        partial.unlink(missing_ok=True)
        try:
            try:
                os.link(archive, partial)  # an archive is never written again: sharing its blocks is safe
            except OSError:
                shutil.copyfile(archive, partial)
            digest = file_hash(partial)
            if recorded and digest != recorded:
                raise TargetError(
                    f"{where}: {archive} of build {source.build_id} is not the archive it recorded "
                    f"(sha256 {digest[:12]}..., recorded {recorded[:12]}...)"
                )
            os.replace(partial, copy)
        finally:
            partial.unlink(missing_ok=True)
        return {CHECKPOINT_OUTPUT: str(copy), "checkpoint_sha256": digest}

    def _adopt_key(self, build: BuildRecord, source: BuildRecord) -> None:
        """Without the spec's key, each build logs in with a key pair of its own, which milestone 10
        writes into the image: a build starting from another build's checkpoint holds that build's
        key in its tree, so it takes that key pair as its own (copied, mode 0600), or its boot checks
        could never log in. Refused (the next candidate is tried) when the source's pair is gone, either
        key folder is a symbolic link, or the new build made one already (it would not be the one its
        tree trusts)."""
        if self.settings.ssh_public_key:
            return
        mine = self.build_dir(build.build_id) / "ssh/id_ed25519"
        theirs = self.build_dir(source.build_id) / "ssh/id_ed25519"
        pair = [(theirs, mine), (theirs.with_suffix(".pub"), mine.with_suffix(".pub"))]
        if theirs.parent.is_symlink() or mine.parent.is_symlink():  # a key from, or to, somewhere else
            raise TargetError(f"the SSH key folder of build {source.build_id} or {build.build_id} is a symbolic link")
        if mine.exists() or mine.with_suffix(".pub").exists():
            if all(t.is_file() and m.is_file() and m.read_bytes() == t.read_bytes() for t, m in pair):
                return  # an earlier attempt took it
            raise TargetError(f"build {build.build_id} has an SSH key of its own: it cannot take build "
                              f"{source.build_id}'s, which its checkpoint trusts")  # fmt: skip
        if any(t.is_symlink() or not t.is_file() for t, _ in pair):
            raise TargetError(f"build {source.build_id}'s SSH key, which its checkpoint trusts, is gone")
        mine.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for their, my in pair:
            fd = os.open(my, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(their.read_bytes())

    def alive(self, build: BuildRecord, host: Host) -> bool:
        if not self.owns_host(build, host):
            if Path(host.id).exists():
                log.warning("recorded build host %s is not build %s's tree; not used", host.id, build.build_id)
            return False
        return (Path(host.id) / "etc/os-release").exists()

    def ansible_vars(self, host: Host) -> dict[str, Any]:
        from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars

        return {**chroot_host_vars(host.id), **self.settings.connection}

    def playbook_vars(self, build: BuildRecord) -> dict[str, Any]:
        return {"imagebuild_ssh_public_key": self.ssh_public_key(build)}

    def package_root(self, build: BuildRecord, host: Host) -> Path | None:
        """The build host is a tree here: its package database is read in place, once it is
        proven the build's (a recorded host_id of another tree is refused, not read)."""
        if not self.owns_host(build, host):
            raise InvalidInput("host_id", f"{host.id!r} is not the build host of build {build.build_id}")
        return Path(host.id)

    def sbom_file(self, build: BuildRecord) -> Path:
        """Beside the sealed image, named like it: ``<pipeline>-<build id>.cdx.json``."""
        return self.image_path(build).with_suffix(".cdx.json")

    def ssh_public_key(self, build: BuildRecord) -> str:
        """The default user's key: the spec's, else a key pair made for this build (kept in its
        work directory, printed by nobody, removed with the work directory)."""
        if self.settings.ssh_public_key:
            return self.settings.ssh_public_key
        key = self.build_dir(build.build_id) / "ssh/id_ed25519"
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            run_tool(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"imagebuild-{build.build_id}", "-f", str(key)],
                "ssh-keygen",
            )
        return key.with_suffix(".pub").read_text().strip()

    def ssh_private_key(self, build: BuildRecord) -> Path:
        """The private half of :meth:`ssh_public_key`, which the boot checks log in with."""
        if self.settings.ssh_public_key:
            if not self.settings.ssh_private_key_file:
                raise InvalidInput("target.ssh_private_key_file", "is needed to log in for a boot check")
            return Path(self.settings.ssh_private_key_file)
        self.ssh_public_key(build)
        return self.build_dir(build.build_id) / "ssh/id_ed25519"

    # -- boot checks -----------------------------------------------------------------------------
    def boot_check(self, build: BuildRecord, what: Host | str, request: BootRequest) -> BootReport:
        """Boot the build host's tree (the green image: a disk is made of it for the boot and
        removed after) or the sealed image (from an overlay: the file is never written) in qemu,
        and prove it: login prompt, SSH with the build's key, sudo, network, then the playbook."""
        folder = self.build_dir(build.build_id)
        if isinstance(what, Host):
            if not self.owns_host(build, what):
                raise InvalidInput("host_id", f"{what.id!r} is not the build host of build {build.build_id}")
            disk = folder / f"boot-{request.stage}.raw"
            request.log(f"{request.stage}: making a bootable disk of the build host's tree")
            try:
                self._disk_of(Path(what.id), disk)
                return self._boot(build, disk, "raw", request)
            finally:
                disk.unlink(missing_ok=True)
        return self._boot(build, self.image_file(build, what), "qcow2", request)

    def _boot(self, build: BuildRecord, disk: Path, disk_format: str, request: BootRequest) -> BootReport:
        from airflow_provider_imagebuild.toolchain import qemu

        key = self.ssh_private_key(build)
        report = BootReport(request.stage, request.firmware)
        report.accel = qemu.accelerator(request.accel, rootfs.cache_dir(), request.log)
        work = self.build_dir(build.build_id) / f"boot-{request.stage}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        settings = qemu.VmSettings(
            disk=disk,
            disk_format=disk_format,
            firmware=request.firmware,
            accel=report.accel,
            memory_mb=request.memory_mb,
            cpus=request.cpus,
            console=work / "console.log",
            work=work,
            marker=vm_marker(self.pipeline, build.build_id),
        )
        request.log(f"{request.stage}: booting {disk.name} with {request.firmware.upper()} firmware ({report.accel})")
        with qemu.running_vm(settings) as vm:
            ssh = SshEndpoint(vm.ssh_port, request.user, key)
            verifier = playbook_verifier(request, f"boot-{settings.marker}")
            check_guest(settings.console, ssh, request, report, vm.exited, verifier)
            if not report.passed and vm.exited() is not None and vm.output:  # qemu's word on why it stopped
                report.checks["qemu"] = " ".join(vm.output)[-300:]
        return report

    def capture(self, build: BuildRecord, host: Host, milestone: int, final: bool) -> dict[str, Any]:
        if not self.owns_host(build, host):
            raise InvalidInput("host_id", f"{host.id!r} is not the build host of build {build.build_id}")
        root = Path(host.id)
        folder = self.build_dir(build.build_id)
        if not final:
            archive = folder / f"checkpoint-{milestone:03d}.tar"
            rootfs.archive(root, archive)
            return {CHECKPOINT_OUTPUT: str(archive), "checkpoint_sha256": file_hash(archive)}
        raw = folder / "image.raw"
        image = self.image_path(build)
        layout = self._disk_of(root, raw)
        # zstd-compressed clusters (qemu >= 5.1 reads them) written out of order by 4 coroutines:
        # about 6x faster than the default zlib here, for the same size.
        run_tool(
            [
                "qemu-img",
                "convert",
                "-c",
                "-m",
                "4",
                "-W",
                "-O",
                "qcow2",
                "-o",
                "compression_type=zstd",
                str(raw),
                str(image),
            ],
            "qemu-img convert",
        )
        raw.unlink()
        return {
            IMAGE_OUTPUT: str(image),
            "image_sha256": file_hash(image),
            "image_bytes": image.stat().st_size,
            "disk_mb": layout.size_bytes >> 20,
            "filesystem_mb": layout.root_mb,
            "root_uuid": layout.root_uuid,
        }

    def discard(self, build: BuildRecord, images: list[str]) -> list[str]:
        """Checkpoint archives of this build only, and its own sealed image (staged: an abandoned
        build's), never the shared debootstrap cache, another build's file or any other file a
        hand-written output might name."""
        removed: list[str] = []
        if marked := self._marked_elsewhere(build.build_id):
            log.warning("not discarded: %s is build %s of pipeline %s", self.build_dir(build.build_id), *marked[::-1])
            return removed  # another pipeline's build of the same id (a forged or foreign record)
        for image in images:
            try:
                path = self.owned_file(build, image, "checkpoint_image")
            except TargetError:  # gone already
                continue
            except InvalidInput as exc:
                log.warning("not discarded: %s", exc)
                continue
            if CHECKPOINT_RE.fullmatch(path.name) or path == self.image_path(build).resolve():
                path.unlink(missing_ok=True)
                removed.append(str(path))
        return removed

    def image_file(self, build: BuildRecord, image: str) -> Path:
        source = self.owned_file(build, image, "milestones.95.outputs.image_id")
        if source != self.image_path(build).resolve():
            raise InvalidInput("milestones.95.outputs.image_id", f"{image!r} is not the sealed image of this build")
        return source

    def publish(self, build: BuildRecord, image: str) -> dict[str, Any]:
        source = self.image_file(build, image)
        folder = self.catalog / self.pipeline
        version = folder / VERSIONS / build.build_id
        version.mkdir(parents=True, exist_ok=True)
        target = version / source.name
        outputs = build.merged_outputs()
        sha256 = self._catalog_copy(source, target, str(outputs.get("image_sha256") or ""))
        metadata = {
            "pipeline": self.pipeline,
            "build_id": build.build_id,
            "image_type": self.image_type,
            "os": build.os,
            "image": target.name,
            "sha256": sha256,
            "bytes": target.stat().st_size,
            "milestones": [
                {
                    "code": code,
                    "title": build.title(code),
                    "completed_at": ms.completed_at,
                    "duration_s": ms.duration_s,
                    "attempt": ms.attempt,
                }
                for code, ms in sorted(build.milestones.items())
            ],
            "checksums": {k: v for k, v in outputs.items() if k.endswith("sha256")},
            "built_with": {
                k.removeprefix("built_with."): v for k, v in build.metadata.items() if k.startswith("built_with.")
            },
        }
        sbom = self._catalog_sbom(build, version, target)
        if sbom:
            metadata["sbom"] = sbom
        (version / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        latest = folder / "latest"
        tmp = latest.with_name(".latest.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(Path(VERSIONS) / build.build_id)
        tmp.replace(latest)  # atomic: readers see the old or the new version, never none
        outputs = {"catalog_entry": str(version), "catalog_image": str(target), "latest": str(latest)}
        if sbom:
            outputs["catalog_sbom"] = str(version / sbom["file"])
        pruned = self._prune(build.build_id)
        if pruned:
            outputs["catalog_pruned"] = pruned
        return outputs

    def _catalog_sbom(self, build: BuildRecord, version: Path, image: Path) -> dict[str, Any]:
        """The seal's bill of materials beside the image in the catalog, as ``IMAGE.cdx.json``
        (the image's name, ``.cdx.json`` for its extension), with what ``metadata.json`` says of
        it; {} for a build sealed without one (an older version). Only the build's own file, with
        the SHA-256 the seal recorded, is copied: a path or digest written into the store by hand
        is refused, as for the image."""
        sealed = build.merged_outputs()
        recorded = str(sealed.get("sbom_sha256") or "")
        if not sealed.get("sbom_file"):
            return {}
        field = "milestones.95.outputs.sbom_file"
        source = self.owned_file(build, str(sealed["sbom_file"]), field)
        if source != self.sbom_file(build).resolve():
            raise InvalidInput(field, f"{source} is not the bill of materials of this build")
        target = version / image.with_suffix(".cdx.json").name
        sha256 = self._catalog_copy(source, target, recorded, "sbom")
        return {"file": target.name, "sha256": sha256, "format": "CycloneDX", "packages": sealed.get("sbom_packages")}

    @staticmethod
    def _catalog_copy(source: Path, target: Path, recorded: str, key: str = "image") -> str:
        """Make ``target`` a copy of the sealed image ``source`` (or its bill of materials: ``key``
        "sbom") and return its SHA-256.

        A copy already there is kept only if its checksum is the one the seal recorded (the
        image's, ``recorded``): a build sealed again keeps its image path and can keep its size
        too, so neither says which seal a copy holds. The source is hashed while it is copied
        (read once), and a source that is not what the seal recorded (changed since, or a
        checksum written by hand) is refused before the copy replaces anything: ``metadata.json``
        tells every reader that checksum. Without a recorded checksum (a record of an older
        version) the source's own is the one to match."""
        expected = recorded or file_hash(source)
        if target.is_file() and not target.is_symlink() and file_hash(target) == expected:
            return expected
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        try:
            with open(source, "rb") as src, open(partial, "wb") as dst:
                while chunk := src.read(COPY_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
            if digest.hexdigest() != expected:
                raise InvalidInput(
                    f"milestones.95.outputs.{key}_sha256",
                    f"the sealed {key} {source.name} (sha256 {digest.hexdigest()}) does not match the checksum the "
                    f"seal recorded ({expected}); it is not published (seal it again: reset the build to 95)",
                )
        except BaseException:
            partial.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a version folder made for this copy only
                target.parent.rmdir()
            raise
        partial.rename(target)
        return expected

    def _prune(self, current: str) -> list[str]:
        """Drop the oldest published versions beyond ``target.catalog_keep``: a nightly pipeline
        adds an image (~150 MB) every night. Newest first by publication (metadata.json's time);
        the version just published is never dropped, so ``latest`` always names a version."""
        keep = self.settings.catalog_keep
        if keep is None:
            return []
        folder = self.catalog / self.pipeline / VERSIONS
        versions = sorted(
            (d for d in folder.iterdir() if not d.is_symlink() and (d / "metadata.json").is_file()),
            key=lambda d: (d / "metadata.json").stat().st_mtime_ns,
            reverse=True,
        )
        pruned = [d.name for d in versions[keep:] if d.name != current]
        for name in pruned:
            shutil.rmtree(folder / name)
        return pruned

    def cleanup(self, build: BuildRecord, host: Host) -> None:
        if self.owns_host(build, host):
            shutil.rmtree(host.id, ignore_errors=True)
        elif Path(host.id).exists():
            log.warning("build host %s is not build %s's tree; left in place", host.id, build.build_id)
