"""``imagebuild gc --cloud local``: what builds leave under the local target's work root.

Planted in a work root shared by two pipelines: a delivered build's leftover tree, checkpoint and
scratch; a failed build's recorded tree and checkpoint (what a resume starts from) beside an
unrecorded checkpoint and a raw disk a killed seal left; an unknown build's folder and the boot check
VM a SIGKILLed worker left running. Decoys that must survive: the sealed images (retention's), a
kept checkpoint, another pipeline's folder and VM, a folder without the mark, a symlinked folder
and a symlinked checkpoint pointing outside the work root, a tree with a file system mounted inside
(when this machine lets the test mount one).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.local import LocalTarget
from airflow_provider_imagebuild.targets.local_leaks import mark_build_folder, vm_marker
from airflow_provider_imagebuild.toolchain.qemu import VM_MARK_ENV
from tests.helpers import gc_minutes_later


def _folder(work: Path, pipeline: str, build_id: str, *names: str, marked: bool = True) -> Path:
    folder = work / build_id
    if marked:
        mark_build_folder(folder, pipeline, build_id)
    else:
        folder.mkdir(parents=True)
    (folder / "ssh").mkdir()
    (folder / "ssh/id_ed25519").write_text("key")
    for name in names:
        if name.endswith("/"):
            (folder / name).mkdir()
            (folder / name / "etc").mkdir()
            (folder / name / "etc/os-release").write_text("debian")
        else:
            (folder / name).write_bytes(b"x" * 1000)
    return folder


@pytest.fixture
def vms() -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(marker: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "300"], env={**os.environ, VM_MARK_ENV: marker})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_gc_on_local_deletes_what_builds_left_under_the_work_root_and_nothing_else(
    tmp_path: Path, vms: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"gc-local-{uuid.uuid4().hex[:8]}"
    work, outside = tmp_path / "work", tmp_path / "outside"
    url = f"sqlite:///{tmp_path}/state.db"
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    spec = tmp_path / "local.yaml"
    spec.write_text(f"""pipeline: {name}
cloud: local
image_type: base
store: {url}
target: {{work_dir: {work}, catalog: {tmp_path / "catalog"}, keep_checkpoints: [10]}}
milestones:
  10: {{action: ansible, playbook: site.yml}}
  95: {{action: seal}}
  100: {{action: publish}}
