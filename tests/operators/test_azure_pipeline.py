"""The shipped Azure RHEL 8 web server pipeline, end to end through ``dag.test()``.

Real: Airflow, Packer (running the stand-in template for 5 and 10: its azure-arm builder cannot
reach a loopback Resource Manager), the Azure SDKs and ``DefaultAzureCredential`` through the
Airflow Azure connection, and the shipped playbooks through ansible-runner over chroot into a
Debian root filesystem that stands in for the VM. Faked: Azure Resource Manager
(tests/servers/azure_arm.py, following Azure's published example payloads) and the Azure agent
in the tree (a script recording how seal called it). The launch test (97) makes its VM in the fake
and checks the stand-in guest (tests/servers/guest.py, a local qemu VM) over SSH instead.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.conftest import AZURE_CONN_ID, AZURE_GROUP
from tests.dags.conftest import ROOT, write
from tests.servers.azure_arm import FakeArm
from tests.servers.azure_sample import DAG_ID, WAAGENT_ARGS, plant_waagent, sample_spec

WHEN = datetime(2026, 11, 3, 2, 30, tzinfo=timezone.utc)


@pytest.mark.slow
def test_azure_sample_resumes_relaunches_from_a_snapshot_and_publishes_to_the_gallery(
    airflow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_arm: FakeArm,
    build_host_root: Path,
    standin_guest: Any,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    store_url = f"sqlite:///{tmp_path}/state.db"
    write(
        tmp_path / "pipelines/azure.yaml",
        sample_spec(store_url, build_host_root, fake_arm.url, AZURE_CONN_ID, AZURE_GROUP, standin_guest),
    )
    fake_arm.guest_console = standin_guest.console
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    plant_waagent(build_host_root)
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag, store = bag.dags[DAG_ID], open_store(store_url)

    def run(fail_at: str = "") -> str:
        monkeypatch.setenv("IMAGEBUILD_FAIL_AT", fail_at)
        return str(dag.test(logical_date=WHEN, run_conf={"build_id": "az-web-1"}).state)

    # Run 1 fails at 55, after 15..50 configured the host and 30 and 50 were snapshotted.
    assert run("55") == "failed"
    rec = store.get("az-web-1")
    assert rec.completed == [0, 5, 10, 15, 20, 25, 30, 45, 50] and (rec.current_state, rec.status) == (55, "failed")
    first_host = rec.metadata["host_id"]
    assert "/virtualMachines/" in first_host and rec.metadata["host_image"] == rec.milestones[10].outputs["image_id"]
    assert "/snapshots/" in rec.milestones[50].outputs["checkpoint_image"]

    # The VM vanishes; the clear's run relaunches from the snapshot after 50 and delivers.
    fake_arm.remove(first_host)
    assert run() == "success"
    rec = store.get("az-web-1")
    assert rec.delivered and rec.metadata["host_released"] != first_host
    assert rec.metadata["host_image"] == rec.milestones[50].outputs["checkpoint_image"]
    replays = [(a.state, a.owner.split("/")[2]) for a in rec.attempts if a.kind == "replay"]
    assert replays == [], "55 had not completed: nothing after the checkpoint to replay"
    runs = [a.state for a in rec.attempts if a.kind == "run" and a.status == "completed"]
    assert sorted(runs) == sorted(set(runs)), "a completed milestone ran twice"

    # The launch test (97) booted a VM of the sealed image before publish, read its boot log, deleted it.
    tested = rec.milestones[97].outputs
    sealed = rec.milestones[95].outputs["image_id"]
    assert tested["boot_sealed_passed"] is True and tested["boot_sealed_image"] == sealed
    assert tested["boot_sealed_instance"].endswith("-lt") and "/virtualMachines/" in tested["boot_sealed_instance"]
    assert any("retrieveBootDiagnosticsData" in path for _, path in fake_arm.requests)

    # Seal deprovisioned with the Azure agent; the image is a gallery version, tagged, in two regions.
    assert (build_host_root / WAAGENT_ARGS).read_text().split() == ["-force", "-deprovision+user"]
    final = rec.milestones[95].outputs["image_id"]
    published = rec.milestones[100].outputs
    version = fake_arm.get(published["gallery_image_version_id"])
    assert version is not None and version["properties"]["storageProfile"]["source"]["id"] == final
    assert version["tags"]["Pipeline"] == "azure-rhel8-webserver" and version["tags"]["owner"] == "platform-team"
    assert version["properties"]["publishingProfile"]["excludeFromLatest"] is False
    assert published["published_regions"] == ["westeurope", "northeurope"]
    used = {a.state: a.usage or {} for a in rec.attempts if a.kind == "run" and a.status == "completed"}
    assert used[50]["checkpoint_gb"] == rec.milestones[50].outputs["checkpoint_gb"] > 0  # the snapshot's size (#31)
    assert used[100]["transfer_gb"] == published["transfer_gb"] == rec.milestones[95].outputs["final_gb"]  # 1 region
    assert fake_arm.ids("Microsoft.Compute/virtualMachines") == []
    kept = rec.milestones[10].outputs["checkpoint_image"]
    # The sample reuses (reuse: {}): the seal keeps the checkpoints for the next build to start from.
    assert fake_arm.get(kept) is not None and fake_arm.get(rec.milestones[30].outputs["checkpoint_image"]) is not None

    from tests.operators.test_aws_pipeline import asset_extras

    assert any(e.get("image_id") == final for e in asset_extras("imagebuild://azure/azure-rhel8-webserver"))
