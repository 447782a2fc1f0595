"""``imagebuild gc``: the leak collector on AWS (the loopback moto server) with planted leaks.

A pipeline's store knows a delivered build, a failed one and not a third; the resources planted
carry the tags the AWS target writes. The collector must find exactly the leaks (the delivered
build's discarded-too-late checkpoint, the failed build's unrecorded instance, everything of the
unknown build) and leave alone the published image, the checkpoint the spec keeps, the failed
build's recorded host, another pipeline's instance, an instance without ``ManagedBy``, and the same
tags in another account; ``--apply`` deletes the leaks and nothing else, and a second run finds none.
gc's threshold is at least 10 minutes, so each test runs the collector 11 minutes ahead
(:func:`tests.helpers.gc_minutes_later`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import MANAGED_BY
from tests.helpers import gc_minutes_later
from tests.servers.aws_sample import CONN_ID, moto_connection


@pytest.fixture(autouse=True)
def _later(monkeypatch: pytest.MonkeyPatch) -> None:
    gc_minutes_later(monkeypatch)


def _tags(pipeline: str, build_id: str, role: str, milestone: int = 0, managed: bool = True) -> list[dict[str, str]]:
    tags = {"BuildId": build_id, "Pipeline": pipeline, "Role": role, "Milestone": str(milestone)}
    if managed:
        tags["ManagedBy"] = MANAGED_BY
    return [{"Key": k, "Value": v} for k, v in tags.items()]


class Planted:
    """Resources planted on moto for one test's pipeline, named by what the test expects of them."""

    def __init__(self, ec2: Any, base_ami: str) -> None:
        self.ec2, self.base_ami = ec2, base_ami
        self.ids: dict[str, str] = {}

    def instance(self, name: str, tags: list[dict[str, str]], ec2: Any = None) -> str:
        made = (ec2 or self.ec2).run_instances(
            ImageId=self.base_ami, MinCount=1, MaxCount=1, InstanceType="t3.small",
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]  # fmt: skip
        self.ids[name] = str(made)
        return self.ids[name]

    def image(self, name: str, tags: list[dict[str, str]]) -> str:
        made = str(self.ec2.copy_image(SourceImageId=self.base_ami, SourceRegion="us-east-1", Name=name)["ImageId"])
        self.ec2.create_tags(Resources=[made], Tags=tags)
        self.ids[name] = made
        return made

    def volume(self, name: str, tags: list[dict[str, str]]) -> str:
        made = self.ec2.create_volume(AvailabilityZone="us-east-1a", Size=8,
                                      TagSpecifications=[{"ResourceType": "volume", "Tags": tags}])  # fmt: skip
        self.ids[name] = str(made["VolumeId"])
        return self.ids[name]


def _state(ec2: Any, instance_id: str) -> str:
    return str(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"])


def _image_exists(ec2: Any, image_id: str) -> bool:
    return bool(ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])["Images"])


def _other_account_ec2(aws_clients: Callable[[str, str], Any], moto_url: str) -> Any:
    """EC2 as account 222233334444 (moto gives an assumed role's credentials that account)."""
    role = "arn:aws:iam::222233334444:role/imagebuild-gc-test"
    creds = aws_clients("sts", "us-east-1").assume_role(RoleArn=role, RoleSessionName="gc")["Credentials"]
    return boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_url,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])  # fmt: skip


@pytest.fixture
def pipeline(tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path, str]:
    """(pipeline name, its spec file, its store URL): a unique pipeline, as moto is shared."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", moto_connection(moto_url))
    name = f"gc-{uuid.uuid4().hex[:8]}"
    store = f"sqlite:///{tmp_path}/state.db"
    spec = tmp_path / "gc.yaml"
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    spec.write_text(f"""pipeline: {name}
cloud: aws
image_type: base
store: {store}
target:
  aws_conn_id: {CONN_ID}
  region: us-east-1
  keep_checkpoints: [10]
milestones:
  10: {{action: ansible, playbook: site.yml}}
  95: {{action: seal}}
  100: {{action: publish}}
