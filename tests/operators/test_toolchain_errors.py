"""Bad input and unreachable clouds in the toolchain milestones: each is a clear error naming the
thing, recorded (redacted) in the store, and nothing is launched for it.

The operators are executed directly with a minimal task context (the Airflow path itself is
covered by test_aws_pipeline.py); Packer and the EC2 endpoint are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from tests.conftest import free_port, task_context
from tests.dags.conftest import ROOT


def _common(tmp_path: Path, state: int, conn_id: str = "aws_moto") -> dict[str, Any]:
    return dict(
        task_id=f"s{state:03d}",
        identity=BuildIdentity("p", "aws", "t", plan=(0, 5, 15, 100)),
        state=state,
        store=f"sqlite:///{tmp_path}/s.db",
        target=TargetSpec(aws_conn_id=conn_id, region="us-east-1", source_image="ami-1"),
    )


@pytest.fixture
def store(tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.servers.aws_sample import moto_connection

    monkeypatch.setenv("AIRFLOW_CONN_AWS_MOTO", moto_connection(moto_url))
    dead = {
        "conn_type": "aws",
        "login": "AKIAIOSFODNN7EXAMPLE",
        "password": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "extra": {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEAD", json.dumps(dead))
    s = open_store(f"sqlite:///{tmp_path}/s.db")
    s.create_build("bad-input-1", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 15, 100])
    return s


def test_missing_template_is_recorded_and_not_retried(store: Any, tmp_path: Path) -> None:
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator

    op = PackerMilestoneOperator(template=str(tmp_path / "gone.pkr.hcl"), **_common(tmp_path, 5))
    with pytest.raises(AirflowFailException, match=r"template: .*gone\.pkr\.hcl not found"):
        op.execute(task_context("bad-input-1", "s005"))
    assert "gone.pkr.hcl not found" in (store.get("bad-input-1").attempts_at(5)[0].error or "")


def test_missing_playbook_fails_before_a_host_is_launched(store: Any, tmp_path: Path, ec2: Any) -> None:
    from airflow_provider_imagebuild.operators.ansible import AnsibleMilestoneOperator

    store.begin("bad-input-1", 5, owner="t")
    store.complete("bad-input-1", 5, token=store.get("bad-input-1").lease.token, outputs={"checkpoint_image": "ami-1"})
    before = len(ec2.describe_instances()["Reservations"])
    op = AnsibleMilestoneOperator(playbook=str(tmp_path / "gone.yml"), **_common(tmp_path, 15))
    with pytest.raises(AirflowFailException, match=r"playbook: .*gone\.yml not found"):
        op.execute(task_context("bad-input-1", "s015"))
    assert "gone.yml not found" in (store.get("bad-input-1").attempts_at(15)[0].error or "")
    assert len(ec2.describe_instances()["Reservations"]) == before


@pytest.mark.slow
def test_an_unreachable_endpoint_is_recorded_without_the_secret(store: Any, tmp_path: Path) -> None:
    """The Packer milestone first asks EC2 whether an earlier attempt already made its AMI (to
    adopt it): an endpoint that cannot be reached fails there, as a transient error naming the
    endpoint, before Packer starts, and neither the record nor the raised error holds the key."""
    from airflow_provider_imagebuild.errors import TargetError
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator

    template = str(ROOT / "dags/packer/rhel8.pkr.hcl")
    op = PackerMilestoneOperator(
        template=template,
        only=["amazon-ebs.green"],
        variables={"communicator": "none"},
        **_common(tmp_path, 5, conn_id="aws_dead"),
    )
    with pytest.raises(TargetError, match="cannot reach the endpoint") as info:
        op.execute(task_context("bad-input-1", "s005"))
    error = store.get("bad-input-1").attempts_at(5)[0].error or ""
    assert "127.0.0.1" in error and "cannot reach" in error, error
    assert "wJalrXUtnFEMI" not in error and "wJalrXUtnFEMI" not in str(info.value)
