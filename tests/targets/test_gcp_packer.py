"""What Packer writes on Google Cloud proves itself the build's: the labels of the shipped template
(and of the tests' stand-in, which must write the same) are the ones the target checks before it
adopts or deletes an image of the milestone's name, and Packer's instance name fits Compute
Engine's rule. Evaluated by Packer itself (``packer console``) with the variables the operator
writes, for a 63-character pipeline and a scheduled run's derived build id."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_imagebuild.build.ids import derive_build_id
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.gcp_names import NAME_RE, GcpNames, packer_labels
from tests.conftest import GCP_CONN_ID
from tests.servers.gce import ZONE, FakeGce
from tests.servers.gcp_sample import STANDIN, packer_console, packer_operator, packer_values
from tests.servers.process import ROOT

SHIPPED = ROOT / "dags/packer/rhel8-gcp.pkr.hcl"
LONG = "Acme.RHEL8_WebServer-nightly.golden-images.for-platform-team-01"


def test_packer_writes_the_labels_the_target_checks(fake_gce: FakeGce, tmp_path: Path) -> None:
    build_id = derive_build_id(LONG, "scheduled__2026-11-03T02:45:00+00:00")
    store_url = f"sqlite:///{tmp_path}/s.db"
    build = open_store(store_url).create_build(build_id, pipeline=LONG, cloud="gcp", image_type="w", plan=[0, 5, 100])
    expected = packer_labels(GcpNames(LONG, None), build, 5)
    assert all(len(v) <= 63 for v in expected.values()) and len(expected["imagebuild-build"]) == 63
    for template in (SHIPPED, STANDIN):
        op = packer_operator(store_url, LONG, 5, template, {"compute_endpoint": "http://127.0.0.1:1/"},
                             gcp_conn_id=GCP_CONN_ID, zone=ZONE, source_image_family="rhel-8")  # fmt: skip
        values = packer_values(op, build, tmp_path / "manifest.json")
        if template == STANDIN:  # the spec's vars, in a var file of their own
            values["compute_endpoint"] = "http://127.0.0.1:1/"
        assert packer_console(template, values, "local.labels", tmp_path) == expected, template
        if template == SHIPPED:  # Packer's instance and its disk: the image's name and a part of a UUID
            instance = packer_console(SHIPPED, values, "local.instance_name", tmp_path)
            assert NAME_RE.fullmatch(instance) and instance.startswith(values["image_name"] + "-")