""")
    return name, spec, store


def _gc(spec: Path, *args: str) -> dict[str, Any]:
    got = CliRunner().invoke(cli, ["gc", "--cloud", "aws", "--spec", str(spec), "--json", *args])
    assert got.exit_code == 0, got.output
    return dict(json.loads(got.stdout))  # the connection's log lines go to stderr


def test_gc_finds_every_planted_leak_and_nothing_else_then_deletes_them(
    pipeline: tuple[str, Path, str], ec2: Any, base_ami: str, aws_clients: Callable[[str, str], Any], moto_url: str
) -> None:
    name, spec, url = pipeline
    store = open_store(url)
    store.create_build("done-1", pipeline=name, cloud="aws", image_type="base", plan=[0, 10, 95, 100])
    for code in (10, 95, 100):
        store.complete("done-1", code, token=store.begin("done-1", code, owner="w").token)
    store.create_build("failed-1", pipeline=name, cloud="aws", image_type="base", plan=[0, 10, 95, 100])
    plant = Planted(ec2, base_ami)
    host = plant.instance("failed host", _tags(name, "failed-1", "buildhost", 10))
    lease = store.begin("failed-1", 10, owner="w")
    store.set_metadata("failed-1", {"host_id": host}, token=lease.token, state=10)
    store.fail("failed-1", 10, token=lease.token, error="boom")
    store.create_build("given-up-1", pipeline=name, cloud="aws", image_type="base", plan=[0, 10, 95, 100])
    given_up_host = plant.instance("abandoned host", _tags(name, "given-up-1", "buildhost", 10))
    lease = store.begin("given-up-1", 10, owner="w")
    store.set_metadata("given-up-1", {"host_id": given_up_host}, token=lease.token, state=10)
    store.fail("given-up-1", 10, token=lease.token, error="boom")
    store.abandon("given-up-1", reason="its terminate failed")  # what the abandon could not delete

    leaks = {
        given_up_host,
        plant.image(f"{name}-done-m15", _tags(name, "done-1", "checkpoint", 15)),
        plant.instance("failed orphan", _tags(name, "failed-1", "buildhost", 10)),
        plant.instance("unknown host", _tags(name, "gone-1", "buildhost", 10)),
        plant.instance("unknown test instance", _tags(name, "gone-1", "launch-test")),
        plant.volume("unknown volume", _tags(name, "gone-1", "buildhost")),
        plant.image(f"{name}-gone-m10", _tags(name, "gone-1", "checkpoint", 10)),
    }
    kept = [
        plant.image(f"{name}-done-m10", _tags(name, "done-1", "checkpoint", 10)),  # keep_checkpoints: [10]
        plant.image(f"{name}-done", _tags(name, "done-1", "published", 100)),  # retention's, not gc's
        host,  # the failed build's recorded host: what a resume starts
    ]
    foreign = [
        plant.instance("other pipeline", _tags(f"{name}-other", "gone-1", "buildhost")),
        plant.instance("not managed", _tags(name, "gone-1", "buildhost", managed=False)),
    ]
    theirs = _other_account_ec2(aws_clients, moto_url)
    foreign_account = plant.instance("other account", _tags(name, "gone-1", "buildhost"), theirs)
    assert not ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": [foreign_account]}])["Reservations"]

    assert _gc(spec, "--older-than", "2h")["leaks"] == []  # everything is younger than two hours
    listed = _gc(spec, "--older-than", "10m")
    assert {row["id"] for row in listed["leaks"]} == leaks, listed
    reasons = {row["id"]: row["reason"] for row in listed["leaks"]}
    assert reasons[plant.ids["unknown host"]] == "unknown to the store"
    assert reasons[plant.ids[f"{name}-done-m15"]] == "delivered"
    assert reasons[plant.ids["failed orphan"]].startswith("not leased for ")
    assert reasons[given_up_host] == "abandoned"  # even the host its record still holds
    assert all(row["age_s"] is not None for row in listed["leaks"])
    costs = {row["id"]: row["estimated_cost"] for row in listed["leaks"]}  # the example prices, over a few seconds
    assert all(costs[i] is not None and 0 <= costs[i] < 0.01 for i in leaks if i.startswith(("i-", "vol-")))
    assert not any(row["deleted"] for row in listed["leaks"]) and _state(ec2, plant.ids["unknown host"]) == "running"

    applied = _gc(spec, "--older-than", "10m", "--apply")
    assert {row["id"] for row in applied["leaks"] if row["deleted"]} == leaks
    for key in ("failed orphan", "unknown host", "unknown test instance", "abandoned host"):
        assert _state(ec2, plant.ids[key]) in ("shutting-down", "terminated")
    assert not _image_exists(ec2, plant.ids[f"{name}-done-m15"])
    assert not ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [plant.ids["unknown volume"]]}])["Volumes"]
    assert _state(ec2, host) == "running" and all(_image_exists(ec2, i) for i in kept[:2])
    assert all(_state(ec2, i) == "running" for i in foreign)
    assert _state(theirs, foreign_account) == "running"
    assert _gc(spec, "--older-than", "10m")["leaks"] == []


def test_gc_says_what_is_wrong_in_one_line(pipeline: tuple[str, Path, str], tmp_path: Path) -> None:
    _, spec, _ = pipeline
    runner = CliRunner()
    bad = runner.invoke(cli, ["gc", "--cloud", "aws", "--spec", str(spec), "--older-than", "soon"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "--older-than" in bad.output, bad.output
    none = runner.invoke(cli, ["gc", "--cloud", "gcp", "--spec", str(spec)])
    assert none.exit_code == 2 and "no spec of a gcp pipeline" in none.output, none.output
    missing = runner.invoke(cli, ["gc", "--cloud", "aws", "--spec", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml is not a file" in missing.output, missing.output
    for young in ("0s", "9m59s"):  # a running build's host, launched but not recorded yet, is that young
        floor = runner.invoke(cli, ["gc", "--cloud", "aws", "--spec", str(spec), "--older-than", young, "--apply"])
        assert floor.exit_code == 2 and floor.output.count("\n") == 1, floor.output
        assert "--older-than: must be at least 10m" in floor.output, floor.output


def test_gc_goes_past_a_bad_tag_and_a_failed_delete_and_reports_each(
    pipeline: tuple[str, Path, str], ec2: Any, base_ami: str
) -> None:
    """A resource whose BuildId tag is no build id (anyone who can tag can write one) is left alone
    and reported, and a delete the cloud refuses (a leaked volume someone attached to their own
    instance) is reported too: neither stops the judgement or deletion of the other leaks, and the
    run exits non-zero (the JSON answer still printed) so that a cron job notices."""
    name, spec, url = pipeline
    open_store(url).create_build("done-1", pipeline=name, cloud="aws", image_type="base", plan=[0, 10, 95, 100])
    plant = Planted(ec2, base_ami)
    bad_tag = plant.instance("bad tag", _tags(name, "not a build id!", "buildhost"))
    attached = plant.volume("attached volume", _tags(name, "gone-1", "buildhost"))
    theirs = ec2.run_instances(ImageId=base_ami, MinCount=1, MaxCount=1,
                               Placement={"AvailabilityZone": "us-east-1a"})["Instances"][0]["InstanceId"]  # fmt: skip
    ec2.attach_volume(VolumeId=attached, InstanceId=theirs, Device="/dev/sdf")
    leaks = {plant.instance("unknown host", _tags(name, "gone-1", "buildhost")),
             plant.volume("unknown volume", _tags(name, "gone-1", "buildhost"))}  # fmt: skip

    got = CliRunner().invoke(cli, ["gc", "--cloud", "aws", "--spec", str(spec), "--json", "--older-than", "10m",
                                   "--apply"])  # fmt: skip
    assert got.exit_code == 6, got.output  # the cloud's refusal (TargetError)
    answer = json.loads(got.stdout)
    assert {r["id"] for r in answer["leaks"] if r["deleted"]} == leaks
    failed = [r for r in answer["leaks"] if r["error"]]
    assert [r["id"] for r in failed] == [attached] and "VolumeInUse" in failed[0]["error"], failed
    assert [(r["id"], r["error"]) for r in answer["unjudged"]] == [(bad_tag, "build_id: must be 1-128 ASCII letters, "
            "digits, '.', '_' or '-', starting with a letter or digit (got 'not a build id!')")]  # fmt: skip
    assert answer["failed"] == 2 and _state(ec2, bad_tag) == "running"
    assert ec2.describe_volumes(VolumeIds=[attached])["Volumes"]
    text = CliRunner().invoke(cli, ["gc", "--cloud", "aws", "--spec", str(spec), "--older-than", "10m"])
    assert text.exit_code == 1, text.output  # listing: the bad tag still cannot be judged
    assert f"instance {bad_tag} (us-east-1) left alone, not judged: build_id" in text.stderr, text.stderr


def test_gc_refuses_a_store_that_knows_no_build_of_the_pipeline(
    pipeline: tuple[str, Path, str], ec2: Any, base_ami: str
) -> None:
    """A wrong or empty store (a mistyped path, this machine's fallback file, a store after a move)
    would make every build unknown, and gc would delete the host and checkpoints of each failed
    build waiting to be resumed: it refuses in one line and deletes nothing."""
    name, spec, _ = pipeline
    host = Planted(ec2, base_ami).instance("a running build's host", _tags(name, "running-1", "buildhost", 10))
    refused = CliRunner().invoke(cli, ["gc", "--cloud", "aws", "--spec", str(spec), "--older-than", "10m", "--apply"])
    assert refused.exit_code == 2 and "knows no build of it" in refused.output, refused.output
    assert _state(ec2, host) == "running"
    import sqlite3

    foreign = spec.parent / "state.db"  # the spec's store names another application's database
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE dag (dag_id TEXT)")
    conn.close()
    unusable = CliRunner().invoke(cli, ["gc", "--cloud", "aws", "--spec", str(spec), "--older-than", "10m", "--apply"])
    assert unusable.exit_code == 5 and f"{foreign} is not an imagebuild state store" in unusable.output, unusable.output
    assert _state(ec2, host) == "running"


def test_gc_on_openstack_finds_the_pipelines_leaks_in_its_project_only(tmp_path: Path, fake_os: Any) -> None:
    """Nova servers and Glance images with the target's marks; another project's look-alikes (an
    admin login would list them) and another pipeline's are never listed or deleted."""
    from airflow_provider_imagebuild.targets.openstack import KEY, MANAGED
    from tests.conftest import OPENSTACK_CONN_ID
    from tests.servers.openstack import OTHER_PROJECT_ID

    name = f"gc-os-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    spec = tmp_path / "os.yaml"
    spec.write_text(f"""pipeline: {name}
cloud: openstack
image_type: base
store: {url}
target: {{openstack_conn_id: {OPENSTACK_CONN_ID}, flavor: m1.small, network: build-net, source_image: rhel-8}}
milestones:
  10: {{action: ansible, playbook: site.yml}}
  95: {{action: seal}}
  100: {{action: publish}}
""")
    store = open_store(url)
    store.create_build("done-1", pipeline=name, cloud="openstack", image_type="base", plan=[0, 10, 95, 100])
    for code in (10, 95, 100):
        store.complete("done-1", code, token=store.begin("done-1", code, owner="w").token)

    def marks(build_id: str, role: str, pipeline: str = name) -> dict[str, str]:
        return {KEY: f"key-{build_id}", MANAGED: MANAGED_BY, "imagebuild_build": build_id,
                "imagebuild_pipeline": pipeline, "imagebuild_role": role}  # fmt: skip

    leaks = {
        fake_os.add_server(f"{name}-lost", marks("gone-1", "buildhost")),
        fake_os.add_server(f"{name}-test", marks("done-1", "launch-test")),
        fake_os.add_image(f"{name}-m15", b"x", **marks("done-1", "checkpoint")),
    }
    kept = fake_os.add_image(f"{name}-final", b"x", **marks("done-1", "published"))
    foreign = [
        fake_os.add_server(f"{name}-theirs", marks("gone-1", "buildhost"), project=OTHER_PROJECT_ID),
        fake_os.add_image(f"{name}-theirs", b"x", owner=OTHER_PROJECT_ID, **marks("gone-1", "checkpoint")),
        fake_os.add_server(f"{name}-other", marks("gone-1", "buildhost", pipeline=f"{name}-other")),
    ]

    def gc(*args: str) -> dict[str, Any]:
        got = CliRunner().invoke(cli, ["gc", "--cloud", "openstack", "--spec", str(spec), "--json", *args])
        assert got.exit_code == 0, got.output
        return dict(json.loads(got.stdout))

    assert {row["id"] for row in gc("--older-than", "10m")["leaks"]} == leaks
    applied = gc("--older-than", "10m", "--apply")
    assert {row["id"] for row in applied["leaks"] if row["deleted"]} == leaks
    assert not leaks & (set(fake_os.servers) | set(fake_os.images)) and kept in fake_os.images
    assert all(i in fake_os.servers or i in fake_os.images for i in foreign)
    assert gc("--older-than", "10m")["leaks"] == []


def test_gc_on_gcp_finds_builds_by_their_label_key(tmp_path: Path, fake_gce: Any) -> None:
    """Labels cannot carry a build id, so each resource's build is found by its imagebuild-key
    label among the pipeline's builds in the store: the recorded host and checkpoint of a failed
    build stay, the unknown build's instance and image and the delivered build's leftover checkpoint
    go, the final image and another pipeline's or an unlabelled look-alike image stay."""
    from airflow_provider_imagebuild.spec.pipeline import GcpTargetSpec
    from airflow_provider_imagebuild.targets.base import Checkpoint
    from airflow_provider_imagebuild.targets.gcp import GcpTarget
    from tests.conftest import GCP_CONN_ID
    from tests.servers.gce import ZONE

    name = f"gc-gcp-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    settings: dict[str, Any] = {
        "gcp_conn_id": GCP_CONN_ID,
        "zone": ZONE,
        "image_family": "rhel8-web",
        "ssh_public_key": "ssh-ed25519 AAAA k",
    }
    spec = tmp_path / "gcp.yaml"
    spec.write_text(f"pipeline: {name}\ncloud: gcp\nimage_type: base\nstore: {url}\ntarget: {json.dumps(settings)}\n"
                    "milestones:\n  10: {action: ansible, playbook: site.yml}\n  95: {action: seal}\n"
                    "  100: {action: publish}\n")  # fmt: skip
    target = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=name, image_type="base")
    other_target = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=f"{name}-x", image_type="base")
    store, elsewhere = open_store(url), open_store(f"sqlite:///{tmp_path}/elsewhere.db")

    def build(where: Any, build_id: str) -> Any:
        return where.create_build(build_id, pipeline=name, cloud="gcp", image_type="base", plan=[0, 10, 95, 100])

    def image(label: str, owner: Any, role: str, code: int, by: GcpTarget = target) -> str:
        made = fake_gce.add_image(f"{label}-{uuid.uuid4().hex[:6]}", by.build_labels(owner, code, role))
        made["description"] = f"{by.pipeline} {owner.build_id} after milestone {code}"  # as capture writes
        return str(made["selfLink"])

    done, failed, gone = build(store, "done-1"), build(store, "failed-1"), build(elsewhere, "gone-1")
    for code in (10, 95, 100):
        done = store.complete("done-1", code, token=store.begin("done-1", code, owner="w").token)
    green = image("green", failed, "checkpoint", 10)
    store.complete("failed-1", 10, token=store.begin("failed-1", 10, owner="w").token,
                   outputs={"checkpoint_image": green})  # fmt: skip
    host = target.launch(store.get("failed-1"), Checkpoint(10, green))
    lease = store.begin("failed-1", 95, owner="w")
    store.set_metadata("failed-1", {"host_id": host.id}, token=lease.token, state=95)
    store.fail("failed-1", 95, token=lease.token, error="boom")
    gone_green = image("gone", gone, "checkpoint", 10)
    leaks = {gone_green, image("leftover", done, "checkpoint", 30),
             target.launch(gone, Checkpoint(10, gone_green)).id}  # fmt: skip
    kept = [green, host.id, image("final", done, "final", 95), image("theirs", gone, "checkpoint", 10, other_target)]
    unlabelled = str(fake_gce.add_image(f"bare-{uuid.uuid4().hex[:6]}", {"managed-by": MANAGED_BY})["selfLink"])
    # Pipeline GC-GCP-...'s labels read as this pipeline's (a label is the name lowercased): its failed
    # build's checkpoint, whose key is no build's here, is left unjudged, never taken for a leak.
    twin = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=name.upper(), image_type="base")
    theirs = image("twin", elsewhere.create_build("twin-1", pipeline=name.upper(), cloud="gcp", image_type="base",
                                                  plan=[0, 10, 100]), "checkpoint", 10, twin)  # fmt: skip
    assert fake_gce.images[theirs.rsplit("/", 1)[1]]["labels"]["imagebuild-pipeline"] == name

    def gc(*args: str) -> dict[str, Any]:
        got = CliRunner().invoke(cli, ["gc", "--cloud", "gcp", "--spec", str(spec), "--json", *args])
        assert got.exit_code == 1, got.output  # the twin's image cannot be judged
        return dict(json.loads(got.stdout))

    planned = gc("--older-than", "10m")
    assert {row["id"] for row in planned["leaks"]} == leaks
    assert [row["id"] for row in planned["unjudged"]] == [theirs] and "no build's of" in planned["unjudged"][0]["error"]
    assert {row["id"] for row in gc("--older-than", "10m", "--apply")["leaks"] if row["deleted"]} == leaks
    present = {i["selfLink"] for i in [*fake_gce.images.values(), *fake_gce.instances.values()]}
    assert not leaks & present and set(kept) | {unlabelled, theirs} <= present
    assert gc("--older-than", "10m")["leaks"] == []


