"""The Google Cloud target against a loopback fake of the Compute Engine API.

Real: ``google-api-python-client``'s discovery-based ``compute`` v1 client (with the discovery
document it ships), its retries on 429, ``google-auth`` service account credentials (a fresh key
whose token requests go to the fake), and the Airflow Google connection read by the Google
provider's ``GoogleBaseHook``. Faked: Compute Engine itself (tests/servers/gce.py), which checks
every request body against the discovery document's schemas. Nothing runs on the "instances".
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec.pipeline import GcpTargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import Checkpoint
from airflow_provider_imagebuild.targets.gcp import GcpTarget
from tests.conftest import GCP_CONN_ID
from tests.servers.gce import PROJECT, ZONE, FakeGce, Fault

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImagebuildTestKeyOnlyForTheFakeGce imagebuild"


def _target(**settings: Any) -> GcpTarget:
    base: dict[str, Any] = {
        "gcp_conn_id": GCP_CONN_ID,
        "zone": ZONE,
        "image_family": "rhel8-web",
        "ssh_public_key": KEY,
        "service_account": f"builder@{PROJECT}.iam.gserviceaccount.com",
    }
    return GcpTarget.from_settings(GcpTargetSpec(**{**base, **settings}), pipeline="web", image_type="webserver")


def _build(tmp_path: Any, build_id: str) -> Any:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    return store.create_build(build_id, pipeline="web", cloud="gcp", image_type="webserver", plan=[0, 10, 30, 95, 100])


def _reached(tmp_path: Any, build: Any, checkpoints: dict[int, str]) -> Any:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    for code, image in checkpoints.items():
        lease = store.begin(build.build_id, code, owner="test")
        build = store.complete(build.build_id, code, token=lease.token, outputs={"checkpoint_image": image})
    return build


def _green(fake: FakeGce, target: GcpTarget, build: Any, name: str = "green") -> str:
    """The image Packer's googlecompute builder would have made, claimed as the operator does."""
    image = fake.add_image(name)["selfLink"]
    target.claim_images(build, {"": image}, 10)
    return str(image)


def test_host_checkpoint_seal_publish_and_cleanup(fake_gce: FakeGce, tmp_path: Any) -> None:
    target = _target(
        share_with=["group:image-users@example.com"],
        copy_locations=["asia"],
        storage_locations=["eu"],
        labels={"team": "web"},
        deprecate_previous={"state": "DEPRECATED", "obsolete_after_days": 30},
    )
    build = _build(tmp_path, "GCP-Target.1")
    green = _green(fake_gce, target, build)
    assert fake_gce.images["green"]["labels"]["imagebuild-build"] == "gcp-target_1"

    host = target.launch(build, Checkpoint(10, green))
    assert target.alive(build, host) and host.address.startswith("10.128.0.")
    instance = fake_gce.instances[host.id.rsplit("/", 1)[-1]]
    assert instance["labels"]["imagebuild-role"] == "buildhost" and instance["labels"]["team"] == "web"
    assert instance["metadata"]["items"] == [{"key": "ssh-keys", "value": f"imagebuild:{KEY}"}]
    assert "accessConfigs" not in instance["networkInterfaces"][0]

    captured = target.capture(build, host, 30, final=False)
    checkpoint = captured["checkpoint_image"]
    assert fake_gce.images[checkpoint.rsplit("/", 1)[-1]]["family"] == "rhel8-web-staging"
    assert captured["checkpoint_gb"] == int(fake_gce.images[checkpoint.rsplit("/", 1)[-1]]["diskSizeGb"])  # cost
    assert target.alive(build, host), "the host runs again after its checkpoint"

    fake_gce.remove_instance(host.id.rsplit("/", 1)[-1])
    assert not target.alive(build, host)
    relaunched = target.launch(build, Checkpoint(30, checkpoint))
    assert relaunched.id != host.id

    # An older image of the pipeline in the family: the publish deprecates it.
    labels = target.build_labels(build, 95, "final") | {"imagebuild-key": "0" * 20}
    older = fake_gce.add_image("rhel8-web-older", labels, family="rhel8-web")
    older["creationTimestamp"] = "2026-01-01T00:00:00.000-00:00"
    outputs = target.capture(build, relaunched, 95, final=True)
    final = outputs["image_id"]
    image = fake_gce.images[outputs["final_image_name"]]
    assert (
        image["family"] == "rhel8-web" and image["storageLocations"] == ["eu"] and not target.alive(build, relaunched)
    )
    assert target.discard(build, [checkpoint, f"projects/{PROJECT}/global/images/gone"]) == [checkpoint]

    published = target.publish(build, final)
    assert published == target.publish(build, final)  # idempotent
    assert published["image_family"] == "rhel8-web" and published["image_project"] == PROJECT
    assert published["deprecated_image"] == older["selfLink"]
    assert older["deprecated"]["state"] == "DEPRECATED" and older["deprecated"]["replacement"] == final
    copy = published["copies"]["asia"].rsplit("/", 1)[-1]
    assert fake_gce.images[copy]["storageLocations"] == ["asia"]
    for name in (outputs["final_image_name"], copy):
        binding = fake_gce.policies[name]["bindings"][0]
        assert binding == {"role": "roles/compute.imageUser", "members": ["group:image-users@example.com"]}

    build = _reached(tmp_path, build, {10: green, 30: checkpoint})
    target.cleanup(build, relaunched)
    target.cleanup(build, relaunched)  # again: harmless
    assert fake_gce.instances == {} and fake_gce.disks == {}
    assert fake_gce.refused == [], fake_gce.refused


