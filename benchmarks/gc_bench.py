"""The leak collector over three clouds: 20 planted leaks found, nothing else, and deleted.

EC2 on a loopback moto server, Nova/Glance on the loopback OpenStack fake and Compute Engine on its
fake (the set-up of tests/cli/test_gc.py). Each cloud's pipeline has a store that knows a delivered
build and a failed one; planted are 9 leaks on AWS (instances and volumes of a build the store does
not know, the delivered build's checkpoints, an instance of the failed build nobody leases that its
record does not hold), 6 on OpenStack (servers and images of an unknown build, a delivered build's
test server and checkpoints) and 5 on Google Cloud (an unknown build's instance and images, found by
their label key, the delivered build's leftover checkpoints), beside decoys gc must leave alone:
another pipeline's, an unmanaged look-alike, another account's and another project's, the published
image and the failed build's recorded host and checkpoint. ``imagebuild gc --json`` lists,
``--apply`` deletes, a third run finds none; prints the counts and timings, and fails (exit 1)
unless gc found exactly the planted leaks and left every decoy. gc takes no threshold under 10
minutes, and what is planted is seconds old: the collector judges as if 11 minutes later.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _aws_tags(pipeline: str, build_id: str, role: str, milestone: int = 0, managed: bool = True) -> list[Any]:
    from airflow_provider_imagebuild.targets.base import MANAGED_BY

    tags = {"BuildId": build_id, "Pipeline": pipeline, "Role": role, "Milestone": str(milestone)}
    tags.update({"ManagedBy": MANAGED_BY} if managed else {})
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _spec(folder: Path, name: str, cloud: str, store: str, target: str) -> Path:
    (folder / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    spec = folder / f"{name}.yaml"
    spec.write_text(
        f"pipeline: {name}\ncloud: {cloud}\nimage_type: base\nstore: {store}\ntarget: {target}\nmilestones:\n"
        "  10: {action: ansible, playbook: site.yml}\n  95: {action: seal}\n  100: {action: publish}\n"
    )
    return spec


def _builds(store: Any, pipeline: str, cloud: str) -> None:
    store.create_build("done-1", pipeline=pipeline, cloud=cloud, image_type="base", plan=[0, 10, 95, 100])
    for code in (10, 95, 100):
        store.complete("done-1", code, token=store.begin("done-1", code, owner="bench").token)
    store.create_build("failed-1", pipeline=pipeline, cloud=cloud, image_type="base", plan=[0, 10, 95, 100])


def plant_aws(work: Path, moto_url: str) -> tuple[Path, set[str], dict[str, Any]]:
    """The AWS pipeline's spec, its 9 leaks, and its decoys (id -> the client that sees it)."""
    import boto3

    from airflow_provider_imagebuild.store import open_store

    ec2: Any = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_url)
    ami = str(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])
    name = f"gcbench-aws-{uuid.uuid4().hex[:6]}"
    store_url = f"sqlite:///{work}/aws.db"
    store = open_store(store_url)
    _builds(store, name, "aws")

    def instance(tags: list[Any], client: Any = ec2) -> str:
        spec = [{"ResourceType": "instance", "Tags": tags}]
        made = client.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.small",
                                    TagSpecifications=spec)  # fmt: skip
        return str(made["Instances"][0]["InstanceId"])

    def image(label: str, tags: list[Any]) -> str:
        made = str(ec2.copy_image(SourceImageId=ami, SourceRegion="us-east-1", Name=f"{name}-{label}")["ImageId"])
        ec2.create_tags(Resources=[made], Tags=tags)
        return made

    def volume(tags: list[Any]) -> str:
        spec: Any = [{"ResourceType": "volume", "Tags": tags}]
        return str(ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=spec)["VolumeId"])

    host = instance(_aws_tags(name, "failed-1", "buildhost", 10))
    lease = store.begin("failed-1", 10, owner="bench")
    store.set_metadata("failed-1", {"host_id": host}, token=lease.token, state=10)
    store.fail("failed-1", 10, token=lease.token, error="bench")
    leaks = {instance(_aws_tags(name, f"gone-{i}", "buildhost", 10)) for i in range(4)}
    leaks |= {volume(_aws_tags(name, f"gone-{i}", "buildhost")) for i in range(2)}
    leaks |= {image(f"m{code}", _aws_tags(name, "done-1", "checkpoint", code)) for code in (15, 20)}
    leaks.add(instance(_aws_tags(name, "failed-1", "buildhost", 10)))
    creds = boto3.client("sts", region_name="us-east-1", endpoint_url=moto_url).assume_role(
        RoleArn="arn:aws:iam::222233334444:role/gc-bench", RoleSessionName="gc"
    )["Credentials"]
    theirs = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_url,
                          aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                          aws_session_token=creds["SessionToken"])  # fmt: skip
    decoys = {
        host: ec2,
        image("final", _aws_tags(name, "done-1", "published", 100)): ec2,
        instance(_aws_tags(f"{name}-other", "gone-0", "buildhost")): ec2,
        instance(_aws_tags(name, "gone-0", "buildhost", managed=False)): ec2,
        instance(_aws_tags(name, "gone-0", "buildhost"), theirs): theirs,
    }
    spec = _spec(work, name, "aws", store_url, "{aws_conn_id: aws_moto, region: us-east-1}")
    return spec, leaks, decoys


