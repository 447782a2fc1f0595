"""The project ``imagebuild init --cloud local`` makes (the milestones of ``make demo``'s
``local-debian-base``), publishing where the shipped ``local-debian-everywhere`` does, through
``dag.test()``, with everything real:
debootstrap from the cached base, ansible-runner over chroot, the bootable disk (sfdisk, mkfs,
GRUB) + qemu-img, boot checks in qemu (the green image under BIOS, the sealed image under UEFI with
the verification playbook over SSH), the catalog; its Glance is the loopback OpenStack fake
(driven by openstacksdk) and its content library is govmomi's vCenter simulator (pyVmomi and the
vAPI), both reached through Airflow connections. (The plain qemu command docs/authors-guide/local.md
gives for booting a delivered image by hand boots the clouds' stand-in guest, tests/servers/guest.py,
in every session.)

A failure injected at 85 stops the first run. Then the build host (the root filesystem tree) is
removed behind the build's back. The second run (what clearing the task does) resumes at 85: it
relaunches the host from the latest checkpoint archive (after 30), replays 70 on it (recorded in
the history), runs 85 and seals; the launch test kills a VM a lost worker left for the build
first; its publish reaches the catalog and the content library, but the upload to Glance arrives
damaged (the checksums disagree), so the task fails; its retry publishes to Glance alone and
delivers. Every other milestone ran exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import file_hash
from airflow_provider_imagebuild.targets.local_leaks import vm_marker
from airflow_provider_imagebuild.toolchain.process import marked_processes
from airflow_provider_imagebuild.toolchain.qemu import VM_MARK_ENV
from tests.dags.conftest import ROOT
from tests.servers.samples import offline_watches

WHEN = datetime(2026, 11, 5, 2, 0, tzinfo=timezone.utc)


PIPELINE = "local-debian-everywhere"


@pytest.fixture
def local(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_os: Any, vsphere_library: str
) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import OPENSTACK_CONN_ID, VSPHERE_CONN_ID

    # The spec's openstack_default and vsphere_default connections: the fake and the simulator.
    for default, test in (("OPENSTACK_DEFAULT", OPENSTACK_CONN_ID), ("VSPHERE_DEFAULT", VSPHERE_CONN_ID)):
        monkeypatch.setenv(f"AIRFLOW_CONN_{default}", os.environ[f"AIRFLOW_CONN_{test.upper()}"])

    store_url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("IMAGEBUILD_STORE", store_url)
    monkeypatch.setenv("IMAGEBUILD_WORK", str(tmp_path / "work"))
    monkeypatch.setenv("IMAGEBUILD_CATALOG", str(tmp_path / "catalog"))
    bag = DagBag(dag_folder=str(scaffolded(tmp_path / "golden") / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["imagebuild_local_debian_everywhere"]
    return {"dag": dag, "store": open_store(store_url), "tmp": tmp_path, "glance": fake_os}


def scaffolded(folder: Path) -> Path:
    """The project ``imagebuild init --cloud local`` makes (its own copies of the playbooks, its
    DAG file), publishing where the shipped ``local-debian-everywhere`` spec publishes."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    args = ["init", str(folder), "--cloud", "local", "--os", "debian-12", "--image-type", "base", "--name", PIPELINE]
    got = CliRunner().invoke(cli, args)
    assert got.exit_code == 0, got.output
    spec_path = folder / f"dags/pipelines/{PIPELINE}.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    shipped = yaml.safe_load((ROOT / f"dags/pipelines/{PIPELINE}.yaml").read_text())
    spec["publish"], spec["policy"] = shipped["publish"], shipped["policy"]  # and its policy gate (#33)
    spec_path.write_text(yaml.safe_dump(offline_watches(spec), sort_keys=False))  # no mirror on the internet
    return folder


def _run(dag: Any, monkeypatch: pytest.MonkeyPatch, fail_at: str = "") -> str:
    monkeypatch.setenv("IMAGEBUILD_FAIL_AT", fail_at)
    return str(dag.test(logical_date=WHEN, run_conf={"build_id": "local-1"}).state)


