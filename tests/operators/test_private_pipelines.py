"""The shipped vSphere and OpenStack RHEL 8 web server pipelines, end to end through ``dag.test()``.

Real: Airflow, Packer (the shipped templates with the real ``vsphere-clone`` and ``openstack``
builders), pyVmomi and the vAPI against govmomi's vCenter simulator, openstacksdk, and the shipped
playbooks through ansible-runner over chroot into a Debian root filesystem that stands in for the
VM or server. Faked: the OpenStack cloud (tests/servers/openstack.py: Keystone, Nova, Glance and
Neutron at the HTTP boundary, following the API references).

Each run fails at 55, loses its build host behind the build's back, and resumes: the host is
relaunched from the checkpoint after 50 and the pipeline delivers, no completed milestone again.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write

WHEN = datetime(2026, 11, 4, 3, 15, tzinfo=timezone.utc)


def _dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    write(tmp_path / "pipelines/sample.yaml", spec)
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


def _fail_lose_resume(dag: Any, store: Any, build_id: str, monkeypatch: pytest.MonkeyPatch, lose: Any) -> Any:
    def run(fail_at: str = "") -> str:
        monkeypatch.setenv("IMAGEBUILD_FAIL_AT", fail_at)
        return str(dag.test(logical_date=WHEN, run_conf={"build_id": build_id}).state)

    assert run("55") == "failed"
    rec = store.get(build_id)
    assert rec.completed == [0, 5, 10, 15, 20, 25, 30, 45, 50] and (rec.current_state, rec.status) == (55, "failed")
    lose(rec.metadata["host_id"])
    assert run() == "success"
    rec = store.get(build_id)
    assert rec.delivered and rec.metadata["host_image"] == rec.milestones[50].outputs["checkpoint_image"]
    runs = [a.state for a in rec.attempts if a.kind == "run" and a.status == "completed"]
    assert sorted(runs) == sorted(set(runs)), "a completed milestone ran twice"
    return rec


@pytest.mark.slow
def test_vsphere_sample_resumes_from_a_checkpoint_template_and_publishes_to_the_library(
    airflow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    vsphere_library: str,
    build_host_root: Path,
    standin_guest: Any,
) -> None:
    """The launch test (97) clones and powers on its VM in the simulator (whose Tools report an
    address) and checks the stand-in guest (tests/servers/guest.py) over SSH instead."""
    from airflow_provider_imagebuild.clouds.vsphere import VsphereClients
    from tests.conftest import VSPHERE_CONN_ID
    from tests.servers.private_samples import VSPHERE_DAG_ID, vsphere_spec

    store_url = f"sqlite:///{tmp_path}/state.db"
    spec = vsphere_spec(store_url, build_host_root, VSPHERE_CONN_ID, standin_guest)
    dag = _dag(tmp_path, monkeypatch, spec, VSPHERE_DAG_ID)
    clients = VsphereClients.from_connection(VSPHERE_CONN_ID)

    def lose(uuid: str) -> None:
        from pyVmomi import vim

        vm = clients.content.searchIndex.FindByUuid(uuid=uuid, vmSearch=True, instanceUuid=True)
        assert isinstance(vm, vim.VirtualMachine)
        if vm.runtime.powerState == "poweredOn":  # the failed milestone parked it (powered off) already
            clients.wait("power off", vm.PowerOffVM_Task())
        clients.wait("destroy", vm.Destroy_Task())

    rec = _fail_lose_resume(dag, open_store(store_url), "vs-web-1", monkeypatch, lose)
    tested = rec.milestones[97].outputs  # the launch test booted a VM of the sealed template, destroyed since
    sealed = rec.milestones[95].outputs["image_id"]
    assert tested["boot_sealed_passed"] is True and tested["boot_sealed_image"] == sealed
    assert clients.content.searchIndex.FindByUuid(uuid=tested["boot_sealed_instance"], vmSearch=True,
                                                  instanceUuid=True) is None  # fmt: skip
    published = rec.milestones[100].outputs
    assert published["content_library"] == "golden-images" and published["library_item_id"]
    assert published["tags"] == {"os": "rhel8", "image-tier": "golden"}
    used = {a.state: a.usage or {} for a in rec.attempts if a.kind == "run" and a.status == "completed"}
    assert used[50]["checkpoint_gb"] == rec.milestones[50].outputs["checkpoint_gb"] > 0  # the template's storage (#31)
    assert rec.milestones[95].outputs["final_gb"] > 0


@pytest.mark.slow
def test_openstack_sample_resumes_from_a_server_snapshot_and_shares_the_image(
    airflow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_os: Any,
    build_host_root: Path,
    standin_guest: Any,
) -> None:
    """The launch test (97) boots its server from the sealed image in the fake, reads the stand-in
    guest's serial log as the server's console output and checks the stand-in over SSH instead."""
    from tests.conftest import OPENSTACK_CONN_ID
    from tests.servers.private_samples import OPENSTACK_DAG_ID, openstack_spec

    source = fake_os.add_image(f"rhel-8.10-{tmp_path.name[-10:]}", b"rhel 8.10", os_distro="rhel")
    fake_os.add_security_group("imagebuild-ssh")  # what the shipped spec names: the cloud must have them
    fake_os.add_keypair("imagebuild")
    monkeypatch.setattr(fake_os, "console_log", standin_guest.console)
    store_url = f"sqlite:///{tmp_path}/state.db"
    spec = openstack_spec(store_url, build_host_root, OPENSTACK_CONN_ID, fake_os.images[source]["name"], standin_guest)
    dag = _dag(tmp_path, monkeypatch, spec, OPENSTACK_DAG_ID)

    rec = _fail_lose_resume(dag, open_store(store_url), "os-web-1", monkeypatch, fake_os.remove_server)
    tested = rec.milestones[97].outputs
    assert (
        tested["boot_sealed_passed"] is True and tested["boot_sealed_image"] == rec.milestones[95].outputs["image_id"]
    )
    assert "boot_sealed_login_prompt_s" in tested and tested["boot_sealed_instance"] not in fake_os.servers
    final = fake_os.images[rec.milestones[95].outputs["image_id"]]
    assert final["visibility"] == "shared" and final["os_version"] == "8.10" and final["status"] == "active"
    assert (
        set(fake_os.members[final["id"]]) == set(rec.milestones[100].outputs["members"])
        and len(rec.milestones[100].outputs["members"]) == 2
    )
    assert rec.metadata["host_id"] == "" and rec.metadata["host_released"] not in fake_os.servers
    used = {a.state: a.usage or {} for a in rec.attempts if a.kind == "run" and a.status == "completed"}
    assert rec.milestones[50].outputs["checkpoint_gb"] > 0  # the snapshot's size in Glance (#31): bytes here
    assert used[50]["checkpoint_gb"] == pytest.approx(rec.milestones[50].outputs["checkpoint_gb"], abs=1e-6)
    assert final["size"] / 1e9 == pytest.approx(rec.milestones[95].outputs["final_gb"], abs=1e-9)
    booted = [
        r["server"] for r in fake_os.server_requests if r["server"]["name"].startswith("openstack-rhel8-webserver-")
    ]
    assert booted and all(b["security_groups"] == [{"name": "imagebuild-ssh"}] for b in booted)  # Packer's too
