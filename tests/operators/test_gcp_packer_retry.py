"""A Packer milestone on Google Cloud that failed after Packer made its image succeeds on retry.

googlecompute stops when its image's name is taken ("already exists ... use the force flag"), and
the name is the build's (one per build and milestone), so before this a failure after Packer had
finished (here: the labels call refused) failed every retry. Real Packer runs the stand-in
template (tests/servers/gcp_packer: the same labels as the shipped one, the same stop on an
existing image) against the fake Compute Engine; the operator is the one the DAG factory makes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_imagebuild.store import open_store
from tests.conftest import GCP_CONN_ID, task_context
from tests.servers.gce import PROJECT, ZONE, FakeGce, Fault
from tests.servers.gcp_sample import STANDIN, packer_operator

PIPELINE = "Acme.RHEL8_web"


def _operator(fake: FakeGce, store_url: str) -> Any:
    return packer_operator(
        store_url, PIPELINE, 5, STANDIN, {"compute_endpoint": f"{fake.url}/compute/v1/"}, gcp_conn_id=GCP_CONN_ID,
        zone=ZONE, source_image_family="rhel-8", source_image_project=PROJECT,
    )  # fmt: skip


@pytest.mark.slow
def test_a_retry_adopts_the_image_packer_made_before_the_claim_failed(fake_gce: FakeGce, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(store_url)
    store.create_build("Retry.B1", pipeline=PIPELINE, cloud="gcp", image_type="webserver", plan=[0, 5, 10, 95, 100])
    op = _operator(fake_gce, store_url)

    fake_gce.fail_next(Fault("images.setLabels", status=412, reason="conditionNotMet"))
    with pytest.raises(Exception, match="conditionNotMet"):
        op.execute(task_context("Retry.B1", "s005"))
    made = [name for name in fake_gce.images if name.endswith("-m005")]
    assert len(made) == 1 and fake_gce.calls.count("images.insert") == 1
    assert fake_gce.images[made[0]]["labels"]["imagebuild-milestone"] == "m005"

    outputs = _operator(fake_gce, store_url).execute(task_context("Retry.B1", "s005", try_number=2))
    assert outputs["packer_adopted"] is True and outputs["image_id"] == made[0]
    assert fake_gce.calls.count("images.insert") == 1, "Packer ran again"
    rec = store.get("Retry.B1")
    assert rec.milestones[5].outputs["image_id"] == made[0]
    assert fake_gce.images[made[0]]["labels"]["imagebuild-role"] == "checkpoint"  # claimed this time
    assert fake_gce.refused == [], fake_gce.refused


@pytest.mark.slow
def test_a_failed_image_of_the_build_is_remade_and_a_foreign_one_is_left_alone(
    fake_gce: FakeGce, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(store_url)
    for build_id in ("Retry.B2", "Retry.B3"):
        store.create_build(build_id, pipeline=PIPELINE, cloud="gcp", image_type="webserver", plan=[0, 5, 10, 95, 100])
    op = _operator(fake_gce, store_url)
    target = op.get_target()

    # An earlier attempt's image that Compute Engine failed to create: deleted, and Packer runs.
    build = store.get("Retry.B2")
    name = target.packer_image_name(build, PIPELINE, 5)
    fake_gce.add_image(name, target.build_labels(build, 5, "packer"))["status"] = "FAILED"
    outputs = op.execute(task_context("Retry.B2", "s005"))
    assert "packer_adopted" not in outputs and fake_gce.images[name]["status"] == "READY"
    assert fake_gce.calls.count("images.delete") == 1 and fake_gce.calls.count("images.insert") == 1

    # An image of that name that is not the build's: never deleted, the milestone stops naming it.
    build = store.get("Retry.B3")
    name = target.packer_image_name(build, PIPELINE, 5)
    fake_gce.add_image(name, {"imagebuild-key": "0" * 20, "managed-by": "airflow-provider-imagebuild"})
    with pytest.raises(AirflowFailException, match=f"an image {name} already exists in project {PROJECT}"):
        _operator(fake_gce, store_url).execute(task_context("Retry.B3", "s005"))
    assert name in fake_gce.images and fake_gce.calls.count("images.delete") == 1
    assert fake_gce.refused == [], fake_gce.refused
