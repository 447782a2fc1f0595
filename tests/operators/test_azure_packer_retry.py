"""A Packer milestone on Azure whose first attempt fails after Packer finished (the claim throttled
past the SDK's retries) succeeds on its retry by adopting the managed image that attempt made:
azure-arm refuses to run into an existing image without ``-force``, which the stand-in template does
as azure-arm's builder.go does.

Real: Packer (the stand-in template, tests/servers/azure_packer: azure-arm cannot reach a loopback
Resource Manager), the milestone operator and its store, the Azure SDKs through the Airflow
connection. Faked: Resource Manager (tests/servers/azure_arm.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.errors import TargetError
from airflow_provider_imagebuild.spec.pipeline import AzureTargetSpec
from airflow_provider_imagebuild.store import open_store
from tests.conftest import AZURE_CONN_ID, AZURE_GROUP, task_context
from tests.servers.azure_arm import FakeArm, Fault
from tests.servers.azure_sample import STANDIN

PLAN = (0, 5, 10, 100)


def _operator(tmp_path: Path, fake: FakeArm) -> Any:
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator

    target = AzureTargetSpec(
        azure_conn_id=AZURE_CONN_ID,
        resource_group=AZURE_GROUP,
        location="westeurope",
        source_image="RedHat:RHEL:8-lvm-gen2:latest",
        network="vnet-build/builders",
    )
    return PackerMilestoneOperator(
        task_id="s005",
        identity=BuildIdentity("az-retry", "azure", "webserver", plan=PLAN),
        state=5,
        store=f"sqlite:///{tmp_path}/s.db",
        target=target,
        template=str(STANDIN),
        only=["null.kickstart"],
        variables={"arm_endpoint": fake.url},
    )


def test_a_retried_packer_milestone_adopts_the_image_its_first_attempt_made(fake_arm: FakeArm, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.create_build("az-retry-1", pipeline="az-retry", cloud="azure", image_type="webserver", plan=list(PLAN))

    # Attempt 1: Packer makes the image, then tagging it is throttled beyond the SDK's retries.
    fake_arm.fail_next(Fault("PATCH", r"/images/", status=429, retry_after="0.01", times=10))
    with pytest.raises(TargetError, match="TooManyRequests"):
        _operator(tmp_path, fake_arm).execute(task_context("az-retry-1", "s005"))
    fake_arm.faults.clear()
    images = fake_arm.ids("Microsoft.Compute/images")
    assert len(images) == 1 and store.get("az-retry-1").status == "failed"
    made = [m for m, p in fake_arm.requests if m == "PUT" and "/images/" in p]

    # Attempt 2: the image is the build's (subscription, resource group, the template's tags) and
    # complete: adopted and claimed, Packer is not run into "already exists".
    outputs = _operator(tmp_path, fake_arm).execute(task_context("az-retry-1", "s005", try_number=2))
    assert outputs["image_id"] == images[0] and outputs["packer_adopted"] is True
    assert [m for m, p in fake_arm.requests if m == "PUT" and "/images/" in p] == made, "no second image"
    tags = (fake_arm.get(images[0]) or {})["tags"]
    assert (tags["BuildId"], tags["Milestone"], tags["Role"]) == ("az-retry-1", "5", "checkpoint")
    record = store.get("az-retry-1")
    assert 5 in record.completed and record.milestones[5].outputs["packer_adopted"] is True
