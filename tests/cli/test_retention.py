"""``imagebuild retention``: published images past a spec's ``retention:`` policy, on the local
catalog (stand-in image files) and on AWS (the loopback moto server), with planted images that must
stay: the newest delivered one, one still referenced, one of a build not finished, another
pipeline's and another account's. A dry run deletes nothing; ``--apply`` deletes exactly what it
listed and records each deletion on its build's history.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import MANAGED_BY, file_hash
from airflow_provider_imagebuild.targets.local import LocalTarget
from tests.cli.test_gc import Planted, _image_exists, _other_account_ec2, _tags
from tests.servers.aws_sample import CONN_ID


def _retention(*args: str, code: int = 0) -> dict[str, Any]:
    got = CliRunner().invoke(cli, ["retention", "--json", *args])
    assert got.exit_code == code, got.output
    return dict(json.loads(got.stdout)) if code == 0 else {"output": got.stderr, "stdout": got.stdout}


def _rows(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every image row of the answer, by image id."""
    return {r["id"]: r for p in answer["pipelines"] for d in p["destinations"] for r in d["images"]}


def _history(url: str, build_id: str) -> list[dict[str, Any]]:
    got = CliRunner().invoke(cli, ["--store", url, "build", "history", build_id, "--json"])
    assert got.exit_code == 0, got.output
    return list(json.loads(got.stdout))


# -- the local catalog -----------------------------------------------------------------------------


def _deliver(url: str, target: LocalTarget, build_id: str) -> Path:
    """A build sealed (a small stand-in image file), published into the catalog and delivered."""
    store = open_store(url)
    created = store.create_build(build_id, pipeline=target.pipeline, cloud="local", image_type="base",
                                 plan=[0, 95, 100])  # fmt: skip
    image = target.image_path(created)
    image.parent.mkdir(parents=True)
    image.write_bytes(build_id.encode() * 100)
    lease = store.begin(build_id, 95, owner="test")
    store.complete(build_id, 95, token=lease.token, outputs={"image_id": str(image), "image_sha256": file_hash(image)})
    lease = store.begin(build_id, 100, owner="test")
    outputs = target.publish(store.get(build_id), str(image))
    store.complete(build_id, 100, token=lease.token, outputs=outputs)
    return Path(outputs["catalog_entry"])


def _local_spec(tmp_path: Path, name: str, url: str, retention: str) -> Path:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"""pipeline: {name}
cloud: local
image_type: base
store: {url}
target: {{work_dir: {tmp_path}/work, catalog: {tmp_path}/catalog}}
retention: {retention}
milestones:
  95: {{action: seal}}
  100: {{action: publish}}
""")
    return spec


def test_local_catalog_keeps_the_newest_and_latest_and_records_what_it_deletes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    spec = _local_spec(tmp_path, "nightly", url, "{keep_last: 1}")
    target = LocalTarget(TargetSpec(work_dir=str(tmp_path / "work"), catalog=str(tmp_path / "catalog")),
                         pipeline="nightly", image_type="base")  # fmt: skip
    n1, n2, n3 = (_deliver(url, target, f"n{i}") for i in (1, 2, 3))
    latest = tmp_path / "catalog/nightly/latest"
    latest.unlink()
    latest.symlink_to("versions/n1")  # a person rolled latest back to n1
    other = LocalTarget(target.settings, pipeline="other", image_type="base")
    theirs = _deliver(f"sqlite:///{tmp_path}/other.db", other, "o1")
    impostor = tmp_path / "catalog/nightly/versions/x1"  # in our folder, but another pipeline's metadata
    impostor.mkdir()
    (impostor / "metadata.json").write_text(json.dumps({"pipeline": "other", "build_id": "x1"}))

    planned = _rows(_retention("--spec", str(spec)))
    assert set(planned) == {str(n1), str(n2), str(n3)}
    assert planned[str(n3)]["why"].startswith("the newest delivered image") and not planned[str(n3)]["retire"]
    assert planned[str(n1)]["why"] == f"still referenced by the catalog's {tmp_path}/catalog/nightly/latest"
    assert planned[str(n2)]["retire"] and not any(r["deleted"] for r in planned.values()) and n2.is_dir()

    applied = _rows(_retention("--spec", str(spec), "--apply"))
    assert [i for i, r in applied.items() if r["deleted"]] == [str(n2)]
    assert not n2.exists() and n1.is_dir() and n3.is_dir() and theirs.is_dir() and impostor.is_dir()
    events = [e for e in _history(url, "n2") if e["type"] == "event" and e["kind"] == "retire"]
    assert len(events) == 1 and events[0]["detail"].startswith(f"retired {n2}: beyond the 1 newest delivered builds")
    assert events[0]["actor"].startswith("cli:")
    assert not any(r["retire"] for r in _rows(_retention("--spec", str(spec), "--apply")).values())


