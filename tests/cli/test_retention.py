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

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import file_hash
from airflow_provider_imagebuild.targets.local import LocalTarget
from tests.cli.test_gc import Planted, _image_exists, _other_account_ec2, _tags
from tests.servers.aws_sample import CONN_ID, moto_connection


def _retention(*args: str, code: int = 0) -> dict[str, Any]:
    got = CliRunner().invoke(cli, ["retention", "--json", *args])
    assert got.exit_code == code, got.output
    return dict(json.loads(got.stdout)) if code == 0 else {"output": got.output}


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
                       ("{}", "retention"), ("{keep_last: true}", "retention.keep_last")):  # fmt: skip
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moto_url: str, ec2: Any, base_ami: str,
    aws_clients: Callable[[str, str], Any],
) -> None:  # fmt: skip
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", moto_connection(moto_url))
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

    planned = _rows(_retention("--spec", str(spec)))
    assert set(planned) == {unknown, old, old_copy, in_template, newest, halfway}, planned
    why = {i: r["why"] for i, r in planned.items()}
    assert why[newest] == "the newest delivered image (build b3)"
    assert why[in_template] == f"still referenced by launch template {name}-web version 1 in us-east-1"
    assert why[old_copy] == f"still referenced by SSM parameter /imagebuild/{name}/image_id in eu-west-1"
    assert why[halfway].startswith("build b4 is failed, not delivered")
    assert why[unknown].startswith("build pruned-1 is unknown to the store")
    assert {i for i, r in planned.items() if r["retire"]} == {old, unknown}

    applied = _rows(_retention("--spec", str(spec), "--apply"))
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
    assert not any(r["retire"] for r in _rows(_retention("--spec", str(spec))).values())


# -- Google Cloud ----------------------------------------------------------------------------------


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
    from tests.conftest import GCP_CONN_ID
    from tests.servers.gce import ZONE

    name = f"ret-gcp-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path}/state.db"
    settings: dict[str, Any] = {"gcp_conn_id": GCP_CONN_ID, "zone": ZONE, "image_family": f"{name}-fam",
                                "ssh_public_key": "ssh-ed25519 AAAA k"}  # fmt: skip
    spec = tmp_path / "gcp.yaml"
    spec.write_text(f"pipeline: {name}\ncloud: gcp\nimage_type: base\nstore: {url}\ntarget: {json.dumps(settings)}\n"
                    "retention: {keep_last: 1}\nmilestones:\n  95: {action: seal}\n"
                    "  100: {action: publish}\n")  # fmt: skip
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

    applied = _rows(_retention("--spec", str(spec), "--apply"))
    assert {i: r["done"] for i, r in applied.items() if r.get("done")} == {
        due: "deleted", past: "deprecated", b1_copy: "deprecated"}  # fmt: skip
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