def test_gc_on_vsphere_destroys_the_pipelines_leaked_vms_and_templates(tmp_path: Path, vsphere_library: str) -> None:
    """govmomi's vCenter simulator: VMs and templates in the target's folder with the build's
    imagebuild.* options; the failed build's recorded host and checkpoint stay, another pipeline's
    template stays, the unknown build's VM and template and the delivered build's leftover go."""
    from airflow_provider_imagebuild.targets.base import Checkpoint
    from tests.targets.test_vsphere import make_target, packer_clone, settings

    name = f"gc-vs-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    spec = tmp_path / "vs.yaml"
    spec.write_text(f"pipeline: {name}\ncloud: vsphere\nimage_type: base\nstore: {url}\n"
                    f"target: {json.dumps(settings())}\nmilestones:\n  10: {{action: ansible, playbook: site.yml}}\n"
                    "  95: {action: seal}\n  100: {action: publish}\n")  # fmt: skip
    target, other_target = make_target(name), make_target(f"{name}-x")
    store, elsewhere = open_store(url), open_store(f"sqlite:///{tmp_path}/elsewhere.db")

    def build(where: Any, build_id: str) -> Any:
        return where.create_build(build_id, pipeline=name, cloud="vsphere", image_type="base", plan=[0, 10, 95, 100])

    def template(owner: Any, code: int, by: Any = target) -> str:
        made = by.packer_image_name(owner, by.pipeline, code)
        packer_clone(by, made)
        by.claim_images(owner, {"": made}, code)
        return str(made)

    done, failed, gone = build(store, "done-1"), build(store, "failed-1"), build(elsewhere, "gone-1")
    for code in (10, 95, 100):
        done = store.complete("done-1", code, token=store.begin("done-1", code, owner="w").token)
    green = template(failed, 10)
    store.complete("failed-1", 10, token=store.begin("failed-1", 10, owner="w").token,
                   outputs={"checkpoint_image": green})  # fmt: skip
    host = target.launch(store.get("failed-1"), Checkpoint(10, green))
    lease = store.begin("failed-1", 95, owner="w")
    store.set_metadata("failed-1", {"host_id": host.id}, token=lease.token, state=95)
    store.fail("failed-1", 95, token=lease.token, error="boom")
    gone_green = template(gone, 10)
    leaks = {gone_green, template(done, 30), target.launch(gone, Checkpoint(10, gone_green)).id}
    theirs = template(gone, 10, other_target)

    def gc(*args: str) -> dict[str, Any]:
        got = CliRunner().invoke(cli, ["gc", "--cloud", "vsphere", "--spec", str(spec), "--json", *args])
        assert got.exit_code == 0, got.output
        return dict(json.loads(got.stdout))

    assert {row["id"] for row in gc("--older-than", "10m")["leaks"]} == leaks
    assert {row["id"] for row in gc("--older-than", "10m", "--apply")["leaks"] if row["deleted"]} == leaks
    assert gc("--older-than", "10m")["leaks"] == []
    assert target._vm(green) is not None and target._by_uuid(host.id) is not None and other_target._vm(theirs)
    assert target._vm(gone_green) is None