def test_retention_says_what_is_wrong_in_one_line_and_deletes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    target = LocalTarget(TargetSpec(work_dir=str(tmp_path / "work"), catalog=str(tmp_path / "catalog")),
                         pipeline="nightly", image_type="base")  # fmt: skip
    versions = [_deliver(url, target, f"n{i}") for i in (1, 2)]
    for bad, field in (("{keep_last: 0}", "retention.keep_last"), ("{keep_days: 10m}", "retention.keep_days"),
                       ("{}", "retention"), ("{keep_last: true}", "retention.keep_last"),
                       ("{keep_days: 30}", "retention.keep_days: write a duration like 30d")):  # fmt: skip
        spec = _local_spec(tmp_path, "nightly", url, bad)
        out = _retention("--spec", str(spec), "--apply", code=2)["output"]
        assert field in out and out.count("\n") == 1, out
    spec = _local_spec(tmp_path, "nightly", url, "{keep_last: 1}")
    assert "no spec of pipeline 'nope'" in _retention("nope", "--spec", str(spec), code=2)["output"]
    # a store that knows no delivered build of the pipeline (a wrong path, an empty store) is refused
    wrong = _local_spec(tmp_path, "nightly", f"sqlite:///{tmp_path}/empty.db", "{keep_last: 1}")
    out = _retention("--spec", str(wrong), "--apply", code=2)["output"]
    assert "knows no delivered build" in out and all(v.is_dir() for v in versions), out
    # without a policy nothing is listed, let alone deleted
    spec.write_text(spec.read_text().replace("retention: {keep_last: 1}\n", ""))
    assert _retention("--spec", str(spec), "--apply")["pipelines"][0]["no_policy"] is True
    assert all(v.is_dir() for v in versions)


# -- AWS -------------------------------------------------------------------------------------------


def _published(plant: Planted, name: str, build_id: str, ec2: Any = None, snapshot: bool = False) -> str:
    """A published AMI of ``build_id``; with ``snapshot``, made from an instance, so that it has a
    snapshot of its own (a copy of the vendor image shares the vendor's)."""
    if not snapshot:
        return plant.image(f"{name}/{build_id}/{uuid.uuid4().hex[:6]}", _tags(name, build_id, "published", 100))
    instance = plant.instance(f"{build_id} host", _tags(name, build_id, "buildhost"))
    made = str(plant.ec2.create_image(InstanceId=instance, Name=f"{name}/{build_id}")["ImageId"])
    plant.ec2.create_tags(Resources=[made], Tags=_tags(name, build_id, "published", 100))
    return made


def _snapshots(ec2: Any, image_id: str) -> list[str]:
    image = ec2.describe_images(ImageIds=[image_id])["Images"][0]
    return [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]