def test_throttling_a_failed_image_and_foreign_images(fake_gce: FakeGce, tmp_path: Any) -> None:
    target = _target(public_ip=True)
    build = _build(tmp_path, "gcp-target-2")
    green = _green(fake_gce, target, build)

    fake_gce.fail_next(Fault("instances.insert"))  # 429: the client retries with back-off
    host = target.launch(build, Checkpoint(10, green))
    assert fake_gce.calls.count("instances.insert") == 2 and host.address.startswith("203.0.113.")

    fake_gce.failing.append("images.insert")
    with pytest.raises(TargetError, match="INTERNAL_ERROR"):
        target.capture(build, host, 95, final=True)
    final = target.capture(build, host, 95, final=True)["image_id"]
    assert fake_gce.images[final.rsplit("/", 1)[-1]]["status"] == "READY"

    fake_gce.fail_next(Fault("instances.get", times=10))
    with pytest.raises(TargetError, match="rateLimitExceeded"):
        target.alive(build, host)
    fake_gce.faults.clear()

    vendor = fake_gce.images["rhel-8-v20261101"]["selfLink"]
    with pytest.raises(InvalidInput, match="not build gcp-target-2's"):
        target.launch(build, Checkpoint(10, vendor))
    with pytest.raises(InvalidInput, match="not build gcp-target-2's"):
        target.publish(build, vendor)
    assert not target.owns_image(build, f"projects/other-project/global/images/{final.rsplit('/', 1)[-1]}")
    assert target.discard(build, [vendor]) == [] and "rhel-8-v20261101" in fake_gce.images
    assert fake_gce.refused == [], fake_gce.refused