""")
    target = LocalTarget(TargetSpec(work_dir=str(work)), pipeline=name, image_type="base")
    store = open_store(url)
    plan = [0, 10, 20, 95, 100]

    done = _folder(work, name, "done-1", "rootfs/", "checkpoint-010.tar", "checkpoint-020.tar", "image.raw",
                   "boot-seal/", f"{name}-done-1.qcow2", "checkpoint-030.tar.partial",
                   ".checkpoint-015.tar.part")  # fmt: skip  # a capture and a reuse's copy, killed half-way
    store.create_build("done-1", pipeline=name, cloud="local", image_type="base", plan=plan)
    for code in plan[1:]:
        outputs = {"checkpoint_image": str(done / "checkpoint-010.tar")} if code == 10 else {}
        store.complete("done-1", code, token=store.begin("done-1", code, owner="w").token, outputs=outputs)

    failed = _folder(work, name, "failed-1", "rootfs/", "checkpoint-010.tar", "checkpoint-020.tar", "image.raw",
                     f"{name}-failed-1.qcow2")  # fmt: skip
    store.create_build("failed-1", pipeline=name, cloud="local", image_type="base", plan=plan)
    lease = store.begin("failed-1", 10, owner="w")
    store.set_metadata("failed-1", {"host_id": str(target.root_of("failed-1"))}, token=lease.token, state=10)
    store.complete("failed-1", 10, token=lease.token, outputs={"checkpoint_image": str(failed / "checkpoint-010.tar")})
    store.fail("failed-1", 20, token=store.begin("failed-1", 20, owner="w").token, error="boom")

    gone = _folder(work, name, "gone-1", "rootfs/", "checkpoint-010.tar", "imagebuild-disk-abc/")
    gone_vm = vms(vm_marker(name, "gone-1"))

    leaks = {str(done / n) for n in ("rootfs", "checkpoint-020.tar", "image.raw", "boot-seal",
                                     "checkpoint-030.tar.partial", ".checkpoint-015.tar.part")}  # fmt: skip
    leaks |= {str(failed / "checkpoint-020.tar"), str(failed / "image.raw"), f"pid:{gone_vm.pid}"}
    leaks |= {str(gone / n) for n in ("rootfs", "checkpoint-010.tar", "imagebuild-disk-abc")}

    other = _folder(work, f"{name}-other", "theirs-1", "rootfs/", "checkpoint-010.tar")
    their_vm = vms(vm_marker(f"{name}-other", "theirs-1"))
    unmarked = _folder(work, name, "unmarked-1", "rootfs/", "checkpoint-010.tar", marked=False)
    precious = _folder(outside, name, "linked-1", "rootfs/", "checkpoint-010.tar")
    (work / "linked-1").symlink_to(precious)
    (outside / "secret.tar").write_text("not the build's")
    (failed / "checkpoint-030.tar").symlink_to(outside / "secret.tar")

    gc_minutes_later(monkeypatch, 60)  # gc runs an hour after all this was left
    mounted = _folder(work, name, "mounted-1", "rootfs/")  # a playbook's mount left inside the tree
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mounted / "rootfs/etc")], check=True)
    (mounted / "rootfs/etc/inside").write_text("on the mounted file system")
    try:
        _collect(spec, leaks | {str(mounted / "rootfs")}, done, failed, gone, gone_vm, their_vm)
        assert (mounted / "rootfs/etc/inside").is_file()  # listed, never deleted: rmtree would cross the mount
    finally:
        subprocess.run(["umount", "-l", str(mounted / "rootfs/etc")], check=True)
    assert (done / f"{name}-done-1.qcow2").is_file() and (done / "checkpoint-010.tar").is_file()  # kept
    assert (failed / "rootfs/etc/os-release").is_file() and (failed / "checkpoint-010.tar").is_file()  # recorded
    assert (failed / f"{name}-failed-1.qcow2").is_file()  # retention's
    assert (other / "rootfs").is_dir() and (unmarked / "rootfs").is_dir() and (precious / "rootfs").is_dir()
    assert (outside / "secret.tar").read_text() == "not the build's" and (failed / "checkpoint-030.tar").is_symlink()
    assert {row["id"] for row in _gc(spec, "--older-than", "30m")["leaks"]} == {str(mounted / "rootfs")}


def _gc(spec: Path, *args: str) -> dict[str, Any]:
    got = CliRunner().invoke(cli, ["gc", "--cloud", "local", "--spec", str(spec), "--json", *args])
    assert got.exit_code == 0, got.output
    return dict(json.loads(got.stdout))


def _collect(spec: Path, leaks: set[str], done: Path, failed: Path, gone: Path, gone_vm: Any, their_vm: Any) -> None:
    """Listed, then deleted: exactly ``leaks`` (the mounted tree listed, not deleted)."""

    def gc(*args: str) -> dict[str, Any]:
        return _gc(spec, *args)

    assert gc("--older-than", "2h")["leaks"] == []  # everything was left an hour ago
    listed = gc("--older-than", "30m")
    assert {row["id"] for row in listed["leaks"]} == leaks, listed
    reasons = {row["id"]: row["reason"] for row in listed["leaks"]}
    assert reasons[str(done / "rootfs")] == "delivered" and reasons[str(gone / "rootfs")] == "unknown to the store"
    assert reasons[str(failed / "image.raw")].startswith("not leased for ")
    assert reasons[f"pid:{gone_vm.pid}"] == "unknown to the store"
    assert not any(row["deleted"] for row in listed["leaks"]) and (gone / "rootfs").is_dir()

    applied = gc("--older-than", "30m", "--apply")
    deleted = {row["id"] for row in applied["leaks"] if row["deleted"]}
    assert deleted == {i for i in leaks if "mounted-1" not in i}, applied
    assert not any(Path(i).exists() for i in deleted if i.startswith("/"))
    assert gone_vm.wait(10) == -9 and their_vm.poll() is None
    assert not gone.exists()  # nothing but its mark and key was left: the folder went with them


def test_a_local_build_folder_is_its_pipelines_only(tmp_path: Path) -> None:
    """The mark written when a build's folder is first made refuses another pipeline's build of the
    same id in a shared work root (they would overwrite each other's tree and checkpoints)."""
    from airflow_provider_imagebuild.errors import InvalidInput

    mark_build_folder(tmp_path / "b-1", "one", "b-1")
    mark_build_folder(tmp_path / "b-1", "one", "b-1")  # the same build again: fine
    with pytest.raises(InvalidInput, match=r"target\.work_dir.*pipeline one"):
        mark_build_folder(tmp_path / "b-1", "two", "b-1")
