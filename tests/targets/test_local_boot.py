"""Boot checks on the local target: the spec's ``target.boot``, the publish gate, the KVM probe, and a
sealed image that cannot boot, booted for real in qemu (TCG) and never published.

The image that boots (green image under BIOS, sealed image under UEFI, then the delivered catalog
copy with the local target page's plain qemu command) is the one ``tests/operators/test_local_pipeline.py``
builds through ``dag.test()``.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_imagebuild.build.record import parse_ts
from airflow_provider_imagebuild.dag_factory import build_dag
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec.boot import BOOT_CHECK_CLOUDS
from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, parse_spec
from airflow_provider_imagebuild.store import BuildStore, open_store
from airflow_provider_imagebuild.targets import target_class
from airflow_provider_imagebuild.targets.base import file_hash
from airflow_provider_imagebuild.targets.boot import (
    LOGIN_PROMPT,
    SEALED_IMAGE,
    BootReport,
    BootRequest,
    SshEndpoint,
    check_guest,
    console_tail,
    dead_end,
)
from airflow_provider_imagebuild.targets.disk import MARKER
from airflow_provider_imagebuild.targets.registry import TARGETS
from airflow_provider_imagebuild.toolchain import qemu
from airflow_provider_imagebuild.toolchain.process import marked_processes
from tests.dags.conftest import ROOT, write
from tests.helpers import task_context

GREEN = ROOT / "dags/ansible/10-green-image.yml"
BREAK_KERNEL = """
- name: A seal that breaks the image
  hosts: all
  gather_facts: false
  tasks:
    - name: The kernel is removed
      ansible.builtin.shell: rm -f /boot/vmlinuz-* /vmlinuz /vmlinuz.old
      changed_when: true
"""


def _spec(**target: Any) -> dict[str, Any]:
    return {"pipeline": "p", "cloud": "local", "image_type": "base", "target": target}


# -- the spec ----------------------------------------------------------------------------------------
def test_boot_settings_default_to_both_boots_and_are_refused_where_no_target_can_boot() -> None:
    boot = parse_spec(_spec()).target.boot  # type: ignore[union-attr]
    assert (boot.green_image, boot.before_publish, boot.timeout, boot.accel) == ("bios", "uefi", 600, "auto")
    off = parse_spec(_spec(boot={"green_image": False, "before_publish": False})).target.boot  # type: ignore[union-attr]
    assert not off.enabled
    for cloud in BOOT_CHECK_CLOUDS:  # every cloud has its launch test: target.boot is its settings
        assert parse_spec({"pipeline": "p", "cloud": cloud, "image_type": "base", "target": {"boot": {"timeout": 60}}})
    with pytest.raises(SpecError, match=r"target\.boot\.green_image"):
        parse_spec(_spec(boot={"green_image": "coreboot"}))
    with pytest.raises(SpecError, match=r"target\.boot\.timeout"):
        parse_spec(_spec(boot={"timeout": 5}))
    with pytest.raises(SpecError, match=r"target\.boot\.user: 'root' is not a login name"):
        parse_spec(_spec(boot={"user": "root"}))


def test_a_spec_key_without_its_private_half_cannot_log_in_for_a_boot_check() -> None:
    with pytest.raises(SpecError, match=r"target\.ssh_private_key_file: the boot checks log in with the private half"):
        parse_spec(_spec(ssh_public_key="ssh-ed25519 AAAA test"))
    parse_spec(_spec(ssh_public_key="ssh-ed25519 AAAA test", ssh_private_key_file="/keys/id"))
    parse_spec(_spec(ssh_public_key="ssh-ed25519 AAAA test", boot={"green_image": False, "before_publish": False}))


def test_the_verification_playbook_is_found_beside_the_spec(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder / "checks.yml", "- hosts: all\n  tasks: []\n")
    spec = load_spec(write(folder / "p.yaml", "pipeline: p\ncloud: local\nimage_type: base\n"
                                              "target: {boot: {playbook: checks.yml}}\n"))  # fmt: skip
    assert spec.target.boot.playbook == str(folder / "checks.yml")  # type: ignore[union-attr]
    write(folder / "p.yaml", "pipeline: p\ncloud: local\nimage_type: base\ntarget: {boot: {playbook: gone.yml}}\n")
    with pytest.raises(SpecError, match=r"target\.boot\.playbook: file gone\.yml not found"):
        load_spec(folder / "p.yaml")


def test_the_clouds_that_boot_check_are_those_whose_target_does() -> None:
    """``target.boot`` is accepted for exactly the targets that implement the verb; the others
    answer the contract's default, one line naming the setting."""
    request = BootRequest(SEALED_IMAGE, "uefi", timeout_s=60, user="admin")
    for cloud in TARGETS:
        target = target_class(cloud)
        assert target.boot_checks == (cloud in BOOT_CHECK_CLOUDS), cloud
        if not target.boot_checks:
            with pytest.raises(InvalidInput, match=f"target.boot: boot checks are not available on the {cloud} target"):
                target.boot_check(object.__new__(target), None, "image", request)  # type: ignore[arg-type]


