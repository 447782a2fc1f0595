"""The shipped AWS RHEL 8 web server pipeline, end to end through ``dag.test()``.

Real Packer (amazon-ebs) and real EC2/SSM calls go to a moto server on loopback; the Ansible
milestones run the shipped playbooks for real through ansible-runner, over the chroot connection
into a Debian root filesystem that stands in for the EC2 build host (moto's instances run
nothing). So the orchestration really calls EC2 and the playbooks really configure a system.
Relaunch replaces the EC2 instance; the chroot is the same directory, which is why replays
must report changed=0 there (the playbooks are idempotent).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.cost import build_cost
from airflow_provider_imagebuild.build.prices import Prices
from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write
from tests.helpers import task_context
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
    standin_guest: Any,
) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    store_url = f"sqlite:///{tmp_path}/state.db"
    write(tmp_path / "pipelines/aws.yaml", sample_spec(store_url, base_ami, build_host_root, standin_guest))
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
    failures = [(a.state, a.error) for a in rec.attempts if a.status == "failed"]
    assert rec.completed == [0, 5, 10, 15, 20, 25, 30, 45, 50], failures
    assert (rec.current_state, rec.status) == (55, "failed")
    first_host = rec.metadata["host_id"]
    assert _state(ec2, first_host) == "stopped"  # parked: the injected failure is not retried (#31's park)
    assert rec.milestones[10].outputs["images"]["us-east-1"] == rec.milestones[10].outputs["image_id"]
    assert rec.milestones[15].outputs["ansible_changed"] > 0
    assert rec.milestones[30].outputs["checkpoint_image"].startswith("ami-")
    # Each attempt recorded what it used (issue 31's cost): the spec's host size for Packer's build VM
    # (10) and the build host (15..55, the failed 55 too), the checkpoint's EBS size (VolumeSize).
    used = {a.state: a.usage or {} for a in rec.attempts if a.state in (10, 15, 30, 55)}
    size = dag.get_task("s015_base_config").target_settings.instance_type
    assert {code: u.get("host_size") for code, u in used.items()} == dict.fromkeys((10, 15, 30, 55), size)
    assert all(0 < u["host_hours"] < 1 for u in used.values()), used
    volume = ec2.describe_images(ImageIds=[rec.milestones[30].outputs["checkpoint_image"]])["Images"][0]
    assert used[30]["checkpoint_gb"] == volume["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] > 0
    assert rec.attempts[0].usage is None  # registration uses nothing

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
    assert replays[0].usage and replays[0].usage["host_hours"] > 0  # the replay's host time is priced too
    cost = build_cost(rec, Prices(default_host_per_hour=3600.0))  # 1 a second of host: moto's seconds show
    assert cost.total > cost.failures > 0 and cost.saved_by_resumes > 0 and cost.unmetered_attempts == 0

    # The launch test (97) ran an instance of the sealed AMI, tagged as the build's test instance,
    # checked the stand-in guest over SSH (tests/servers/guest.py) and terminated it.
    final = rec.milestones[95].outputs["image_id"]
    tested = rec.milestones[97].outputs
    assert tested["boot_sealed_passed"] is True and tested["boot_sealed_image"] == final
    assert tested["boot_sealed_playbook_failed"] == 0 and tested["boot_sealed_playbook_ok"] >= 3
    instance = ec2.describe_instances(InstanceIds=[tested["boot_sealed_instance"]])["Reservations"][0]["Instances"][0]
    assert instance["ImageId"] == final and instance["State"]["Name"] == "terminated"
    assert {t["Key"]: t["Value"] for t in instance["Tags"]}["Role"] == "launch-test"

    # The image, its copies, sharing, tags, SSM, and the checkpoints that were not kept.
    published = rec.milestones[100].outputs["published_images"]
    assert published["us-east-1"] == final and published["eu-west-1"] != final
    publish = next(a for a in rec.attempts if a.state == 100 and a.status == "completed")
    copied = rec.milestones[95].outputs["final_gb"] * (len(published) - 1)  # the sealed AMI's EBS size per copy
    assert publish.usage and publish.usage["transfer_gb"] == copied
    for region, image_id in published.items():
        client = aws_clients("ec2", region)
        tags = {t["Key"]: t["Value"] for t in client.describe_images(ImageIds=[image_id])["Images"][0]["Tags"]}
        assert tags["BuildId"] == "rhel8-web-1" and tags["Pipeline"] == "aws-rhel8-webserver"
        built_with = f"packer {rec.metadata['built_with.packer']}"  # the Packer that ran, as the seal recorded
        assert built_with in tags["BuiltWith"] and tags["BuiltFrom"].startswith("ami-")  # what built it
        sealed = rec.milestones[95].outputs  # its bill of materials, read over Ansible from the host (#33)
        assert tags["Sbom"] == f"cyclonedx sha256:{sealed['sbom_sha256']} packages:{sealed['sbom_packages']}"
        ssm = aws_clients("ssm", region).get_parameter(Name="/imagebuild/aws-rhel8-webserver/image_id")
        assert ssm["Parameter"]["Value"] == image_id
    # The sample reuses (reuse: {}): the seal keeps every checkpoint for the next build to start from.
    assert rec.milestones[95].outputs["discarded_checkpoints"] == []
    for code in (10, 30):
        assert ec2.describe_images(ImageIds=[rec.milestones[code].outputs["checkpoint_image"]])["Images"]

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


# -- Packer milestones of the shipped template (amazon-ebs against moto) ---------------------------
SCHEDULED_RUN = "scheduled__2026-11-02T02:00:00+00:00"
LONG_PIPELINE = "aws-rhel8-webserver-sap-hana-scale-out-eu-central-frankfurt-a12"  # 63 characters
# CreateImage's Name: "3-128 alphanumeric characters, parentheses (()), square brackets ([]), spaces ( ), periods
# (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or underscores(_)" (EC2 API reference)
AMI_NAME_RE = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")


def _packer_milestone(store_url: str, pipeline: str, base_ami: str, code: int = 5) -> Any:
    """Milestone ``code`` (5: kickstart, 10: green) of the shipped RHEL 8 template, on moto."""
    from airflow_provider_imagebuild.build.identity import BuildIdentity
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator
    from airflow_provider_imagebuild.spec.pipeline import TargetSpec
    from tests.servers.aws_sample import CONN_ID

    source = {5: "kickstart", 10: "green"}[code]
    return PackerMilestoneOperator(
        task_id=f"s{code:03d}_{source}",
        identity=BuildIdentity(pipeline, "aws", "webserver", plan=(0, 5, 10, 100)),
        state=code,
        store=store_url,
        template=str(ROOT / "dags/packer/rhel8.pkr.hcl"),
        only=[f"amazon-ebs.{source}"],
        variables={"communicator": "none"},  # moto's instances run nothing
        target=TargetSpec(aws_conn_id=CONN_ID, region="us-east-1", source_image=base_ami),
    )


def _images_named(ec2: Any, name: str) -> list[dict[str, Any]]:
    return list(ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"])


@pytest.fixture
def moto_conn(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AWS_MOTO", moto_connection(moto_url))


@pytest.mark.slow
def test_a_long_pipeline_and_a_scheduled_build_get_ami_names_ec2_takes(
    moto_conn: None, tmp_path: Path, ec2: Any, base_ami: str, aws_clients: Any
) -> None:
    """EC2 takes an AMI name of 3-128 characters of ``[A-Za-z0-9()[] ./'@_-]`` (CreateImage), and
    Packer's amazon-ebs refuses any other before it starts. A 63-character pipeline and a scheduled
    run's derived build id (128 characters) still build milestone 5 with real Packer, and every
    name and description the target gives EC2 for that build fits."""
    from airflow_provider_imagebuild.build.ids import derive_build_id
    from airflow_provider_imagebuild.targets.aws import AwsTarget

    assert len(LONG_PIPELINE) == 63
    build_id = derive_build_id(LONG_PIPELINE, SCHEDULED_RUN)
    assert len(build_id) == 111  # the pipeline, the cleaned run id and a digest
    store_url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(store_url)
    store.create_build(build_id, pipeline=LONG_PIPELINE, cloud="aws", image_type="webserver", plan=[0, 5, 10, 100])

    op = _packer_milestone(store_url, LONG_PIPELINE, base_ami)
    outputs = op.execute(task_context(build_id, "s005_kickstart"))
    image = ec2.describe_images(ImageIds=[outputs["image_id"]])["Images"][0]
    target = op.get_target()
    assert isinstance(target, AwsTarget)
    build = store.get(build_id)
    assert image["Name"] == target.image_name(build, 5) and AMI_NAME_RE.fullmatch(image["Name"])
    for milestone in (None, 5, 10, 15, 95, 100):
        assert AMI_NAME_RE.fullmatch(target.image_name(build, milestone)), milestone
        assert len(target.image_description(build, milestone)) <= 255  # CreateImage: "Up to 255 characters"
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags["BuildId"] == build_id and tags["Pipeline"] == LONG_PIPELINE  # the whole identity, in tags


@pytest.mark.slow
def test_a_retry_after_packer_made_its_ami_adopts_it_and_a_foreign_ami_is_never_touched(
    moto_conn: None, tmp_path: Path, ec2: Any, base_ami: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """amazon-ebs stops with "is used by an existing AMI" when its ``ami_name`` is taken, so a
    milestone that failed after Packer made its AMI (here the claim is throttled once) could never
    succeed again. The retry adopts the AMI instead: this account's, named for the milestone and
    carrying the tags the shipped template writes. An AMI of that name without this build's tags
    is neither adopted nor deregistered: the milestone fails, naming it, and Packer does not run."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from airflow_provider_imagebuild.errors import TargetError
    from airflow_provider_imagebuild.targets.aws import AwsTarget

    store_url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(store_url)
    store.create_build("retry-1", pipeline="aws-retry", cloud="aws", image_type="webserver", plan=[0, 5, 10, 100])
    claim = AwsTarget.claim_images
    throttled: list[str] = []

    def throttled_once(self: AwsTarget, build: Any, images: Any, milestone: int) -> None:
        if not throttled:
            throttled.append(next(iter(images.values())))
            raise TargetError("EC2 CreateTags: RequestLimitExceeded (transient, retried): Request limit exceeded.")
        claim(self, build, images, milestone)

    monkeypatch.setattr(AwsTarget, "claim_images", throttled_once)
    op = _packer_milestone(store_url, "aws-retry", base_ami)
    with pytest.raises((AirflowException, TargetError), match="RequestLimitExceeded"):
        op.execute(task_context("retry-1", "s005_kickstart"))
    made = throttled[0]
    name = op.get_target().packer_image_name(store.get("retry-1"), "aws-retry", 5)
    assert [i["ImageId"] for i in _images_named(ec2, name)] == [made]

    retried = _packer_milestone(store_url, "aws-retry", base_ami)
    outputs = retried.execute(task_context("retry-1", "s005_kickstart", try_number=2))
    assert outputs["image_id"] == made and outputs["packer_adopted"] is True
    assert [i["ImageId"] for i in _images_named(ec2, name)] == [made]  # Packer did not make another
    tags = {t["Key"]: t["Value"] for t in ec2.describe_images(ImageIds=[made])["Images"][0]["Tags"]}
    assert tags["BuildId"] == "retry-1" and tags["Role"] == "checkpoint"  # claimed this time
    assert store.get("retry-1").milestones[5].outputs["packer_adopted"] is True

    # Someone's AMI of the name a second build's milestone 5 gets: never adopted, never deregistered.
    store.create_build("retry-2", pipeline="aws-retry", cloud="aws", image_type="webserver", plan=[0, 5, 10, 100])
    theirs_name = op.get_target().packer_image_name(store.get("retry-2"), "aws-retry", 5)
    theirs = ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=theirs_name)["ImageId"]
    with pytest.raises(AirflowFailException, match=rf"packer artifact: .*{theirs}.* not build retry-2's"):
        _packer_milestone(store_url, "aws-retry", base_ami).execute(task_context("retry-2", "s005_kickstart"))
    assert [i["ImageId"] for i in _images_named(ec2, theirs_name)] == [theirs]