def test_aws_retires_old_amis_with_their_snapshots_and_keeps_the_newest_and_referenced(
    tmp_path: Path, moto_url: str, ec2: Any, base_ami: str,
    aws_clients: Callable[[str, str], Any],
) -> None:  # fmt: skip
    name = f"ret-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    spec = tmp_path / "aws.yaml"
    (tmp_path / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    spec.write_text(f"""pipeline: {name}
cloud: aws
image_type: base
store: {url}
target: {{aws_conn_id: {CONN_ID}, region: us-east-1}}
retention: {{keep_last: 1}}
milestones:
  10: {{action: ansible, playbook: site.yml}}
  95: {{action: seal}}
  100: {{action: publish}}
""")
    plant = Planted(ec2, base_ami)
    west = aws_clients("ec2", "eu-west-1")
    # Made before the store delivers any build: the unknown build's AMI ranks oldest by its creation.
    unknown = _published(plant, name, "pruned-1", snapshot=True)
    old = _published(plant, name, "b1", snapshot=True)
    old_copy = str(west.copy_image(SourceImageId=old, SourceRegion="us-east-1", Name=f"{name}/b1")["ImageId"])
    west.create_tags(Resources=[old_copy], Tags=_tags(name, "b1", "published", 100))
    in_template, newest, halfway = (_published(plant, name, b) for b in ("b2", "b3", "b4"))
    foreign = [
        _published(plant, f"{name}-other", "b0"),  # another pipeline's
        plant.image(f"{name}-b1-m10", _tags(name, "b1", "checkpoint", 10)),  # a checkpoint: gc's, not retention's
    ]
    theirs = _other_account_ec2(aws_clients, moto_url)
    their_image = str(theirs.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=name)["ImageId"])
    theirs.create_tags(Resources=[their_image], Tags=_tags(name, "b0", "published", 100))
    assert not ec2.describe_images(Owners=["self"], Filters=[{"Name": "image-id", "Values": [their_image]}])["Images"]

    store = open_store(url)
    for build_id, published in (("b1", {"us-east-1": old, "eu-west-1": old_copy}), ("b2", {}), ("b3", {})):
        store.create_build(build_id, pipeline=name, cloud="aws", image_type="base", plan=[0, 95, 100])
        store.complete(build_id, 95, token=store.begin(build_id, 95, owner="w").token)
        store.complete(build_id, 100, token=store.begin(build_id, 100, owner="w").token,
                       outputs={"published_images": published})  # fmt: skip
    store.create_build("b4", pipeline=name, cloud="aws", image_type="base", plan=[0, 95, 100])
    store.complete("b4", 95, token=store.begin("b4", 95, owner="w").token)
    lease = store.begin("b4", 100, owner="w")
    store.fail("b4", 100, token=lease.token, error="copy to eu-west-1 failed")  # a resume may still publish it
    ec2.create_launch_template(LaunchTemplateName=f"{name}-web", LaunchTemplateData={"ImageId": in_template})
    aws_clients("ssm", "eu-west-1").put_parameter(Name=f"/imagebuild/{name}/image_id", Value=old_copy,
                                                  Type="String", Overwrite=True)  # fmt: skip
    snapshots = _snapshots(ec2, old) + _snapshots(ec2, unknown)

    # The target over the session's moto clients (a connection's would make a boto session per
    # client, seconds each); the command's own path is the other clouds' tests'.
    from airflow_provider_imagebuild.cli.retention import retain
    from airflow_provider_imagebuild.spec.pipeline import load_spec
    from airflow_provider_imagebuild.targets.aws import AwsTarget

    loaded = load_spec(spec)
    target = AwsTarget(loaded.target, pipeline=name, image_type="base", clients=aws_clients, region="us-east-1",
                       endpoint=moto_url)  # fmt: skip

    def run(apply: bool) -> dict[str, dict[str, Any]]:
        return _rows({"pipelines": [retain(loaded, apply, "cli:test", target)]})

    planned = run(False)
    assert set(planned) == {unknown, old, old_copy, in_template, newest, halfway}, planned
    why = {i: r["why"] for i, r in planned.items()}
    assert why[newest] == "the newest delivered image (build b3)"
    assert why[in_template] == f"still referenced by launch template {name}-web version 1 in us-east-1"
    assert why[old_copy] == f"still referenced by SSM parameter /imagebuild/{name}/image_id in eu-west-1"
    assert why[halfway].startswith("build b4 is failed, not delivered")
    assert why[unknown].startswith("build pruned-1 is unknown to the store")
    assert {i for i, r in planned.items() if r["retire"]} == {old, unknown}

    applied = run(True)
    assert {i for i, r in applied.items() if r["deleted"]} == {old, unknown}
    assert not _image_exists(ec2, old) and not _image_exists(ec2, unknown)
    gone = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    assert not set(snapshots) & gone  # the AMIs' snapshots went with them
    assert all(_image_exists(ec2, i) for i in (in_template, newest, halfway, *foreign))
    assert _image_exists(west, old_copy) and theirs.describe_images(ImageIds=[their_image])["Images"]
    retired = [e["detail"] for e in _history(url, "b1") if e["type"] == "event" and e["kind"] == "retire"]
    assert retired == [f"retired {old} in us-east-1: beyond the 1 newest delivered builds (retention of target)"]
    on_newest = [e["detail"] for e in _history(url, "b3") if e["type"] == "event" and e["kind"] == "retire"]
    assert on_newest == [
        f"retired {unknown} in us-east-1: of build pruned-1, whose record is gone: build pruned-1 "
        "is unknown to the store; beyond the 1 newest delivered builds (retention of target)"
    ]


# -- Google Cloud ----------------------------------------------------------------------------------


def gcp_pipeline(tmp_path: Path, name: str, url: str) -> tuple[dict[str, Any], Path]:
    """A Google Cloud pipeline's target settings and its spec file, keeping one published image."""
    from tests.conftest import GCP_CONN_ID
    from tests.servers.gce import ZONE

    settings: dict[str, Any] = {"gcp_conn_id": GCP_CONN_ID, "zone": ZONE, "image_family": f"{name}-fam",
                                "ssh_public_key": "ssh-ed25519 AAAA k"}  # fmt: skip
    spec = tmp_path / "gcp.yaml"
    spec.write_text(f"pipeline: {name}\ncloud: gcp\nimage_type: base\nstore: {url}\ntarget: {json.dumps(settings)}\n"
                    "retention: {keep_last: 1}\nmilestones:\n  95: {action: seal}\n"
                    "  100: {action: publish}\n")  # fmt: skip
    return settings, spec