def test_credentials_and_endpoint_errors(fake_gce: FakeGce, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tests.servers.process import free_port

    build = _build(tmp_path, "gcp-target-3")
    fake_gce.fail_next(Fault("images.get", status=403, reason="forbidden"))
    with pytest.raises(InvalidInput, match="forbidden") as info:
        _target().owns_image(build, f"projects/{PROJECT}/global/images/x")
    assert info.value.field == "credentials"

    conn = json.loads(__import__("os").environ[f"AIRFLOW_CONN_{GCP_CONN_ID.upper()}"])
    conn["extra"]["compute_endpoint"] = f"http://127.0.0.1:{free_port()}/compute/v1/"
    monkeypatch.setenv(f"AIRFLOW_CONN_{GCP_CONN_ID.upper()}", json.dumps(conn))
    with pytest.raises(TargetError, match="cannot reach"):
        _target().owns_image(build, f"projects/{PROJECT}/global/images/x")
    env = _target().packer_env()
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == conn["extra"]["key_path"]
    assert "private_key" not in json.dumps(_target().packer_vars())

    conn["extra"]["compute_endpoint"] = "http://compute.example.com/compute/v1/"  # a token in clear: refused
    monkeypatch.setenv(f"AIRFLOW_CONN_{GCP_CONN_ID.upper()}", json.dumps(conn))
    with pytest.raises(InvalidInput, match="must be https"):
        _target()


def test_a_malformed_request_is_refused_by_the_schema_check(fake_gce: FakeGce) -> None:
    """The fake is only worth its tests if it refuses what Compute Engine would."""
    from airflow_provider_imagebuild.clouds.gcp import GcpClients, gcp_errors

    compute = GcpClients.from_connection(GCP_CONN_ID).compute
    request = compute.instances().insert(project=PROJECT, zone=ZONE, body={"name": "x", "disks": [{"boot": "yes"}]})
    with pytest.raises(InvalidInput, match="expected a boolean"), gcp_errors("instances.insert x"):
        request.execute()  # a 400: the target's error translation makes it InvalidInput (not retried)
    assert fake_gce.refused and "disks[0].boot" in fake_gce.refused[0]


def test_image_links_go_to_the_console_for_well_formed_images_only() -> None:
    from airflow_provider_imagebuild.targets.links import image_links

    link = f"https://compute.googleapis.com/compute/v1/projects/{PROJECT}/global/images/rhel8-web-1"
    assert image_links("gcp", {"image_self_link": link, "image_id": link}) == {
        "rhel8-web-1": f"https://console.cloud.google.com/compute/imagesDetail/projects/{PROJECT}/global/images/"
        f"rhel8-web-1?project={PROJECT}"
    }
    assert image_links("gcp", {"image_id": "javascript:alert(1)"}) == {}


def test_deprecate_previous_reads_every_page_of_the_family(
    fake_gce: FakeGce, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A family holds more than one page of images (500): the pipeline's previous image is on the
    second page. The dates the policy records are informational, and the log and help say so."""
    from airflow_provider_imagebuild.spec.gcp import Deprecation
    from airflow_provider_imagebuild.targets import gcp
    from airflow_provider_imagebuild.targets.base import MANAGED_BY

    target = _target(deprecate_previous={"state": "DEPRECATED", "obsolete_after_days": 30, "delete_after_days": 90})
    build = _build(tmp_path, "gcp-target-4")
    for n in range(510):  # another pipeline's images, older and newer
        fake_gce.add_image(f"other-{n:04d}", {"imagebuild-pipeline": "other", "managed-by": MANAGED_BY}, "rhel8-web")
    labels = target.build_labels(build, 95, "final") | {"imagebuild-key": "0" * 20}
    older = fake_gce.add_image("rhel8-web-older", labels, family="rhel8-web")
    older["creationTimestamp"] = "2026-01-01T00:00:00.000-00:00"
    final = fake_gce.add_image("rhel8-web-new", target.build_labels(build, 95, "final"), family="rhel8-web")

    logged: list[str] = []
    monkeypatch.setattr(gcp.log, "info", lambda msg, *args: logged.append(msg % args))
    published = target.publish(build, final["selfLink"])
    assert published["deprecated_image"] == older["selfLink"] and fake_gce.pages == 2
    assert older["deprecated"]["replacement"] == final["selfLink"] and older["deprecated"]["deleted"]
    assert "rhel8-web-older" in fake_gce.images and any("informational dates" in line for line in logged)
    assert all("informational" in (Deprecation.model_fields[f].description or "") for f in
               ("obsolete_after_days", "delete_after_days"))  # fmt: skip
    assert fake_gce.refused == [], fake_gce.refused


def test_the_launch_test_instance_runs_from_the_sealed_image_shows_its_serial_port_and_is_deleted(
    fake_gce: FakeGce, tmp_path: Any
) -> None:
    """The launch test's hooks (targets/launch.py runs them): one instance from the sealed image,
    labelled as the build's launch test, its serial port 1 read with getSerialPortOutput, found as a
    leftover by name and labels (another build's never), and deleted with its boot disk."""
    target = _target()
    build = _build(tmp_path, "gcp-launch-1")
    sealed = _green(fake_gce, target, build, name="sealed")
    console = tmp_path / "console.log"
    console.write_bytes(b"[    1.0] Linux version 6.1\r\nweb login: ")
    fake_gce.guest_console = console

    instance_id = target.launch_test_instance(build, sealed)
    name = instance_id.rsplit("/", 1)[-1]
    assert name.endswith("-lt") and fake_gce.instances[name]["labels"]["imagebuild-role"] == "launch-test"
    assert fake_gce.instances[name]["disks"][0]["autoDelete"] is True
    found = target.test_instance(build, instance_id)
    assert found is not None and found.state == "running" and found.address.startswith("10.128.0.")
    assert target.leftover_test_instances(build) == [instance_id]
    assert target.test_instance_console(build, instance_id) == console.read_bytes()

    other = _build(tmp_path, "gcp-launch-2")
    assert target.leftover_test_instances(other) == [] and target.test_instance(other, instance_id) is None
    target.delete_test_instance(other, instance_id)
    assert name in fake_gce.instances

    fake_gce.instances[name]["status"] = "TERMINATED"  # stopped by someone: it will not come up
    found = target.test_instance(build, instance_id)
    assert found is not None and found.state == "stopped" and "TERMINATED" in found.detail
    target.delete_test_instance(build, instance_id)
    assert name not in fake_gce.instances and name not in fake_gce.disks
    assert target.test_instance(build, instance_id) is None and target.leftover_test_instances(build) == []
    target.delete_test_instance(build, instance_id)  # again: harmless


def test_serial_port_output_is_refused_beyond_the_published_ports_and_pages_by_start(
    fake_gce: FakeGce, tmp_path: Any
) -> None:
    """getSerialPortOutput as compute.v1 publishes it: ``port`` 1 to 4 (5 is refused, as is a
    ``start`` that is not an int64), ``start``/``next`` byte positions, a negative start from the end."""
    target = _target()
    build = _build(tmp_path, "gcp-serial-1")
    instance_id = target.launch_test_instance(build, _green(fake_gce, target, build, name="sealed"))
    name = instance_id.rsplit("/", 1)[-1]
    console = tmp_path / "console.log"
    console.write_bytes(b"0123456789")
    fake_gce.guest_console = console
    instances = target.compute.instances()
    with pytest.raises(Exception, match="port: 5 is above 4"):
        instances.getSerialPortOutput(project=PROJECT, zone=ZONE, instance=name, port=5).execute()
    with pytest.raises(Exception, match="start: 'x' is not an integer"):
        instances.getSerialPortOutput(project=PROJECT, zone=ZONE, instance=name, start="x").execute()
    page = instances.getSerialPortOutput(project=PROJECT, zone=ZONE, instance=name, start=4).execute()
    assert (page["contents"], page["start"], page["next"]) == ("456789", "4", "10")
    tail = instances.getSerialPortOutput(project=PROJECT, zone=ZONE, instance=name, start=-3).execute()
    assert (tail["contents"], tail["start"]) == ("789", "7")
    assert instances.getSerialPortOutput(project=PROJECT, zone=ZONE, instance=name, port=2).execute()["contents"] == ""


@pytest.mark.slow
def test_the_launch_test_passes_on_the_stand_in_guest_and_a_failed_one_still_deletes_its_instance(
    fake_gce: FakeGce, standin_guest: Any, tmp_path: Any
) -> None:
    """The whole launch test (targets/launch.py's template with the Compute Engine hooks): the
    instance is inserted in the fake, SSH, sudo, the network and the shipped verification playbook
    run on the stand-in guest (tests/servers/guest.py, through target.boot.ssh_address), its serial
    log is serial port 1; a failing playbook fails the check with the console's tail, and either way
    the instance and its disk are deleted."""
    from airflow_provider_imagebuild.operators.target import default_verification_playbook
    from airflow_provider_imagebuild.targets.boot import SEALED_IMAGE, boot_request

    target = _target(ssh_private_key_file=str(standin_guest.key), boot=standin_guest.boot_settings())
    build = _build(tmp_path, "gcp-launch-e2e")
    sealed = _green(fake_gce, target, build, name="sealed")
    fake_gce.guest_console = standin_guest.console
    boot = target.settings.boot
    report = target.boot_check(build, sealed, boot_request(boot, SEALED_IMAGE, "uefi", default_verification_playbook()))
    assert report.passed, report.error_text()
    assert report.checks["launch"] == "ok" and report.checks["login_prompt"] == "ok" and report.checks["delete"] == "ok"
    assert report.instance.endswith("/instances/" + target.names.test_host(build))
    assert "instances.getSerialPortOutput" in fake_gce.calls
    assert fake_gce.instances == {} and fake_gce.disks == {}

    failing = tmp_path / "fails.yml"
    failing.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                       "    - ansible.builtin.fail: {msg: the image is not what it should be}\n")  # fmt: skip
    report = target.boot_check(build, sealed, boot_request(boot, SEALED_IMAGE, "uefi", failing))
    assert not report.passed and "the image is not what it should be" in report.failure
    assert "login:" in report.console_tail and report.checks["delete"] == "ok"
    assert fake_gce.instances == {} and fake_gce.disks == {}


# -- reuse: a new build's own copy of an earlier build's checkpoint (#32, targets/gcp_adopt.py) -------------
def test_adopting_a_checkpoint_copies_it_once_into_the_new_builds_ownership(fake_gce: FakeGce, tmp_path: Any) -> None:
    """The copy is the new build's (labels, name, description, staging family), launchable and
    discardable by it, never by the source; a retried adoption returns the same copy without an
    insert, and the client's own retry of an insert whose answer was lost (requestId) makes one."""
    target = _target()
    source = _build(tmp_path, "Web-Src.1")
    green = _green(fake_gce, target, source)
    new = _build(tmp_path, "web-new-2")

    fake_gce.fail_next(Fault("images.insert", status=503, reason="backendError", processed=True))
    adopted = target.adopt_checkpoint(new, source, Checkpoint(10, green))
    copy = adopted["checkpoint_image"]
    name = copy.rsplit("/", 1)[-1]
    assert fake_gce.calls.count("images.insert") == 2  # the client retried the insert whose answer was lost
    assert sorted(fake_gce.images) == sorted(["rhel-8-v20261101", "green", name]), "one copy, not two"
    made = fake_gce.images[name]
    assert made["sourceImageId"] == fake_gce.images["green"]["id"] and made["family"] == "rhel8-web-staging"
    assert made["labels"]["imagebuild-role"] == "checkpoint" and made["labels"]["imagebuild-milestone"] == "m010"
    assert target.names.described_build(made, target.key(new)) == "web-new-2"
    assert adopted == {
        "checkpoint_image": copy,
        "checkpoint_image_name": name,
        "image_project": PROJECT,
        "copied_from": green,
        "checkpoint_gb": 20,
    }
    assert target.owns_image(new, copy) and not target.owns_image(source, copy)
    assert target.owns_image(source, green) and fake_gce.images["green"]["labels"]["imagebuild-key"] == target.key(
        source
    )

    assert target.adopt_checkpoint(new, source, Checkpoint(10, green)) == adopted  # retried: the same copy
    assert fake_gce.calls.count("images.insert") == 2 and len(fake_gce.images) == 3

    host = target.launch(new, Checkpoint(10, copy))
    assert fake_gce.disks[host.id.rsplit("/", 1)[-1]]["sourceImage"] == copy
    target.cleanup(new, host)
    assert target.discard(source, [copy]) == [] and name in fake_gce.images  # not the source's to delete
    assert target.discard(new, [copy]) == [copy] and name not in fake_gce.images and "green" in fake_gce.images

    fake_gce.failing.append("images.insert")  # an earlier attempt's copy that FAILED: deleted, copied again
    with pytest.raises(TargetError, match="INTERNAL_ERROR"):
        target.adopt_checkpoint(new, source, Checkpoint(10, green))
    fake_gce.add_image(name, target.build_labels(new, 10, "checkpoint"))["status"] = "FAILED"
    again = target.adopt_checkpoint(new, source, Checkpoint(10, green))
    assert again["checkpoint_image"] == copy and fake_gce.images[name]["status"] == "READY"
    assert fake_gce.refused == [], fake_gce.refused


def test_a_copy_that_fails_half_way_leaves_nothing_behind(
    fake_gce: FakeGce, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy's operation ends in an error (a FAILED image), never finishes within the bounded
    wait, or an earlier attempt's copy stays PENDING past it: each is deleted before TargetError
    is raised, the source untouched."""
    from airflow_provider_imagebuild.targets import gcp, gcp_adopt

    monkeypatch.setattr(gcp, "OPERATION_WAITS", 3)  # the bound (2 hours of waits) made seconds
    target = _target()
    source = _build(tmp_path, "web-src-3")
    green = _green(fake_gce, target, source)
    new = _build(tmp_path, "web-new-4")
    before = dict(fake_gce.images)

    fake_gce.failing.append("images.insert")
    with pytest.raises(TargetError, match="INTERNAL_ERROR"):
        target.adopt_checkpoint(new, source, Checkpoint(10, green))
    assert fake_gce.images == before and fake_gce.calls.count("images.delete") == 1

    fake_gce.stalled.append("images.insert")
    with pytest.raises(TargetError, match=f"not done after {gcp.OPERATION_WAITS} waits"):
        target.adopt_checkpoint(new, source, Checkpoint(10, green))
    assert fake_gce.images == before and fake_gce.calls.count("images.delete") == 2

    # An earlier attempt's copy, still PENDING when the bounded wait for it is over: deleted too.
    monkeypatch.setattr(gcp_adopt, "READY_WAIT_S", 0.0)
    stuck = fake_gce.add_image(target.names.checkpoint(new, 10), target.build_labels(new, 10, "checkpoint"))
    stuck.update(status="PENDING", sourceImageId=fake_gce.images["green"]["id"])
    with pytest.raises(TargetError, match="the copy is not READY after 0 s"):
        target.adopt_checkpoint(new, source, Checkpoint(10, green))
    assert fake_gce.images == before and fake_gce.calls.count("images.delete") == 3
    assert fake_gce.images["green"]["status"] == "READY" and target.owns_image(source, green)
    assert fake_gce.refused == [], fake_gce.refused


def test_only_the_named_source_builds_checkpoint_is_copied(fake_gce: FakeGce, tmp_path: Any) -> None:
    """Another build's image, another pipeline's (whose labels read the same), the source's final
    image or its checkpoint of another milestone, one in another project, one not READY, a record
    of another pipeline, or an image of the copy's name that is not the new build's: refused with
    one line naming it, and nothing is copied or deleted."""
    target = _target()
    source = _build(tmp_path, "web-src-5")
    green = _green(fake_gce, target, source)
    new = _build(tmp_path, "web-new-6")
    other_build = _green(fake_gce, target, _build(tmp_path, "web-other-7"), name="other-build")
    lookalike = GcpTarget.from_settings(target.settings, pipeline="Web", image_type="webserver")  # labels: "web"
    other_pipeline = _green(fake_gce, lookalike, source, name="other-pipeline")
    assert fake_gce.images["other-pipeline"]["labels"]["imagebuild-pipeline"] == "web"
    final = fake_gce.add_image("sealed", target.build_labels(source, 95, "final"))["selfLink"]
    pending = fake_gce.add_image("pending", target.build_labels(source, 10, "checkpoint"))
    pending["status"] = "PENDING"
    before = dict(fake_gce.images)
    refused = {
        other_build: "not a checkpoint image of build web-src-5",
        other_pipeline: "not a checkpoint image of build web-src-5",
        final: "not a checkpoint image of build web-src-5",
        "projects/other-project/global/images/green": "not a checkpoint image of build web-src-5",
    }
    for image, why in refused.items():
        with pytest.raises(InvalidInput, match=why) as info:
            target.adopt_checkpoint(new, source, Checkpoint(10, image))
        assert info.value.field == "milestones.10.outputs.checkpoint_image"
    with pytest.raises(InvalidInput, match="checkpoint after milestone 10, not after 30"):
        target.adopt_checkpoint(new, source, Checkpoint(30, green))
    with pytest.raises(TargetError, match="pending is PENDING, not READY"):
        target.adopt_checkpoint(new, source, Checkpoint(10, pending["selfLink"]))
    foreign = dataclasses.replace(_build(tmp_path, "web-src-8"), pipeline="other")
    with pytest.raises(InvalidInput, match="of pipeline 'other', not 'web'"):
        target.adopt_checkpoint(new, foreign, Checkpoint(10, green))
    with pytest.raises(InvalidInput, match="its own checkpoint"):
        target.adopt_checkpoint(source, source, Checkpoint(10, green))
    squatter = fake_gce.add_image(target.names.checkpoint(new, 10), {"team": "web"})
    with pytest.raises(InvalidInput, match="is not build web-new-6's"):
        target.adopt_checkpoint(new, source, Checkpoint(10, green))
    assert fake_gce.images == {**before, squatter["name"]: squatter} and "images.insert" not in fake_gce.calls
    assert "images.delete" not in fake_gce.calls and "images.setLabels" in fake_gce.calls  # _green's claims only
    assert fake_gce.refused == [], fake_gce.refused


def test_an_image_copy_is_refused_as_compute_engine_refuses_it(fake_gce: FakeGce) -> None:
    """images.insert as compute.v1 publishes it (tests/servers/gce.py): exactly one source, a
    sourceImage URL in a listed format naming a READY image, a requestId that is a non-zero UUID;
    output-only fields are not taken from the request."""
    from googleapiclient.errors import HttpError

    from airflow_provider_imagebuild.clouds.gcp import GcpClients

    images = GcpClients.from_connection(GCP_CONN_ID).compute.images()
    vendor = fake_gce.images["rhel-8-v20261101"]
    link = f"projects/{PROJECT}/global/images/rhel-8-v20261101"
    fake_gce.add_image("pending")["status"] = "PENDING"
    refused = {
        "no source": ({"name": "c1"}, {}),
        "two sources": ({"name": "c1", "sourceImage": link, "sourceDisk": f"zones/{ZONE}/disks/d"}, {}),
        "a bare name": ({"name": "c1", "sourceImage": "rhel-8-v20261101"}, {}),
        "another project": ({"name": "c1", "sourceImage": "projects/other-project/global/images/rhel-8-v20261101"}, {}),
        "not READY": ({"name": "c1", "sourceImage": f"projects/{PROJECT}/global/images/pending"}, {}),
        "a zero requestId": (
            {"name": "c1", "sourceImage": link},
            {"requestId": "00000000-0000-0000-0000-000000000000"},
        ),
        "a requestId not a UUID": ({"name": "c1", "sourceImage": link}, {"requestId": "retry-1"}),
    }
    for case, (body, params) in refused.items():
        with pytest.raises(HttpError) as info:
            images.insert(project=PROJECT, body=body, **params).execute()
        assert info.value.resp.status == 400, case
    assert "c1" not in fake_gce.images
    made = images.insert(project=PROJECT, body={"name": "c1", "sourceImage": vendor["selfLink"], "status": "READY",
                                                "sourceImageId": "1"}).execute()  # fmt: skip
    assert made["status"] == "RUNNING" and fake_gce.images["c1"]["sourceImageId"] == vendor["id"]