@pytest.mark.slow
def test_local_image_is_built_resumed_sealed_and_published(
    local: dict[str, Any], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    dag, store, tmp = local["dag"], local["store"], local["tmp"]
    assert _run(dag, monkeypatch, "85") == "failed"
    rec = store.get("local-1")
    assert rec.completed == [0, 5, 10, 15, 20, 25, 30, 70] and (rec.current_state, rec.status) == (85, "failed")
    root = Path(rec.metadata["host_id"])
    assert root == tmp / "work/local-1/rootfs" and (root / "etc/motd").is_file()
    assert Path(rec.milestones[10].outputs["checkpoint_image"]).is_file()
    shutil.rmtree(root)  # the build host is lost

    local["glance"].corrupt_uploads = 1  # the first upload to Glance arrives damaged
    # A VM a lost worker left running for this build's boot check, and another build's: the launch
    # test (97) kills the first before it boots (qemu.Vm.start) and never touches the second.
    lost, theirs = (marked_sleep(request, vm_marker(PIPELINE, build)) for build in ("local-1", "local-2"))
    assert _run(dag, monkeypatch) == "success"
    assert lost.wait(timeout=5) is not None and theirs.poll() is None
    assert marked_processes(VM_MARK_ENV, vm_marker(PIPELINE, "local-1")) == []  # nothing left running
    rec = store.get("local-1")
    assert rec.delivered
    # 100's first try published to the catalog and the content library, and failed at Glance; its
    # retry (Airflow's, as a clear would) published to Glance alone.
    first, second = [a for a in rec.attempts_at(100) if a.kind == "run"]
    assert (first.status, second.status) == ("failed", "completed") and "glance" in str(first.error)
    at = {k: json.loads(rec.metadata[f"published.{k}"])["at"] for k in ("catalog", "glance", "vsphere_library")}
    assert at["catalog"] < second.started_at and at["vsphere_library"] < second.started_at < at["glance"]
    runs = [a.state for a in rec.attempts if a.kind == "run"]
    assert all(runs.count(code) == 1 for code in rec.plan if code not in (0, 85, 100)), runs
    assert [a.status for a in rec.attempts_at(85)] == ["failed", "completed"]
    replays = [(a.state, a.owner.split("/")[2]) for a in rec.attempts if a.kind == "replay"]
    assert replays == [(70, "s085_metadata")]
    assert rec.milestones[70].outputs["ansible_failed"] == 0

    # The image: a compressed qcow2 of an ext4 filesystem holding what the playbooks wrote.
    image = Path(rec.milestones[95].outputs["image_id"])
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert info["format"] == "qcow2"
    raw = tmp / "check.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    table = subprocess.run(["sfdisk", "-J", str(raw)], capture_output=True, text=True, check=True).stdout
    root_part = json.loads(table)["partitiontable"]["partitions"][-1]  # GPT: BIOS boot, ESP, root
    root_fs = f"{raw}?offset={root_part['start'] * 512}"
    motd = subprocess.run(["debugfs", "-R", "cat /etc/motd", root_fs], capture_output=True, text=True, check=True)
    assert f"Golden image {PIPELINE} (base), build local-1" in motd.stdout
    sudoers = subprocess.run(
        ["debugfs", "-R", "cat /etc/sudoers.d/10-admin", root_fs], capture_output=True, text=True, check=True
    )
    assert "admin ALL=(ALL) NOPASSWD:ALL" in sudoers.stdout
    fstab = subprocess.run(["debugfs", "-R", "cat /etc/fstab", root_fs], capture_output=True, text=True, check=True)
    assert f"UUID={rec.milestones[95].outputs['root_uuid']} / ext4" in fstab.stdout
    raw.unlink()

    # The catalog entry, its metadata and the latest pointer.
    entry = tmp / f"catalog/{PIPELINE}/versions/local-1"
    meta = json.loads((entry / "metadata.json").read_text())
    assert meta["sha256"] == rec.milestones[95].outputs["image_sha256"]
    assert [m["code"] for m in meta["milestones"]] == rec.plan[:-1]
    assert (tmp / f"catalog/{PIPELINE}/latest").resolve() == entry.resolve()
    # The spec's policy passed at 90 on the build host's packages; the seal's bill of materials
    # (CycloneDX, from the image's own dpkg database) is beside the image in the catalog (#33).
    gate, sealed_out = rec.milestones[90].outputs, rec.milestones[95].outputs
    assert gate["policy_passed"] is True and gate["packages_sha256"] == sealed_out["packages_sha256"]
    assert meta["sbom"] == {
        "file": f"{PIPELINE}-local-1.cdx.json", "sha256": sealed_out["sbom_sha256"], "format": "CycloneDX",
        "packages": sealed_out["sbom_packages"],
    }  # fmt: skip
    sbom = json.loads((entry / meta["sbom"]["file"]).read_text())
    versions = {c["name"]: c["version"] for c in sbom["components"]}
    assert len(sbom["components"]) == sealed_out["sbom_packages"] > 100 and versions["openssh-server"].startswith("1:9")
    assert sealed_out["sbom_kernel"] and versions[sbom_kernel_package(sbom)] == sealed_out["sbom_kernel"]
    assert {t["name"] for t in sbom["metadata"]["tools"]["components"]} >= {"ansible-core", "provider"}
    # What each milestone was made from (#32): 5 from the cached Debian base (its checksum, what the
    # sample's image: source watch resolves to), 15 from its playbook and the files it includes, its
    # watched mirror (offline here: unavailable, so nothing is ever reused on it), the Ansible it ran.
    bootstrap, base_config = rec.completed_attempt(5), rec.completed_attempt(15)
    assert bootstrap is not None and bootstrap.inputs is not None and base_config is not None and base_config.inputs
    assert bootstrap.inputs["source_image"].startswith("sha256:") and bootstrap.inputs["tool:provider"]
    assert {"file:../ansible/15-base-config.yml", "file:../ansible/family.yml", "tool:ansible-core"} <= set(
        base_config.inputs
    )
    assert base_config.inputs["watch:debian_mirror"].startswith("unavailable:")
    assert all(rec.fingerprint_of(code) for code in rec.plan[1:])
    # What built it: the toolchain's versions, in the record and in the catalog entry.
    from importlib.metadata import version

    assert rec.metadata["built_with.ansible_core"] == version("ansible-core")
    assert meta["built_with"]["provider"] == version("airflow-provider-imagebuild") and meta["built_with"]["packer"]
    assert not root.exists()  # the build host is removed after publishing
    assert not Path(rec.milestones[30].outputs["checkpoint_image"]).exists()  # not kept

    # The same image in Glance (checksums verified) and in the content library (an OVF template).
    destinations = rec.milestones[100].outputs["destinations"]
    assert set(destinations) == {"catalog", "glance", "vsphere_library"}
    glance = local["glance"].images[destinations["glance"]["image_id"]]
    assert glance["status"] == "active" and glance["os_hash_value"] == file_hash(image, "sha512")
    assert glance["os_distro"] == "debian" and glance["hw_disk_bus"] == "virtio"
    assert glance["imagebuild_ansible_core_version"] == rec.metadata["built_with.ansible_core"]
    assert destinations["vsphere_library"]["files"] == [f"{PIPELINE}-local-1.{x}" for x in ("ovf", "vmdk", "mf")]

    # Each build proved its image boots: the green image (BIOS) and the sealed image itself (UEFI,
    # the verification playbook over SSH), the one the catalog holds, in the launch test (97): the
    # seal (95) boots nothing itself when the plan has one.
    green, sealed = rec.milestones[10].outputs, rec.milestones[97].outputs
    assert not any(key.startswith("boot_sealed_") for key in rec.milestones[95].outputs)
    assert (green["boot_green_passed"], green["boot_green_firmware"]) == (True, "bios")
    assert (sealed["boot_sealed_passed"], sealed["boot_sealed_firmware"]) == (True, "uefi")
    assert sealed["boot_sealed_playbook_failed"] == 0 and sealed["boot_sealed_playbook_ok"] >= 3
    assert sealed["boot_sealed_sha256"] == meta["sha256"] and sealed["boot_sealed_image"] == str(image)
    assert green["boot_green_login_prompt_s"] <= green["boot_green_ssh_s"] <= green["boot_green_total_s"]


def sbom_kernel_package(sbom: dict[str, Any]) -> str:
    """The component the bill of materials marks as the image's kernel."""
    (kernel,) = [c["name"] for c in sbom["components"] if {"name": "imagebuild:kernel", "value": "true"} in
                 c.get("properties", [])]  # fmt: skip
    return str(kernel)


def marked_sleep(request: pytest.FixtureRequest, marker: str) -> subprocess.Popen[bytes]:
    """A process that looks like a boot check's VM to the local target (its marker in the environment)."""
    child = subprocess.Popen(["sleep", "600"], env={**os.environ, VM_MARK_ENV: marker})
    request.addfinalizer(lambda: (child.kill(), child.wait()))
    return child