def plant_openstack(work: Path, fake: Any) -> tuple[Path, set[str], list[str]]:
    from airflow_provider_imagebuild.store import open_store
    from airflow_provider_imagebuild.targets.base import MANAGED_BY
    from airflow_provider_imagebuild.targets.openstack import KEY, MANAGED
    from tests.servers.openstack import OTHER_PROJECT_ID

    name = f"gcbench-os-{uuid.uuid4().hex[:6]}"
    store_url = f"sqlite:///{work}/openstack.db"
    _builds(open_store(store_url), name, "openstack")

    def marks(build_id: str, role: str, pipeline: str = name) -> dict[str, str]:
        return {KEY: f"k-{build_id}", MANAGED: MANAGED_BY, "imagebuild_build": build_id,
                "imagebuild_pipeline": pipeline, "imagebuild_role": role}  # fmt: skip

    leaks = {fake.add_server(f"{name}-lost-{i}", marks(f"gone-{i}", "buildhost")) for i in range(2)}
    leaks.add(fake.add_server(f"{name}-test", marks("done-1", "launch-test")))
    leaks |= {fake.add_image(f"{name}-m{c}", b"x", **marks("done-1", "checkpoint")) for c in (15, 20)}
    leaks.add(fake.add_image(f"{name}-gone-0", b"x", **marks("gone-0", "checkpoint")))
    decoys = [
        fake.add_image(f"{name}-final", b"x", **marks("done-1", "published")),
        fake.add_server(f"{name}-theirs", marks("gone-0", "buildhost"), project=OTHER_PROJECT_ID),
        fake.add_image(f"{name}-theirs", b"x", owner=OTHER_PROJECT_ID, **marks("gone-0", "checkpoint")),
        fake.add_server(f"{name}-other", marks("gone-0", "buildhost", pipeline=f"{name}-other")),
    ]
    target = "{openstack_conn_id: os_bench, flavor: m1.small, network: build-net, source_image: rhel-8}"
    return _spec(work, name, "openstack", store_url, target), leaks, decoys


def plant_gcp(work: Path, fake: Any) -> tuple[Path, set[str], list[str]]:
    """The Google Cloud pipeline: 5 leaks (an unknown build's instances and images, the delivered
    build's leftover checkpoint); decoys: the failed build's recorded host and checkpoint, the
    final image, another pipeline's image. Labels carry only a key: gc finds builds by it."""
    from airflow_provider_imagebuild.spec.pipeline import GcpTargetSpec
    from airflow_provider_imagebuild.store import open_store
    from airflow_provider_imagebuild.targets.base import Checkpoint
    from airflow_provider_imagebuild.targets.gcp import GcpTarget
    from tests.servers.gce import ZONE

    name = f"gcbench-gcp-{uuid.uuid4().hex[:6]}"
    store_url = f"sqlite:///{work}/gcp.db"
    store, elsewhere = open_store(store_url), open_store(f"sqlite:///{work}/gcp-elsewhere.db")
    _builds(store, name, "gcp")
    settings: dict[str, Any] = {"gcp_conn_id": "gcp_bench", "zone": ZONE, "image_family": "bench",
                                "ssh_public_key": "ssh-ed25519 AAAA bench"}  # fmt: skip
    target = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=name, image_type="base")
    other = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=f"{name}-x", image_type="base")
    gone = elsewhere.create_build("gone-1", pipeline=name, cloud="gcp", image_type="base", plan=[0, 10, 95, 100])
    done, failed = store.get("done-1"), store.get("failed-1")

    def image(owner: Any, role: str, code: int, by: Any = target) -> str:
        made = fake.add_image(f"img-{uuid.uuid4().hex[:8]}", by.build_labels(owner, code, role))
        return str(made["selfLink"])

    green = image(failed, "checkpoint", 10)
    store.complete("failed-1", 10, token=store.begin("failed-1", 10, owner="b").token,
                   outputs={"checkpoint_image": green})  # fmt: skip
    host = target.launch(store.get("failed-1"), Checkpoint(10, green))
    lease = store.begin("failed-1", 95, owner="b")
    store.set_metadata("failed-1", {"host_id": host.id}, token=lease.token, state=95)
    store.fail("failed-1", 95, token=lease.token, error="bench")
    gone_images = [image(gone, "checkpoint", 10), image(gone, "checkpoint", 15)]
    leaks = {*gone_images, image(done, "checkpoint", 30), image(done, "checkpoint", 40)}
    leaks.add(target.launch(gone, Checkpoint(10, gone_images[0])).id)
    decoys = [green, host.id, image(done, "final", 95), image(gone, "checkpoint", 10, other)]
    spec_target = json.dumps(settings)
    return _spec(work, name, "gcp", store_url, spec_target), leaks, decoys