def test_the_serial_console_is_read_for_the_login_prompt_dead_ends_and_its_tail() -> None:
    """getty's prompt counts even with a kernel message after it on its line; a kernel line that
    mentions a login does not; what no boot gets past ends the check; the tail an error quotes is
    plain text, without the firmware's terminal escapes."""
    assert LOGIN_PROMPT.search(b"Debian GNU/Linux 12 web ttyS0\r\n\r\nweb login: ")
    assert LOGIN_PROMPT.search(b"web login: [   35.120000] random: crng init done\r\n")
    assert not LOGIN_PROMPT.search(b"[   12.5] systemd-logind[201]: New seat seat0. login: x\r\n")
    assert dead_end(b"Welcome to GRUB!\r\nerror: file `/vmlinuz' not found.\r\n" + MARKER.encode())
    assert dead_end(b"[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs") == "the kernel panicked"
    assert dead_end(b"error: no suitable video mode found.\r\nBooting in blind mode\r\n") is None
    raw = b"\x1b[2J\x1b[01;01HBdsDxe: loading Boot0001\r\n" + b"".join(b"line %d\r\n" % i for i in range(50))
    tail = console_tail(raw, lines=3)
    assert tail == "line 47\nline 48\nline 49" and "\x1b" not in console_tail(raw)


# -- publish only what passed its boot check ------------------------------------------------------
def _sealed(tmp_path: Path, outputs: dict[str, Any]) -> tuple[Any, BuildStore, Path]:
    """A pipeline of seal and publish whose seal (95) is recorded with ``outputs`` (and the image's)."""
    folder = tmp_path / "pipelines"
    text = f"""pipeline: gate
cloud: local
image_type: base
store: sqlite:///{tmp_path}/state.db
target: {{work_dir: {tmp_path}/work, catalog: {tmp_path}/catalog}}
milestones:
  95: {{action: seal}}
  100: {{action: publish}}
"""
    spec = load_spec(write(folder / "gate.yaml", text))
    dag = build_dag(spec, folder)
    store = open_store(str(spec.store))
    build = store.create_build("gate-1", pipeline="gate", cloud="local", image_type="base", plan=[0, 95, 100])
    image = tmp_path / "work/gate-1/gate-gate-1.qcow2"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"sealed image" * 1000)
    lease = store.begin(build.build_id, 95, owner="test")
    stand_ins = {"IMAGE": str(image), "SHA256": file_hash(image)}  # this seal's own image and checksum
    sealed = {"image_id": str(image), "image_sha256": file_hash(image)}
    sealed.update({key: stand_ins.get(value, value) for key, value in outputs.items()})
    store.complete(build.build_id, 95, token=lease.token, outputs=sealed)
    return next(t for t in dag.tasks if t.state == 100), store, image  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "boot",
    [
        {},  # sealed by hand, or by a version without boot checks
        {"boot_sealed_passed": False},
        {"boot_sealed_passed": True, "boot_sealed_image": "/elsewhere/other.qcow2"},
        {"boot_sealed_passed": True, "boot_sealed_image": "IMAGE", "boot_sealed_sha256": "0" * 64},
    ],
    ids=["no-check", "failed", "another-image", "another-sha256"],
)
def test_a_sealed_image_without_a_passed_boot_check_of_its_own_is_never_published(
    tmp_path: Path, boot: dict[str, Any]
) -> None:
    task, store, _ = _sealed(tmp_path, boot)
    with pytest.raises(AirflowFailException, match=r"milestones\.95\.outputs\.boot_sealed_\w+: .* not published"):
        task.execute(task_context("gate-1", task.task_id))
    rec = store.get("gate-1")
    assert not rec.delivered and rec.attempts_at(100)[-1].status == "failed"
    assert not (tmp_path / "catalog").exists()