def test_gcp_deprecates_first_then_deletes_when_due_and_keeps_the_familys_current_image(
    tmp_path: Path, fake_gce: Any
) -> None:
    """The fake Compute Engine: the family's images of delivered builds found by their key label;
    one past the policy is deprecated (replaced by the family's current image, a deletion date a
    week ahead), one deprecated earlier whose date has passed is deleted; the newest delivered,
    a failed build's copy and another pipeline's image stay; a second run changes nothing."""
    from datetime import datetime, timedelta, timezone

    from airflow_provider_imagebuild.spec.pipeline import GcpTargetSpec
    from airflow_provider_imagebuild.targets.gcp import GcpTarget
    from tests.servers.gce import Fault

    name = f"ret-gcp-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    settings, spec = gcp_pipeline(tmp_path, name, url)
    target = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=name, image_type="base")
    other = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=f"{name}-x", image_type="base")
    store = open_store(url)
    now = datetime.now(timezone.utc)

    def build(build_id: str, deliver: bool = True) -> Any:
        store.create_build(build_id, pipeline=name, cloud="gcp", image_type="base", plan=[0, 95, 100])
        store.complete(build_id, 95, token=store.begin(build_id, 95, owner="w").token)
        lease = store.begin(build_id, 100, owner="w")
        if deliver:
            return store.complete(build_id, 100, token=lease.token)
        return store.fail(build_id, 100, token=lease.token, error="copy failed")

    def image(label: str, rec: Any, role: str, age_days: int, by: GcpTarget = target, family: bool = True) -> str:
        made = fake_gce.add_image(f"{label}-{uuid.uuid4().hex[:6]}", by.build_labels(rec, 95, role),
                                  settings["image_family"] if family else None)  # fmt: skip
        made["creationTimestamp"] = (now - timedelta(days=age_days)).isoformat()
        return str(made["selfLink"])

    b1, b2, b3, b4 = build("b1"), build("b2"), build("b3"), build("b4", deliver=False)
    due = image("g1", b1, "final", 30)
    fake_gce.images[due.rsplit("/", 1)[1]]["deprecated"] = {"state": "DEPRECATED", "deleted": "2026-01-01T00:00:00Z"}
    b1_copy = image("g1-eu", b1, "copy", 30, family=False)
    past = image("g2", b2, "final", 20)
    newest = image("g3", b3, "final", 10)
    halfway = image("g4-eu", b4, "copy", 5, family=False)
    theirs = image("x", b1, "final", 40, by=other, family=False)

    planned = _rows(_retention("--spec", str(spec)))
    assert set(planned) == {due, b1_copy, past, newest, halfway}, planned
    assert planned[newest]["why"] == "the newest delivered image (build b3)"
    assert planned[halfway]["why"].startswith("build b4 is failed, not delivered")
    assert planned[due]["step"] == "delete"
    assert planned[past]["step"] == f"deprecate (deleted from {(now + timedelta(days=7)).date()})"

    # A delete Compute Engine refuses fails that image only: the others are done and recorded, the
    # command ends with exit 6 naming it, and the next run deletes it.
    fake_gce.fail_next(Fault("images.delete", status=403, reason="forbidden"))
    refused = _retention("--spec", str(spec), "--apply", code=6)
    assert "1 image(s) not deleted or not recorded" in refused["output"] and due in refused["output"]
    halfway_run = _rows(json.loads(refused["stdout"]))
    assert "error" in halfway_run[due] and halfway_run[past]["done"] == "deprecated"
    assert {i: r["done"] for i, r in _rows(_retention("--spec", str(spec), "--apply")).items() if r.get("done")} == {
        due: "deleted"}  # fmt: skip
    images = {i["selfLink"]: i for i in fake_gce.images.values()}
    assert due not in images and {past, b1_copy, newest, halfway, theirs} <= set(images)
    deprecation = images[past]["deprecated"]
    assert deprecation["state"] == "DEPRECATED" and deprecation["replacement"] == newest
    assert deprecation["deleted"].startswith(str((now + timedelta(days=7)).date()))
    events = [e["detail"] for e in _history(url, "b1") if e["type"] == "event" and e["kind"] == "retire"]
    assert sorted(events) == sorted([
        f"retired {due}: beyond the 1 newest delivered builds (retention of target)",
        f"retired {b1_copy}: deprecated, to be deleted by a later run: beyond the 1 newest delivered builds "
        "(retention of target)"])  # fmt: skip
    again = _rows(_retention("--spec", str(spec), "--apply"))
    assert not any(r.get("done") for r in again.values()) and again[past]["step"].startswith("wait: deprecated")
    assert len([e for e in _history(url, "b2") if e["type"] == "event" and e["kind"] == "retire"]) == 1