def gc(cloud: str, spec: Path, *args: str) -> tuple[dict[str, Any], float]:
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    started = time.perf_counter()
    got = CliRunner().invoke(cli, ["gc", "--cloud", cloud, "--spec", str(spec), "--older-than", "10m", "--json", *args])
    took = time.perf_counter() - started
    if got.exit_code != 0:
        raise SystemExit(f"imagebuild gc --cloud {cloud} failed: {got.output}")
    return dict(json.loads(got.stdout)), took


def _judge_later(minutes: float = 11) -> None:
    """The collector's clock (only its own) moved ``minutes`` ahead: see the module docstring."""
    from datetime import timedelta

    from airflow_provider_imagebuild.targets import leaks

    real = leaks.utc_now
    leaks.utc_now = lambda: real() + timedelta(minutes=minutes)


def main() -> int:
    from tests.servers.aws_sample import moto_connection
    from tests.servers.gce import PROJECT, FakeGce, service_account_key, serving
    from tests.servers.openstack import connection_uri, fake_openstack
    from tests.servers.process import free_port, running

    work = Path(tempfile.mkdtemp(prefix="imagebuild-gcbench-"))
    os.environ.update(AIRFLOW_HOME=str(work / "airflow"), AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    port = free_port()
    moto = [sys.executable, str(ROOT / "tests/servers/moto_serial.py"), str(port)]
    with (
        running(moto, port, work / "moto.log") as moto_url,
        fake_openstack() as fake,
        serving(FakeGce()) as gce,
    ):
        os.environ["AIRFLOW_CONN_AWS_MOTO"] = moto_connection(moto_url)
        os.environ["AIRFLOW_CONN_OS_BENCH"] = connection_uri(fake)
        key = work / "gcp-key.json"
        key.write_text(json.dumps(service_account_key(f"{gce.url}/token")))
        key.chmod(0o600)
        extra = {"key_path": str(key), "project": PROJECT, "compute_endpoint": f"{gce.url}/compute/v1/"}
        os.environ["AIRFLOW_CONN_GCP_BENCH"] = json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
        aws_spec, aws_leaks, aws_decoys = plant_aws(work, moto_url)
        os_spec, os_leaks, os_decoys = plant_openstack(work, fake)
        gcp_spec, gcp_leaks, gcp_decoys = plant_gcp(work, gce)
        planted = {"aws": aws_leaks, "openstack": os_leaks, "gcp": gcp_leaks}
        specs = {"aws": aws_spec, "openstack": os_spec, "gcp": gcp_spec}
        _judge_later()
        ok = True
        counts = ", ".join(f"{len(found)} on {cloud}" for cloud, found in planted.items())
        print(f"planted {counts}; {len(aws_decoys) + len(os_decoys) + len(gcp_decoys)} decoys")
        for cloud in planted:
            listed, list_s = gc(cloud, specs[cloud])
            found = {row["id"] for row in listed["leaks"]}
            applied, apply_s = gc(cloud, specs[cloud], "--apply")
            deleted = {row["id"] for row in applied["leaks"] if row["deleted"]}
            again, _ = gc(cloud, specs[cloud])
            exact = found == planted[cloud] == deleted and not again["leaks"]
            ok = ok and exact
            print(f"{cloud:10} found {len(found & planted[cloud])}/{len(planted[cloud])} planted leaks, "
                  f"{len(found - planted[cloud])} others; deleted {len(deleted)}; list {list_s:.2f} s, "
                  f"apply {apply_s:.2f} s; a second run finds {len(again['leaks'])}")  # fmt: skip
        ec2_alive = all(
            client.describe_instances(Filters=[{"Name": "instance-id", "Values": [i]}])["Reservations"]
            or client.describe_images(Filters=[{"Name": "image-id", "Values": [i]}])["Images"]
            for i, client in aws_decoys.items()
        )
        os_alive = all(i in fake.servers or i in fake.images for i in os_decoys)
        present = {i["selfLink"] for i in [*gce.images.values(), *gce.instances.values()]}
        os_alive = os_alive and set(gcp_decoys) <= present
        total = sum(len(found) for found in planted.values())
        print(f"gc found all {total} planted leaks and nothing else: {'yes' if ok else 'NO'}; "
              f"decoys left alone: {'yes' if ec2_alive and os_alive else 'NO'}")  # fmt: skip
        return 0 if ok and ec2_alive and os_alive else 1


if __name__ == "__main__":
    raise SystemExit(main())
