"""Every name a Google Cloud build gives Compute Engine or Packer fits their rules, whatever the
pipeline's name and build id: a 63-character pipeline and a scheduled run's derived build id
(capitals, dots, underscores, 112 characters), against the fake Compute Engine, which refuses
names, families and labels outside the published patterns, and against real ``packer validate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.ids import derive_build_id
from airflow_provider_imagebuild.clouds.gcp import GcpClients
from airflow_provider_imagebuild.spec.pipeline import GcpTargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import Checkpoint
from airflow_provider_imagebuild.targets.gcp import GcpTarget
from airflow_provider_imagebuild.targets.gcp_names import NAME_RE, GcpNames, packer_labels
from tests.conftest import GCP_CONN_ID
from tests.servers.gce import PROJECT, ZONE, FakeGce
from tests.servers.gcp_sample import packer_operator, packer_validate, packer_values
from tests.servers.process import ROOT

LONG = "Acme.RHEL8_WebServer-nightly.golden-images.for-platform-team-01"
TEMPLATE = ROOT / "dags/packer/rhel8-gcp.pkr.hcl"
# Two regions whose names share their first 21 characters, and a multi-region.
LOCATIONS = ["northamerica-northeast1", "northamerica-northeast2", "asia"]


def _target(pipeline: str, **settings: Any) -> GcpTarget:
    spec = GcpTargetSpec(gcp_conn_id=GCP_CONN_ID, zone=ZONE, **settings)
    return GcpTarget.from_settings(spec, pipeline=pipeline, image_type="webserver")


def _packer_image(target: GcpTarget, build: Any, milestone: int, source: str) -> str:
    """The image Packer's googlecompute builder makes, with the labels the shipped template
    writes, inserted through the real client so that the fake checks its name and labels."""
    name = target.packer_image_name(build, target.pipeline, milestone)
    body = {
        "name": name,
        "sourceImage": source,
        "labels": packer_labels(GcpNames(target.pipeline, None), build, milestone),
    }
    compute = GcpClients.from_connection(GCP_CONN_ID).compute
    target.wait("insert", compute.images().insert(project=PROJECT, body=body).execute())
    return name


def test_every_name_of_a_long_pipelines_scheduled_build_fits(fake_gce: FakeGce, tmp_path: Path) -> None:
    assert len(LONG) == 63
    build_id = derive_build_id(LONG, "scheduled__2026-11-03T02:45:00+00:00")
    assert len(build_id) > 100 and any(c.isupper() for c in build_id)
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    build = store.create_build(build_id, pipeline=LONG, cloud="gcp", image_type="webserver", plan=[0, 5, 10, 95, 100])
    target = _target(
        LONG,
        copy_locations=LOCATIONS,
        storage_locations=["eu"],
        share_with=["group:image-users@example.com"],
        labels={f"team-{i:02d}": "web" for i in range(56)},  # as many as the spec allows
        deprecate_previous={"state": "DEPRECATED"},
    )
    build = store.set_metadata(build_id, {f"built_with.{t}": "2.19.3" for t in ("packer", "ansible", "ansible_core",
                                                                            "provider")}, actor="test")  # fmt: skip

    vendor = fake_gce.images["rhel-8-v20261101"]["selfLink"]
    kickstart = _packer_image(target, build, 5, vendor)
    target.claim_images(build, {"": kickstart}, 5)
    lease = store.begin(build_id, 5, owner="test")
    build = store.complete(
        build_id, 5, token=lease.token, outputs={"image_id": kickstart, "checkpoint_image": kickstart}
    )
    green = _packer_image(target, build, 10, target.image_path(kickstart))  # sourceImage takes a URL, not a name
    target.claim_images(build, {"": green}, 10)
    host = target.launch(build, Checkpoint(10, green))
    checkpoint = target.capture(build, host, 30, final=False)["checkpoint_image"]
    final = target.capture(build, host, 95, final=True)["image_id"]
    published = target.publish(build, final)
    target.discard(build, [checkpoint])
    target.cleanup(build, host)

    assert fake_gce.refused == [], fake_gce.refused
    copies = published["copies"]
    assert sorted(copies) == sorted(LOCATIONS)
    assert len(set(copies.values())) == len(LOCATIONS), f"two locations share a copy: {copies}"
    for location, link in copies.items():
        assert fake_gce.images[link.rsplit("/", 1)[-1]]["storageLocations"] == [location]
    made = [*fake_gce.images, *fake_gce.disks, *fake_gce.instances, host.id.rsplit("/", 1)[-1]]
    made += [i["family"] for i in fake_gce.images.values() if i.get("family")]
    assert [name for name in made if not NAME_RE.fullmatch(name)] == []
    assert all(len(i["labels"]) <= 64 for i in fake_gce.images.values())

    # Packer's own check of image_name (googlecompute's config: the RFC 1035 pattern, 63 at most)
    # with the variables the operator writes for this build.
    for milestone, only in ((5, "googlecompute.kickstart"), (10, "googlecompute.green")):
        op = packer_operator(f"sqlite:///{tmp_path}/s.db", LONG, milestone, TEMPLATE, gcp_conn_id=GCP_CONN_ID,
                             zone=ZONE, source_image_family="rhel-8")  # fmt: skip
        values = packer_values(op, store.get(build_id), tmp_path / "manifest.json")
        assert NAME_RE.fullmatch(values["image_name"])
        got = packer_validate(TEMPLATE, values, only, tmp_path)
        assert got.returncode == 0, got.stdout + got.stderr


def test_copy_names_of_two_builds_of_one_day_differ(fake_gce: FakeGce, tmp_path: Path) -> None:
    """The copy's name carries the build's digest: the old name (the final image's first 50
    characters, which end inside the date) was the same for every build of a day."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    target = _target(LONG, image_family="a" * 63)
    names = set()
    for n in range(2):
        build = store.create_build(f"b-{n}", pipeline=LONG, cloud="gcp", image_type="w", plan=[0, 100])
        for location in LOCATIONS:
            name = target.names.copy(build, target.names.final_image(build), location)
            assert NAME_RE.fullmatch(name) and location in name
            names.add(name)
    assert len(names) == 2 * len(LOCATIONS)