# -- Azure -----------------------------------------------------------------------------------------


def test_azure_deletes_old_gallery_versions_with_their_source_and_keeps_latest(tmp_path: Path, fake_arm: Any) -> None:
    """The Resource Manager fake: versions of the gallery image tagged for the pipeline; the newest
    delivered build's stays though excluded from latest, the version ``latest`` resolves to stays,
    a failed build's stays; the oldest goes with its source managed image; another pipeline's
    version (the highest number) and its source stay."""
    from tests.conftest import AZURE_CONN_ID, AZURE_GROUP
    from tests.targets.test_azure import GROUP_ID, KEY

    name = f"ret-az-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    settings = {"azure_conn_id": AZURE_CONN_ID, "resource_group": AZURE_GROUP, "location": "westeurope",
                "network": "vnet-build/builders", "ssh_public_key": KEY, "gallery": "golden",
                "gallery_image": "rhel8-web"}  # fmt: skip
    spec = tmp_path / "az.yaml"
    spec.write_text(f"pipeline: {name}\ncloud: azure\nimage_type: base\nstore: {url}\ntarget: {json.dumps(settings)}\n"
                    "retention: {keep_last: 1}\nmilestones:\n  95: {action: seal}\n"
                    "  100: {action: publish}\n")  # fmt: skip
    store = open_store(url)
    gallery = f"{GROUP_ID}/Microsoft.Compute/galleries/golden/images/rhel8-web/versions"
    major = int(uuid.uuid4().int % 1_000_000)  # versions of this test only: the fake's gallery is shared

    def tags(pipeline: str, build_id: str, role: str) -> dict[str, str]:
        return {"BuildId": build_id, "Pipeline": pipeline, "Role": role, "ManagedBy": MANAGED_BY}

    def version(build_id: str, minor: int, pipeline: str = name, exclude: bool = False) -> tuple[str, str]:
        source = f"{GROUP_ID}/Microsoft.Compute/images/{pipeline}-{build_id}-final"
        fake_arm.add(source, {"location": "westeurope", "tags": tags(pipeline, build_id, "final")})
        made = fake_arm.add(f"{gallery}/{major}.{minor}.0", {
            "location": "westeurope", "tags": tags(pipeline, build_id, "published"),
            "properties": {"storageProfile": {"source": {"id": source}},
                           "publishingProfile": {"excludeFromLatest": exclude,
                                                 "publishedDate": f"2026-11-0{minor}T00:00:00Z"}}})  # fmt: skip
        return str(made["id"]), source

    for build_id in ("b1", "b2", "b3"):
        store.create_build(build_id, pipeline=name, cloud="azure", image_type="base", plan=[0, 95, 100])
        store.complete(build_id, 95, token=store.begin(build_id, 95, owner="w").token)
        store.complete(build_id, 100, token=store.begin(build_id, 100, owner="w").token)
    store.create_build("b4", pipeline=name, cloud="azure", image_type="base", plan=[0, 95, 100])
    store.complete("b4", 95, token=store.begin("b4", 95, owner="w").token)
    store.fail("b4", 100, token=store.begin("b4", 100, owner="w").token, error="replication failed")
    (old, old_source), (latest, _) = version("b1", 1), version("b2", 2)
    (newest, _), (halfway, _) = version("b3", 3, exclude=True), version("b4", 4, exclude=True)
    theirs, their_source = version("t1", 9, pipeline=f"{name}-x", exclude=True)

    planned = _rows(_retention("--spec", str(spec)))
    assert set(planned) == {old, latest, newest, halfway}, planned
    assert planned[latest]["why"] == "still referenced by the latest of gallery image golden/rhel8-web"
    assert planned[newest]["why"] == "the newest delivered image (build b3)"
    assert planned[halfway]["why"].startswith("build b4 is failed")
    assert [i for i, r in planned.items() if r["retire"]] == [old]

    applied = _rows(_retention("--spec", str(spec), "--apply"))
    assert [i for i, r in applied.items() if r["deleted"]] == [old]
    assert fake_arm.get(old) is None and fake_arm.get(old_source) is None
    assert all(fake_arm.get(i) for i in (latest, newest, halfway, theirs, their_source))
    events = [e["detail"] for e in _history(url, "b1") if e["type"] == "event" and e["kind"] == "retire"]
    assert events == [f"retired {old}: beyond the 1 newest delivered builds (retention of target)"]


# -- OpenStack -------------------------------------------------------------------------------------