def test_gc_on_azure_keeps_the_recorded_hosts_parts_and_deletes_the_rest(tmp_path: Path, fake_arm: Any) -> None:
    """Resource Manager fake: VMs, NICs, disks, snapshots and images of the target's group listed
    by their tags; the failed build's recorded VM and the NIC attached to it stay, the unknown build's
    VM with its NIC and image go, as does the delivered build's leftover snapshot; another pipeline's
    image stays."""
    from airflow_provider_imagebuild.targets.base import Checkpoint
    from tests.conftest import AZURE_CONN_ID, AZURE_GROUP
    from tests.targets.test_azure import KEY, _green_image, _target

    name = f"gc-az-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    settings = {"azure_conn_id": AZURE_CONN_ID, "resource_group": AZURE_GROUP, "location": "westeurope",
                "network": "vnet-build/builders", "ssh_public_key": KEY, "gallery": "golden",
                "gallery_image": "web"}  # fmt: skip
    spec = tmp_path / "az.yaml"
    spec.write_text(f"pipeline: {name}\ncloud: azure\nimage_type: base\nstore: {url}\ntarget: {json.dumps(settings)}\n"
                    "milestones:\n  10: {action: ansible, playbook: site.yml}\n  95: {action: seal}\n"
                    "  100: {action: publish}\n")  # fmt: skip
    target, other_target = _target(name), _target(f"{name}-x")
    store, elsewhere = open_store(url), open_store(f"sqlite:///{tmp_path}/elsewhere.db")

    def build(where: Any, build_id: str) -> Any:
        return where.create_build(build_id, pipeline=name, cloud="azure", image_type="base", plan=[0, 10, 95, 100])

    done, failed, gone = build(store, "done-1"), build(store, "failed-1"), build(elsewhere, "gone-1")
    for code in (10, 95, 100):
        done = store.complete("done-1", code, token=store.begin("done-1", code, owner="w").token)
    green = _green_image(fake_arm, target, failed, f"{name}-green")
    store.complete("failed-1", 10, token=store.begin("failed-1", 10, owner="w").token,
                   outputs={"checkpoint_image": green})  # fmt: skip
    host = target.launch(store.get("failed-1"), Checkpoint(10, green))
    lease = store.begin("failed-1", 95, owner="w")
    store.set_metadata("failed-1", {"host_id": host.id}, token=lease.token, state=95)
    store.fail("failed-1", 95, token=lease.token, error="boom")
    gone_green = _green_image(fake_arm, target, gone, f"{name}-gone")
    target.launch(gone, Checkpoint(10, gone_green))
    snapshot = f"{host.id.split('/providers/')[0]}/providers/Microsoft.Compute/snapshots/{name}-left"
    fake_arm.add(snapshot, {"location": "westeurope", "tags": target.build_tags(done, 30, "checkpoint"),
                            "properties": {"incremental": True}})  # fmt: skip
    theirs = _green_image(fake_arm, other_target, gone, f"{name}-theirs")

    def tagged(build_id: str) -> set[str]:
        return {str(r["id"]) for r in fake_arm.resources.values()
                if (r.get("tags") or {}).get("BuildId") == build_id and (r.get("tags") or {}).get("Pipeline") == name
                and "/galleries/" not in str(r["id"]).lower()}  # fmt: skip

    kept = tagged("failed-1")
    assert host.id in kept and len(kept) >= 3  # the VM, its NIC, the green image
    leaks = tagged("gone-1") | {snapshot}

    def gc(*args: str) -> dict[str, Any]:
        got = CliRunner().invoke(cli, ["gc", "--cloud", "azure", "--spec", str(spec), "--json", *args])
        assert got.exit_code == 0, got.output
        return dict(json.loads(got.stdout))

    assert {row["id"].lower() for row in gc("--older-than", "10m")["leaks"]} == {i.lower() for i in leaks}
    gc("--older-than", "10m", "--apply")
    assert gc("--older-than", "10m")["leaks"] == []
    assert all(fake_arm.get(i) is None for i in leaks)
    assert all(fake_arm.get(i) is not None for i in kept) and fake_arm.get(theirs) is not None