def test_a_sealed_image_that_passed_its_boot_check_is_published(tmp_path: Path) -> None:
    passed = {"boot_sealed_passed": True, "boot_sealed_image": "IMAGE", "boot_sealed_sha256": "SHA256"}
    task, store, image = _sealed(tmp_path, passed)
    task.execute(task_context("gate-1", task.task_id))
    assert store.get("gate-1").delivered
    assert file_hash(tmp_path / "catalog/gate/versions/gate-1/gate-gate-1.qcow2") == file_hash(image)


# -- the launch test milestone ----------------------------------------------------------------------
# What a cloud's seal, launch test and publish need besides the key (its spec names them missing first).
CLOUD_SETTINGS: dict[str, dict[str, str]] = {
    "azure": {"resource_group": "rg-imagebuild", "location": "westeurope", "network": "vnet-build/builders",
              "ssh_public_key": "ssh-ed25519 AAAA test", "gallery": "golden", "gallery_image": "web"},
    "gcp": {"zone": "europe-west1-b", "image_family": "web"},
    "vsphere": {"datacenter": "DC0", "datastore": "LocalDS_0", "cluster": "DC0_C0", "content_library": "golden"},
    "openstack": {"flavor": "m1.small", "network": "build-net"},
}  # fmt: skip


def _with_launch_test(cloud: str = "local", **milestones: Any) -> dict[str, Any]:
    target: dict[str, Any] = {} if cloud == "local" else {"ssh_private_key_file": "/keys/id"}
    target.update(CLOUD_SETTINGS.get(cloud, {}))
    plan = {95: {"action": "seal"}, 97: {"action": "launch_test"}, 100: {"action": "publish"}}
    plan.update({int(code.lstrip("m")): value for code, value in milestones.items()})
    return {"pipeline": "p", "cloud": cloud, "image_type": "base", "target": target,
            "milestones": {code: value for code, value in plan.items() if value is not None}}  # fmt: skip


def test_a_launch_test_is_one_milestone_after_the_seal_and_before_publish() -> None:
    """The action exists on the targets that boot check, tests the sealed image (a seal first, no
    publish before it), is not skipped by default and shows in the plan; the clouds log in to their
    test instance with target.ssh_private_key_file."""
    from airflow_provider_imagebuild.plan import plan_from_spec

    plan = plan_from_spec(parse_spec(_with_launch_test()))
    step = next(s for s in plan.steps if s.code == 97)
    assert (step.action, step.task_id, step.title) == (
        "launch_test",
        "s097_launch_test",
        "Launch test of the sealed image",
    )
    assert 97 in plan.unskippable
    assert {"code": 97, "action": "launch_test"}.items() <= plan.to_public()["steps"][-2].items()
    with pytest.raises(SpecError, match=r"milestones\.97: a launch_test tests the sealed image: a seal must come"):
        parse_spec(_with_launch_test(m95=None))
    with pytest.raises(SpecError, match=r"milestones\.97: a launch_test must come before publish \(milestone 96\)"):
        parse_spec(_with_launch_test(m96={"action": "publish", "key": "early"}, m100={"action": "noop"}))
    with pytest.raises(SpecError, match=r"milestones\.98: only one launch_test milestone \(there is one at 97\)"):
        parse_spec(_with_launch_test(m98={"action": "launch_test", "key": "again"}))
    with pytest.raises(SpecError, match=r"target\.boot\.before_publish: is false, .* milestone 97 is a launch_test"):
        parse_spec({**_with_launch_test(), "target": {"boot": {"before_publish": False}}})
    cloud = next((c for c in TARGETS if c not in BOOT_CHECK_CLOUDS), None)
    if cloud is not None:  # until every cloud has its launch test
        with pytest.raises(SpecError, match=r"milestones\.97: action 'launch_test' is not available for cloud"):
            parse_spec(_with_launch_test(cloud))
    for cloud in BOOT_CHECK_CLOUDS:
        if cloud != "local":
            spec = _with_launch_test(cloud)
            spec["target"].pop("ssh_private_key_file")
            with pytest.raises(SpecError, match=r"target\.ssh_private_key_file: milestone 97's launch test logs in"):
                parse_spec(spec)