def _os_marks(name: str, build_id: str, role: str | None, published: bool = True) -> dict[str, str]:
    from airflow_provider_imagebuild.targets.openstack import KEY, MANAGED

    marks = {KEY: f"key-{build_id}", MANAGED: MANAGED_BY, "imagebuild_build": build_id, "imagebuild_pipeline": name}
    if role:
        marks["imagebuild_role"] = role
    if published:
        marks["imagebuild_published"] = "true"
    return marks


def _delivered(url: str, name: str, cloud: str, *builds: str) -> None:
    store = open_store(url)
    for build_id in builds:
        store.create_build(build_id, pipeline=name, cloud=cloud, image_type="base", plan=[0, 95, 100])
        store.complete(build_id, 95, token=store.begin(build_id, 95, owner="w").token)
        store.complete(build_id, 100, token=store.begin(build_id, 100, owner="w").token)


def test_openstack_deletes_old_published_images_of_its_project_only(tmp_path: Path, fake_os: Any) -> None:
    """Glance images the openstack target published (role final, imagebuild_published); an image a
    server was booted from stays, as do the newest, a checkpoint, a sealed image never published,
    another project's look-alike and another pipeline's."""
    from tests.conftest import OPENSTACK_CONN_ID
    from tests.servers.openstack import OTHER_PROJECT_ID

    name = f"ret-os-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    spec = tmp_path / "os.yaml"
    spec.write_text(f"""pipeline: {name}
cloud: openstack
image_type: base
store: {url}
target: {{openstack_conn_id: {OPENSTACK_CONN_ID}, flavor: m1.small, network: build-net, source_image: rhel-8}}
retention: {{keep_last: 1}}
milestones:
  95: {{action: seal}}
  100: {{action: publish}}
""")
    old, booted, newest = (fake_os.add_image(f"{name}-{b}", b"x", **_os_marks(name, b, "final")) for b in "123")
    kept = [
        fake_os.add_image(f"{name}-1-cp", b"x", **_os_marks(name, "1", "checkpoint", published=False)),
        fake_os.add_image(f"{name}-0", b"x", **_os_marks(name, "0", "final", published=False)),
        fake_os.add_image(f"{name}-theirs", b"x", owner=OTHER_PROJECT_ID, **_os_marks(name, "0", "final")),
        fake_os.add_image(f"{name}-other", b"x", **_os_marks(f"{name}-x", "0", "final")),
    ]
    server = fake_os.add_server(f"{name}-web", {})
    fake_os.servers[server]["image"] = {"id": booted}
    _delivered(url, name, "openstack", "1", "2", "3")

    planned = _rows(_retention("--spec", str(spec)))
    assert set(planned) == {old, booted, newest}, planned
    assert planned[booted]["why"] == f"still referenced by server {name}-web ({server}) booted from it"
    applied = _rows(_retention("--spec", str(spec), "--apply"))
    assert [i for i, r in applied.items() if r["deleted"]] == [old]
    assert old not in fake_os.images and {booted, newest, *kept} <= set(fake_os.images)


def test_a_local_pipelines_glance_destination_keeps_its_own_count(tmp_path: Path, fake_os: Any) -> None:
    """A destination's retention: replaces the pipeline's: the catalog keeps one version, the
    glance destination two; each destination's deletions are recorded with its label."""
    from tests.conftest import OPENSTACK_CONN_ID

    name = f"ret-lg-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    spec = _local_spec(tmp_path, name, url, "{keep_last: 1}")
    spec.write_text(
        spec.read_text()
        + f"""publish:
  - catalog
  - name: lab
    glance: {{openstack_conn_id: {OPENSTACK_CONN_ID}}}
    retention: {{keep_last: 2}}
"""
    )
    target = LocalTarget(TargetSpec(work_dir=str(tmp_path / "work"), catalog=str(tmp_path / "catalog")),
                         pipeline=name, image_type="base")  # fmt: skip
    versions = [_deliver(url, target, f"n{i}") for i in (1, 2, 3)]
    uploads = [fake_os.add_image(f"{name}-n{i}", b"x", **_os_marks(name, f"n{i}", None, published=False))
               for i in (1, 2, 3)]  # fmt: skip

    applied = _retention("--spec", str(spec), "--apply")
    by_label = {d["destination"]: d for d in applied["pipelines"][0]["destinations"]}
    assert by_label["lab"]["policy"] == "keep_last 2" and by_label["catalog"]["policy"] == "keep_last 1"
    assert [r["id"] for r in by_label["catalog"]["images"] if r["deleted"]] == [str(v) for v in versions[1::-1]]
    assert [r["id"] for r in by_label["lab"]["images"] if r["deleted"]] == [uploads[0]]
    assert versions[2].is_dir() and uploads[0] not in fake_os.images and set(uploads[1:]) <= set(fake_os.images)
    details = [e["detail"] for e in _history(url, "n1") if e["type"] == "event" and e["kind"] == "retire"]
    assert sorted(d.rsplit("(", 1)[1] for d in details) == ["retention of catalog)", "retention of lab)"]


