"""The fake Compute Engine refuses what Compute Engine documents as refused, one rule per test,
driven by the real ``google-api-python-client`` (whose own checks are weaker: it matches a path
parameter's pattern from its start only, and checks no body): otherwise a request the real API
refuses would pass the target's tests (tests/servers/gce.py says where each rule is published)."""

from __future__ import annotations

from typing import Any

import pytest
from googleapiclient.errors import HttpError

from airflow_provider_imagebuild.clouds.gcp import GcpClients
from tests.conftest import GCP_CONN_ID
from tests.servers.gce import PROJECT, ZONE, FakeGce

VENDOR = f"projects/{PROJECT}/global/images/rhel-8-v20261101"


def _image(**fields: Any) -> dict[str, Any]:
    return {"name": "web-1", "sourceImage": VENDOR, **fields}


def _instance(**fields: Any) -> dict[str, Any]:
    disk = {"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": VENDOR}}
    return {"name": "host-1", "machineType": f"zones/{ZONE}/machineTypes/e2-small", "disks": [disk], **fields}


# rule -> (a request Compute Engine refuses, what the refusal names)
REFUSED: dict[str, tuple[Any, str]] = {
    "path parameter: an image name ending with '-'": (lambda c: c.images().get(project=PROJECT, image="web-"), "image"),
    "path parameter: a 64-character instance name": (
        lambda c: c.instances().get(project=PROJECT, zone=ZONE, instance="a" * 64),
        "instance",
    ),
    "body pattern: Image.name with capitals": (
        lambda c: c.images().insert(project=PROJECT, body=_image(name="Web-1")),
        "Image.name",
    ),
    "body pattern: Instance.name of 64 characters": (
        lambda c: c.instances().insert(project=PROJECT, zone=ZONE, body=_instance(name="h" * 64)),
        "Instance.name",
    ),
    "body pattern: a metadata key with a dot": (
        lambda c: c.instances().insert(
            project=PROJECT, zone=ZONE, body=_instance(metadata={"items": [{"key": "ssh.keys", "value": "x"}]})
        ),
        "key",
    ),
    "required: Image.name for compute.images.insert": (
        lambda c: c.images().insert(project=PROJECT, body={"sourceImage": VENDOR}),
        "required for compute.images.insert",
    ),
    "required: a metadata item's value for compute.instances.insert": (
        lambda c: c.instances().insert(project=PROJECT, zone=ZONE, body=_instance(metadata={"items": [{"key": "k"}]})),
        "required for compute.instances.insert",
    ),
    "enum: a deprecation state that does not exist": (
        lambda c: c.images().deprecate(project=PROJECT, image="rhel-8-v20261101", body={"state": "RETIRED"}),
        "not one of",
    ),
    "type: a boolean given as a string": (
        lambda c: c.instances().insert(project=PROJECT, zone=ZONE, body=_instance(canIpForward="yes")),
        "expected a boolean",
    ),
    "unknown field": (lambda c: c.images().insert(project=PROJECT, body=_image(colour="blue")), "unknown field"),
    "RFC 1035: Image.family with an underscore": (
        lambda c: c.images().insert(project=PROJECT, body=_image(family="web_images")),
        "Image.family",
    ),
    "labels: a key with a capital": (
        lambda c: c.images().insert(project=PROJECT, body=_image(labels={"Owner": "web"})),
        "label key",
    ),
    "labels: a value of 64 characters": (
        lambda c: c.images().insert(project=PROJECT, body=_image(labels={"owner": "w" * 64})),
        "label value",
    ),
    "labels: 65 of them": (
        lambda c: c.images().insert(project=PROJECT, body=_image(labels={f"k{i}": "v" for i in range(65)})),
        "65 labels",
    ),
    "labels: setLabels with a key starting with a digit": (
        lambda c: c.images().setLabels(
            project=PROJECT, resource="rhel-8-v20261101", body={"labels": {"1team": "x"}, "labelFingerprint": "AA=="}
        ),
        "label key",
    ),
    "query: maxResults above 500": (lambda c: c.images().list(project=PROJECT, maxResults=501), "maxResults"),
}


@pytest.mark.parametrize("rule", sorted(REFUSED))
def test_the_fake_refuses_what_compute_engine_refuses(rule: str, fake_gce: FakeGce) -> None:
    request, named = REFUSED[rule]
    compute = GcpClients.from_connection(GCP_CONN_ID).compute
    with pytest.raises(HttpError) as info:
        request(compute).execute()
    assert info.value.resp.status == 400 and named in str(info.value), info.value
    assert fake_gce.refused and named in fake_gce.refused[-1]
    assert "web-1" not in fake_gce.images and fake_gce.instances == {}, "a refused request changed nothing"


def test_lists_come_in_pages_of_at_most_500(fake_gce: FakeGce) -> None:
    for n in range(520):
        fake_gce.add_image(f"web-{n:04d}", family="web")
    compute = GcpClients.from_connection(GCP_CONN_ID).compute
    first = compute.images().list(project=PROJECT, filter='family = "web"').execute()
    assert len(first["items"]) == 500 and first["nextPageToken"]
    second = compute.images().list_next(compute.images().list(project=PROJECT, filter='family = "web"'), first)
    rest = second.execute()
    assert len(rest["items"]) == 20 and "nextPageToken" not in rest
    assert {i["name"] for i in first["items"] + rest["items"]} == {f"web-{n:04d}" for n in range(520)}
    small = compute.images().list(project=PROJECT, maxResults=7).execute()
    assert len(small["items"]) == 7 and small["nextPageToken"]
    with pytest.raises(HttpError, match="pageToken"):
        compute.images().list(project=PROJECT, pageToken="not-a-token").execute()
