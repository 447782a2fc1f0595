"""Every source form a Google Cloud spec accepts is one the shipped template builds from: real
``packer validate`` with the variables the operator writes for that spec, and ``packer console``
showing what googlecompute gets (the image by name, else the family, and the projects it searches).

Before, the target passed ``source_image_family: ""`` and ``source_image_project: ""`` when the
spec left them unset: an empty project list entry instead of the template's default, and for a
spec naming its image (``source_image``) no source at all, since the template ignored it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec
from airflow_provider_imagebuild.store import open_store
from tests.conftest import GCP_CONN_ID
from tests.servers.gce import PROJECT, ZONE, FakeGce
from tests.servers.gcp_sample import packer_console, packer_operator, packer_validate, packer_values
from tests.servers.process import ROOT

TEMPLATE = ROOT / "dags/packer/rhel8-gcp.pkr.hcl"
KICKSTART = "[local.source_name, local.kickstart_family, local.kickstart_projects]"
# spec settings -> (image by name, family, projects searched) for milestone 5
FORMS: dict[str, tuple[dict[str, Any], list[Any]]] = {
    "family in a project": (
        {"source_image_family": "rhel-8", "source_image_project": "rhel-cloud"},
        ["", "rhel-8", ["rhel-cloud"]],
    ),
    "family, the template's project": ({"source_image_family": "rhel-8-sap"}, ["", "rhel-8-sap", ["rhel-cloud"]]),
    "image in a project": (
        {"source_image": "acme-rhel8-base-v3", "source_image_project": "acme-images"},
        ["acme-rhel8-base-v3", "", ["acme-images"]],
    ),
    "image, the template's project": (
        {"source_image": "rhel-8-v20261101"},
        ["rhel-8-v20261101", "", ["rhel-cloud"]],
    ),
}


def _build(tmp_path: Path, plan: list[int]) -> tuple[str, Any]:
    store_url = f"sqlite:///{tmp_path}/s.db"
    return store_url, open_store(store_url).create_build("b-1", pipeline="web", cloud="gcp", image_type="w", plan=plan)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_source_form_of_the_spec_is_what_packer_starts_from(form: str, fake_gce: FakeGce, tmp_path: Path) -> None:
    settings, expected = FORMS[form]
    store_url, build = _build(tmp_path, [0, 5, 10, 100])
    op = packer_operator(store_url, "web", 5, TEMPLATE, gcp_conn_id=GCP_CONN_ID, zone=ZONE, **settings)
    values = packer_values(op, build, tmp_path / "manifest.json")
    assert {k: v for k, v in values.items() if k.startswith("source_image_") and not v} == {}, "an empty override"
    got = packer_validate(TEMPLATE, values, "googlecompute.kickstart", tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    assert packer_console(TEMPLATE, values, KICKSTART, tmp_path) == expected


def test_the_green_image_starts_from_the_kickstart_image_of_the_build(fake_gce: FakeGce, tmp_path: Path) -> None:
    store_url, build = _build(tmp_path, [0, 5, 10, 100])
    op = packer_operator(store_url, "web", 10, TEMPLATE, gcp_conn_id=GCP_CONN_ID, zone=ZONE, source_image="x-base")
    target = op.get_target()
    kickstart = fake_gce.add_image(target.packer_image_name(build, "web", 5))["selfLink"]
    target.claim_images(build, {"": kickstart}, 5)
    store = open_store(store_url)
    lease = store.begin("b-1", 5, owner="test")
    build = store.complete("b-1", 5, token=lease.token, outputs={"image_id": kickstart})
    values = packer_values(op, build, tmp_path / "manifest.json")
    got = packer_validate(TEMPLATE, values, "googlecompute.green", tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    assert packer_console(TEMPLATE, values, "[local.source_name, var.gcp_project]", tmp_path) == [
        kickstart.rsplit("/", 1)[-1],
        PROJECT,
    ]


def test_a_spec_naming_both_an_image_and_a_family_is_refused() -> None:
    raw = {
        "pipeline": "web",
        "cloud": "gcp",
        "image_type": "w",
        "target": {"zone": ZONE, "source_image": "a-base", "source_image_family": "rhel-8", "image_family": "web"},
        "milestones": {5: {"action": "packer", "template": str(TEMPLATE)}},
    }
    with pytest.raises(SpecError, match="target: source_image and source_image_family are both set"):
        parse_spec(raw, "web.yaml", base=ROOT)