def _launch_tested(tmp_path: Path, check: dict[str, Any]) -> tuple[Any, BuildStore]:
    """Seal (95, without a boot of its own), launch test (97, recorded with ``check``), publish."""
    folder = tmp_path / "pipelines"
    text = f"""pipeline: gate
cloud: local
image_type: base
store: sqlite:///{tmp_path}/state.db
target: {{work_dir: {tmp_path}/work, catalog: {tmp_path}/catalog}}
milestones:
  95: {{action: seal}}
  97: {{action: launch_test}}
  100: {{action: publish}}
"""
    spec = load_spec(write(folder / "gate.yaml", text))
    dag = build_dag(spec, folder)
    store = open_store(str(spec.store))
    build = store.create_build("gate-1", pipeline="gate", cloud="local", image_type="base", plan=[0, 95, 97, 100])
    image = tmp_path / "work/gate-1/gate-gate-1.qcow2"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"sealed image" * 1000)
    stand_ins = {"IMAGE": str(image), "SHA256": file_hash(image)}
    lease = store.begin(build.build_id, 95, owner="test")
    store.complete(
        build.build_id, 95, token=lease.token, outputs={"image_id": str(image), "image_sha256": file_hash(image)}
    )
    lease = store.begin(build.build_id, 97, owner="test")
    store.complete(build.build_id, 97, token=lease.token,
                   outputs={key: stand_ins.get(value, value) for key, value in check.items()})  # fmt: skip
    return next(t for t in dag.tasks if t.state == 100), store  # type: ignore[attr-defined]


def test_publish_takes_the_launch_tests_passed_check_of_this_sealed_image(tmp_path: Path) -> None:
    """With a launch test in the plan the seal boots nothing; publish accepts the launch test's check
    of this very image (id and SHA-256) and refuses one of another image, naming milestone 97."""
    passed = {"boot_sealed_passed": True, "boot_sealed_image": "IMAGE", "boot_sealed_sha256": "SHA256"}
    task, store = _launch_tested(tmp_path, passed)
    task.execute(task_context("gate-1", task.task_id))
    assert store.get("gate-1").delivered

    other = tmp_path / "other"
    other.mkdir()
    task, store = _launch_tested(other, {**passed, "boot_sealed_sha256": "0" * 64})
    with pytest.raises(AirflowFailException, match=r"milestones\.97\.outputs\.boot_sealed_sha256: .* not published"):
        task.execute(task_context("gate-1", task.task_id))
    assert not store.get("gate-1").delivered


# -- qemu ---------------------------------------------------------------------------------------------
def test_the_kvm_probe_guest_speaks_and_its_verdict_is_kept_for_this_host_boot(tmp_path: Path) -> None:
    """The probe's boot sector prints under emulation (so a silent KVM guest means KVM hangs); a
    verdict of this host boot and qemu is reused, one of another boot is probed again."""
    assert qemu.probe_kvm(qemu.qemu_binary(), tmp_path, accel="tcg")
    assert (qemu.accelerator("tcg", tmp_path, print), qemu.accelerator("kvm", tmp_path, print)) == ("tcg", "kvm")
    key = {"boot_id": qemu._boot_id(), "qemu": qemu._qemu_version(qemu.qemu_binary())}
    (tmp_path / "kvm-probe.json").write_text(json.dumps({**key, "kvm": True}))
    started = time.monotonic()
    assert qemu.accelerator("auto", tmp_path, print) == "kvm"  # kept: no qemu started
    assert time.monotonic() - started < 1.0
    (tmp_path / "kvm-probe.json").write_text(json.dumps({**key, "boot_id": "another boot", "kvm": True}))
    verdict = qemu.accelerator("auto", tmp_path, print)
    kept = json.loads((tmp_path / "kvm-probe.json").read_text())
    assert kept["boot_id"] == key["boot_id"] and verdict == ("kvm" if kept["kvm"] else "tcg")


def _silent_guest(tmp_path: Path, name: str) -> qemu.VmSettings:
    """A VM whose disk boots into a halt: it never prints, never shows a login prompt."""
    disk = tmp_path / f"{name}.raw"
    sector = bytearray(512)
    sector[:4] = b"\xfa\xf4\xeb\xfd"  # cli; hlt; jmp back to hlt
    sector[510:] = b"\x55\xaa"
    disk.write_bytes(bytes(sector))
    work = tmp_path / name
    work.mkdir()
    return qemu.VmSettings(disk, "raw", "bios", "tcg", 128, 1, work / "console.log", work, f"test-{name}")


