"""The shipped Google Cloud RHEL 8 web server pipeline, end to end through ``dag.test()``.

Real: Airflow, Packer (running the stand-in template for 5 and 10: its googlecompute builder
cannot reach a loopback Compute Engine), the Google API client and service account credentials
through the Airflow Google connection, and the shipped playbooks through ansible-runner over
chroot into a Debian root filesystem that stands in for the instance. Faked: Compute Engine
(tests/servers/gce.py, every request body checked against the discovery document). The launch
test (97) inserts its instance in the fake and checks the stand-in guest (tests/servers/guest.py,
a local qemu VM) over SSH instead.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.conftest import GCP_CONN_ID
from tests.dags.conftest import ROOT, write
from tests.servers.gce import PROJECT, FakeGce
from tests.servers.gcp_sample import DAG_ID, sample_spec

WHEN = datetime(2026, 11, 3, 2, 45, tzinfo=timezone.utc)


@pytest.mark.slow
def test_gcp_sample_resumes_relaunches_from_a_checkpoint_image_and_publishes_to_the_family(
    airflow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_gce: FakeGce,
    build_host_root: Path,
    standin_guest: Any,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    store_url = f"sqlite:///{tmp_path}/state.db"
    spec = sample_spec(store_url, build_host_root, f"{fake_gce.url}/compute/v1/", GCP_CONN_ID, PROJECT, standin_guest)
    fake_gce.guest_console = standin_guest.console
    write(tmp_path / "pipelines/gcp.yaml", spec)
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag, store = bag.dags[DAG_ID], open_store(store_url)

    def run(fail_at: str = "") -> str:
        monkeypatch.setenv("IMAGEBUILD_FAIL_AT", fail_at)
        return str(dag.test(logical_date=WHEN, run_conf={"build_id": "gcp-web-1"}).state)

    assert run("55") == "failed"
    rec = store.get("gcp-web-1")
    assert rec.completed == [0, 5, 10, 15, 20, 25, 30, 45, 50] and (rec.current_state, rec.status) == (55, "failed")
    first_host = rec.metadata["host_id"].rsplit("/", 1)[-1]
    checkpoint_50 = rec.milestones[50].outputs["checkpoint_image"]
    assert fake_gce.images[checkpoint_50.rsplit("/", 1)[-1]]["family"] == "rhel8-webserver-staging"

    fake_gce.remove_instance(first_host)
    assert run() == "success"
    rec = store.get("gcp-web-1")
    assert rec.delivered and rec.metadata["host_image"] == checkpoint_50
    runs = [a.state for a in rec.attempts if a.kind == "run" and a.status == "completed"]
    assert sorted(runs) == sorted(set(runs)), "a completed milestone ran twice"

    tested = rec.milestones[97].outputs  # the launch test booted an instance of the sealed image
    sealed = rec.milestones[95].outputs["image_id"]
    assert tested["boot_sealed_passed"] is True and tested["boot_sealed_image"] == sealed
    assert tested["boot_sealed_instance"].endswith("-lt") and "instances.getSerialPortOutput" in fake_gce.calls

    published = rec.milestones[100].outputs
    final = fake_gce.images[published["image_self_link"].rsplit("/", 1)[-1]]
    assert final["family"] == "rhel8-webserver" and final["storageLocations"] == ["eu"]
    # what built it, as the seal recorded it (the Packer found here, as a label value)
    assert final["labels"]["built-with-packer"] == rec.metadata["built_with.packer"].replace(".", "_")
    assert final["labels"]["owner"] == "platform-team" and final["labels"]["imagebuild-build"] == "gcp-web-1"
    policy = fake_gce.policies[final["name"]]
    assert policy["bindings"] == [{"role": "roles/compute.imageUser", "members": ["group:image-users@example.com"]}]
    assert fake_gce.images[published["copies"]["asia"].rsplit("/", 1)[-1]]["storageLocations"] == ["asia"]
    used = {a.state: a.usage or {} for a in rec.attempts if a.kind == "run" and a.status == "completed"}
    copied = rec.milestones[95].outputs["final_gb"] * len(published["copies"])  # each copy transfers the image (#31)
    assert used[100]["transfer_gb"] == published["transfer_gb"] == copied > 0
    assert fake_gce.instances == {}
    # The sample reuses (reuse: {}): the seal keeps the checkpoints for the next build to start from.
    assert (
        checkpoint_50.rsplit("/", 1)[-1] in fake_gce.images
        and rec.milestones[95].outputs["discarded_checkpoints"] == []
    )
    assert fake_gce.refused == [], fake_gce.refused

    from tests.operators.test_aws_pipeline import asset_extras

    extras = asset_extras("imagebuild://gcp/gcp-rhel8-webserver")
    assert any(e.get("image_id") == published["image_self_link"] for e in extras), extras