# -- vSphere ---------------------------------------------------------------------------------------


def test_vsphere_deletes_old_library_items_with_their_final_template(tmp_path: Path, vsphere_library: str) -> None:
    """govmomi's vCenter simulator: the content library's items whose description names this
    pipeline and a build with that build's key; the oldest goes with the final template it was
    captured from, the newest stays, another pipeline's item and a forged one are never listed."""
    from airflow_provider_imagebuild.targets.base import build_digest
    from airflow_provider_imagebuild.targets.library_items import ITEMS, item_description
    from tests.conftest import VSPHERE_CONN_ID
    from tests.servers.vcsim import LIBRARY, SOURCE_TEMPLATE
    from tests.targets.test_vsphere import make_target, settings

    name = f"ret-vs-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    spec = tmp_path / "vs.yaml"
    spec.write_text(f"pipeline: {name}\ncloud: vsphere\nimage_type: base\nstore: {url}\n"
                    f"target: {json.dumps(settings())}\nretention: {{keep_last: 1}}\n"
                    "milestones:\n  95: {action: seal}\n  100: {action: publish}\n")  # fmt: skip
    _delivered(url, name, "vsphere", "b1", "b2")
    target = make_target(name)
    rest = target.clients.rest()

    def item(pipeline: str, build_id: str, item_name: str, key: str = "", seal: str = "") -> str:
        records = {"key": key or build_digest(pipeline, build_id, 20), **({"seal": seal} if seal else {})}
        spec = {"library_id": vsphere_library, "name": item_name, "type": "ovf",
                "description": item_description(f"{pipeline} build {build_id}", records)}  # fmt: skip
        return str(rest.post(ITEMS, json={"create_spec": spec}).json()["value"])

    template = f"{name}-b1-final"  # the seal's clone of the build VM, marked final with its seal
    target._clone(open_store(url).get("b1"), target._vm(SOURCE_TEMPLATE), template, template=True, role="final",
                  seal="seal-1")  # fmt: skip
    old = item(name, "b1", template, seal="seal-1")
    newest = item(name, "b2", f"{name}-b2-final", seal="seal-2")
    others = [item(f"{name}-x", "b0", f"{name}-x-b0"), item(name, "b9", f"{name}-b9", key="0" * 20)]

    planned = _rows(_retention("--spec", str(spec)))
    assert set(planned) == {old, newest}, planned
    applied = _rows(_retention("--spec", str(spec), "--apply"))
    assert [i for i, r in applied.items() if r["deleted"]] == [old]
    assert rest.get(f"{ITEMS}/id:{old}").status_code == 404 and target._vm(template) is None
    assert all(rest.get(f"{ITEMS}/id:{i}").status_code == 200 for i in (newest, *others))

    # A local pipeline's vsphere_library destination: its uploads, retired by its own settings.
    local = f"{name}-local"
    local_spec = _local_spec(tmp_path, local, url, "{keep_last: 1}")
    local_spec.write_text(local_spec.read_text() + f"publish:\n  - name: lab\n    vsphere_library: "
                          f"{{vsphere_conn_id: {VSPHERE_CONN_ID}, library: {LIBRARY}}}\n")  # fmt: skip
    _delivered(url, local, "local", "n1", "n2")
    uploads = [item(local, b, f"{local}-{b}") for b in ("n1", "n2")]
    applied = _rows(_retention("--spec", str(local_spec), "--apply"))
    assert [i for i, r in applied.items() if r["deleted"]] == uploads[:1]
    assert rest.get(f"{ITEMS}/id:{uploads[0]}").status_code == 404
    for i in (newest, *others, uploads[1]):
        rest.delete(f"{ITEMS}/id:{i}")  # the simulator's library is shared by the session