@pytest.mark.parametrize("ending", ["cancelled", "timed out"])
def test_a_boot_check_that_ends_early_leaves_no_vm_behind(tmp_path: Path, ending: str) -> None:
    """Cancelled (the task was killed) or out of time: the check ends with the reason and the
    console's tail, and the VM, with everything it started, is gone when the block is left."""
    settings = _silent_guest(tmp_path, ending.replace(" ", "-"))
    started = time.monotonic()
    request = BootRequest(
        SEALED_IMAGE, "bios", timeout_s=3.0 if ending == "timed out" else 60.0, user="admin",
        cancelled=lambda: ending == "cancelled" and time.monotonic() - started > 1.5,
    )  # fmt: skip
    report = BootReport(SEALED_IMAGE, "bios", accel="tcg")
    with qemu.running_vm(settings) as vm:
        assert marked_processes(qemu.VM_MARK_ENV, settings.marker)  # it runs, marked as the build's
        check_guest(
            settings.console, SshEndpoint(vm.ssh_port, "admin", tmp_path / "no-key"), request, report, vm.exited
        )
    assert marked_processes(qemu.VM_MARK_ENV, settings.marker) == []
    assert not report.passed and report.checks == ({"login_prompt": "timed out"} if ending == "timed out" else {})
    expected = "timed out after 3 s waiting for a login prompt" if ending == "timed out" else "stopped: the milestone"
    assert report.failure.startswith(expected) and time.monotonic() - started < 30
    assert report.error_text().startswith(f"boot check of the sealed image failed (bios, tcg, {report.total_s:.0f} s)")


@pytest.mark.slow
def test_a_sealed_image_without_a_kernel_fails_its_boot_check_and_is_never_published(tmp_path: Path) -> None:
    """A seal whose playbook removes the kernel: the capture works, the sealed image does not boot.
    The seal fails at once (GRUB says so; no waiting for the timeout), its error names the check and
    quotes the serial console, the checkpoints stay for the fix, no qemu is left running, and
    publish cannot start: the catalog never sees the image."""
    folder = tmp_path / "pipelines"
    write(folder / "break-kernel.yml", BREAK_KERNEL)
    text = f"""pipeline: boot-broken
cloud: local
image_type: base
store: sqlite:///{tmp_path}/state.db
checkpoints: [10]
target:
  work_dir: {tmp_path}/work
  catalog: {tmp_path}/catalog
  boot: {{green_image: false, before_publish: uefi, timeout: 900}}
milestones:
  5: {{action: bootstrap}}
  10: {{action: ansible, playbook: {GREEN}}}
  95: {{action: seal, playbook: break-kernel.yml}}
  100: {{action: publish}}
"""
    spec = load_spec(write(folder / "broken.yaml", text))
    tasks = {t.state: t for t in build_dag(spec, folder).tasks}  # type: ignore[attr-defined]
    store = open_store(str(spec.store))
    for code in (0, 5, 10):
        tasks[code].execute(task_context("broken-1", tasks[code].task_id))
    assert "boot_green_passed" not in store.get("broken-1").milestones[10].outputs  # green_image: false

    with pytest.raises(TargetError, match="boot check of the sealed image failed"):
        tasks[95].execute(task_context("broken-1", tasks[95].task_id))
    rec = store.get("broken-1")
    attempt = rec.attempts_at(95)[-1]
    assert (rec.current_state, rec.status, attempt.status) == (95, "failed", "failed")
    error = str(attempt.error)
    assert "(uefi, tcg" in error and "GRUB found no kernel to boot" in error
    assert "serial console (last lines):" in error and MARKER in error
    took = (parse_ts(str(attempt.finished_at)) - parse_ts(attempt.started_at)).total_seconds()
    assert took < 300  # not the 900 s timeout
    assert Path(rec.milestones[10].outputs["checkpoint_image"]).is_file()  # kept for the fix
    marker = hashlib.sha256(b"boot-broken/broken-1").hexdigest()[:24]
    assert marked_processes(qemu.VM_MARK_ENV, marker) == []

    with pytest.raises(AirflowFailException, match="cannot start milestone 100"):
        tasks[100].execute(task_context("broken-1", tasks[100].task_id))
    assert not store.get("broken-1").delivered
    assert not (tmp_path / "catalog").exists()
