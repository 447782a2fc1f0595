"""The shipped AWS RHEL 8 web server pipeline, end to end through ``dag.test()``.

Real Packer (amazon-ebs) and real EC2/SSM calls go to a moto server on loopback; the Ansible
milestones run the shipped playbooks for real through ansible-runner, over the chroot connection
into a Debian root filesystem that stands in for the EC2 build host (moto's instances run
nothing). So the orchestration really calls EC2 and the playbooks really configure a system.
Relaunch replaces the EC2 instance; the chroot is the same directory, which is why replays
must report changed=0 there (the playbooks are idempotent).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write
from tests.servers.aws_sample import DAG_ID, moto_connection, sample_spec

WHEN = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)


@pytest.fixture
def pipeline(
    airflow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moto_url: str,
    base_ami: str,
    build_host_root: Path,
) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    store_url = f"sqlite:///{tmp_path}/state.db"
    write(tmp_path / "pipelines/aws.yaml", sample_spec(store_url, base_ami, build_host_root))
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_MOTO", moto_connection(moto_url))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return {"dag": bag.dags[DAG_ID], "store": open_store(store_url), "root": build_host_root}


def _run(dag: Any, monkeypatch: pytest.MonkeyPatch, fail_at: str = "") -> str:
    monkeypatch.setenv("IMAGEBUILD_FAIL_AT", fail_at)
    return str(dag.test(logical_date=WHEN, run_conf={"build_id": "rhel8-web-1"}).state)


def _state(ec2: Any, instance_id: str) -> str:
    return str(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"])


@pytest.mark.slow
def test_sample_pipeline_resumes_on_the_same_host_relaunches_a_lost_one_and_delivers(
    pipeline: dict[str, Any], monkeypatch: pytest.MonkeyPatch, ec2: Any, aws_clients: Any
) -> None:
    dag, store, root = pipeline["dag"], pipeline["store"], pipeline["root"]

    # Run 1: fails at 55 (after 15..50 configured the host).
    assert _run(dag, monkeypatch, "55") == "failed"
    rec = store.get("rhel8-web-1")
    assert rec.completed == [0, 5, 10, 15, 20, 25, 30, 45, 50] and (rec.current_state, rec.status) == (55, "failed")
    first_host = rec.metadata["host_id"]
    assert _state(ec2, first_host) == "running"
    assert rec.milestones[10].outputs["images"]["us-east-1"] == rec.milestones[10].outputs["image_id"]
    assert rec.milestones[15].outputs["ansible_changed"] > 0
    assert rec.milestones[30].outputs["checkpoint_image"].startswith("ami-")

    # Run 2 (the clear): 55 resumes on the same instance; 70 fails.
    assert _run(dag, monkeypatch, "70") == "failed"
    rec = store.get("rhel8-web-1")
    assert rec.metadata["host_id"] == first_host and 55 in rec.completed
    assert (rec.current_state, rec.status) == (70, "failed")

    # The build host disappears behind the build's back; run 3 relaunches from the checkpoint
    # after 50 and replays 55 before 70, then seals and publishes.
    ec2.terminate_instances(InstanceIds=[first_host])
    assert _run(dag, monkeypatch) == "success"
    rec = store.get("rhel8-web-1")
    assert rec.delivered
    second_host = rec.metadata["host_released"]
    assert second_host != first_host and rec.metadata["host_id"] == ""
    assert _state(ec2, second_host) == "terminated"
    replays = [a for a in rec.attempts if a.kind == "replay"]
    assert [(a.state, a.owner.split("/")[2]) for a in replays] == [(55, "s070_integration_tests")]
    assert rec.milestones[55].outputs["ansible_changed"] == 0  # the replay's stats: idempotent
    runs = [a.state for a in rec.attempts if a.kind == "run" and a.status == "completed"]
    assert sorted(runs) == sorted(set(runs)), "a completed milestone ran twice"
    launched_from = ec2.describe_instances(InstanceIds=[second_host])["Reservations"][0]["Instances"][0]["ImageId"]
    assert launched_from == rec.milestones[50].outputs["checkpoint_image"]

    # The image, its copies, sharing, tags, SSM, and the checkpoints that were not kept.
    final = rec.milestones[95].outputs["image_id"]
    published = rec.milestones[100].outputs["published_images"]
    assert published["us-east-1"] == final and published["eu-west-1"] != final
    for region, image_id in published.items():
        client = aws_clients("ec2", region)
        tags = {t["Key"]: t["Value"] for t in client.describe_images(ImageIds=[image_id])["Images"][0]["Tags"]}
        assert tags["BuildId"] == "rhel8-web-1" and tags["Pipeline"] == "aws-rhel8-webserver"
        assert "packer 1.6.6" in tags["BuiltWith"] and tags["BuiltFrom"].startswith("ami-")  # what built it
        ssm = aws_clients("ssm", region).get_parameter(Name="/imagebuild/aws-rhel8-webserver/image_id")
        assert ssm["Parameter"]["Value"] == image_id
    discarded = set(rec.milestones[95].outputs["discarded_checkpoints"])
    kept = rec.milestones[10].outputs["checkpoint_image"]
    assert kept not in discarded and rec.milestones[30].outputs["checkpoint_image"] in discarded
    assert ec2.describe_images(ImageIds=[kept])["Images"]

    # The playbooks really configured the build host, and seal cleaned it.
    assert "aws-rhel8-webserver" in (root / "etc/motd").read_text()
    assert "listen 8080" in (root / "etc/nginx/conf.d/health.conf").read_text()
    assert (root / "etc/machine-id").read_text() == ""
    assert not list((root / "etc/ssh").glob("ssh_host_*"))

    _assert_asset_event(final)


def asset_extras(uri: str) -> list[dict[str, Any]]:
    """The extras of every Asset event recorded for ``uri`` (Airflow's metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(
            session.scalars(
                select(AssetEvent.extra)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.uri == uri)
            ).all()
        )


def _assert_asset_event(image_id: str) -> None:
    extras = asset_extras("imagebuild://aws/aws-rhel8-webserver")
    assert any(e.get("image_id") == image_id for e in extras), extras