def test_gcp_never_lists_another_pipelines_images_whose_labels_read_the_same(tmp_path: Path, fake_gce: Any) -> None:
    """A label holds a lowercased, cut name: pipeline RET-GCP-X's images carry ret-gcp-x's
    ``imagebuild-pipeline`` label. Their build keys match none of ret-gcp-x's builds, so they are not
    listed (nothing proves them ret-gcp-x's), while a pruned build's final image of ret-gcp-x, whose
    description names the whole pipeline and a build id its key is the digest of, still is."""
    from datetime import datetime, timedelta, timezone

    from airflow_provider_imagebuild.spec.pipeline import GcpTargetSpec
    from airflow_provider_imagebuild.targets.gcp import GcpTarget

    name = f"ret-gcp-{uuid.uuid4().hex[:8]}"
    url, scratch = f"sqlite:///{tmp_path}/state.db", open_store(f"sqlite:///{tmp_path}/scratch.db")
    settings, spec = gcp_pipeline(tmp_path, name, url)
    target = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=name, image_type="base")
    twin = GcpTarget.from_settings(GcpTargetSpec(**settings), pipeline=name.upper(), image_type="base")
    store, old = open_store(url), datetime.now(timezone.utc) - timedelta(days=40)
    for build_id in ("b1", "b2"):
        store.create_build(build_id, pipeline=name, cloud="gcp", image_type="base", plan=[0, 100])
        store.complete(build_id, 100, token=store.begin(build_id, 100, owner="w").token)

    def image(by: GcpTarget, build_id: str, pipeline: str) -> str:
        rec = store.find(build_id) or scratch.create_build(build_id, pipeline=pipeline, cloud="gcp",
                                                           image_type="base", plan=[0, 100])  # fmt: skip
        made = fake_gce.add_image(f"i-{uuid.uuid4().hex[:8]}", by.build_labels(rec, 95, "final"))
        made.update(creationTimestamp=old.isoformat(), description=f"{pipeline} {build_id} after milestone 95")
        return str(made["selfLink"])

    ours = {image(target, "b1", name), image(target, "b2", name)}
    pruned = image(target, "b0", name)
    theirs = {image(twin, "t1", name.upper()), image(twin, "t2", name.upper())}
    assert twin.build_labels(scratch.get("t1"), 95, "final")["imagebuild-pipeline"] == name  # the same label
    planned = _rows(_retention("--spec", str(spec)))
    assert set(planned) == ours | {pruned} and not theirs & set(planned)
    assert planned[pruned]["build_id"] == "b0" and planned[pruned]["retire"]


def test_a_catalog_version_with_a_file_system_mounted_inside_is_left_alone(tmp_path: Path) -> None:
    """A version past the policy with a mount inside (a share bind-mounted to serve the image) is
    not deleted: removing the tree would cross the mount and delete what it holds. Its row says
    why and the command ends with exit 6; once unmounted, the next run deletes it."""
    import subprocess

    url = f"sqlite:///{tmp_path}/state.db"
    spec = _local_spec(tmp_path, "nightly", url, "{keep_last: 1}")
    target = LocalTarget(TargetSpec(work_dir=str(tmp_path / "work"), catalog=str(tmp_path / "catalog")),
                         pipeline="nightly", image_type="base")  # fmt: skip
    old, _ = (_deliver(url, target, f"n{i}") for i in (1, 2))
    (old / "served").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(old / "served")], check=True)
    try:
        (old / "served" / "data").write_text("on the mounted file system")
        refused = _retention("--spec", str(spec), "--apply", code=6)
        assert "has a file system mounted inside" in refused["output"], refused["output"]
        assert (old / "served" / "data").is_file() and (old / "metadata.json").is_file()
    finally:
        subprocess.run(["umount", "-l", str(old / "served")], check=True)
    assert _rows(_retention("--spec", str(spec), "--apply"))[str(old)]["deleted"] and not old.exists()


def test_the_image_a_newer_build_delivered_again_is_kept_as_the_newest(tmp_path: Path) -> None:
    """n3 found nothing changed since n1 (#32, the playbook change of n2 reverted) and delivered n1's
    version again without publishing one of its own: n1's version is the newest delivered image,
    not a build beyond keep_last 1. The catalog's latest still names n2 (kept by that reference)."""
    url = f"sqlite:///{tmp_path}/state.db"
    spec = _local_spec(tmp_path, "nightly", url, "{keep_last: 1}")
    target = LocalTarget(TargetSpec(work_dir=str(tmp_path / "work"), catalog=str(tmp_path / "catalog")),
                         pipeline="nightly", image_type="base")  # fmt: skip
    n0, n1, n2 = (_deliver(url, target, f"n{i}") for i in range(3))
    store = open_store(url)
    store.create_build("n3", pipeline="nightly", cloud="local", image_type="base", plan=[0, 95, 100])
    lease = store.begin("n3", 95, owner="test")
    source = store.get("n1")
    taken = [(c, source.milestones[c].outputs, "0" * 64, {"previous": ""}) for c in (95, 100)]
    store.reuse("n3", 95, token=lease.token, source="n1", taken=taken)

    applied = _rows(_retention("--spec", str(spec), "--apply"))
    assert applied[str(n1)]["why"] == "the newest delivered image (build n1; delivered again by build n3)"
    assert not applied[str(n1)]["retire"] and n1.is_dir() and n2.is_dir()
    assert [i for i, r in applied.items() if r["deleted"]] == [str(n0)] and not n0.exists()
