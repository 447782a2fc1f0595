"""The OpenStack target against the loopback fake of Keystone, Nova, Glance and Neutron.

Real: openstacksdk (discovery, Keystone v3 password login from an Airflow connection, the
catalog, compute microversion negotiation, Glance JSON patches) over HTTP on loopback. Faked:
the cloud itself (tests/servers/openstack.py, following the OpenStack API references for the
calls made); a server is a record, so what Packer's openstack builder makes at 5/10 is an image
added to the fake here (the contract suite runs real Packer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec import SpecError, parse_spec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets import target_for
from airflow_provider_imagebuild.targets.base import Checkpoint, Host
from airflow_provider_imagebuild.targets.openstack import KEY, OpenstackTarget
from tests.conftest import OPENSTACK_CONN_ID, unique
from tests.servers.openstack import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    OTHER_PROJECT,
    OTHER_PROJECT_ID,
    PASSWORD,
    PROJECT_ID,
    connection_uri,
)

SHARE = "0123456789abcdef0123456789abcdef"


def settings(**more: Any) -> dict[str, Any]:
    return {
        "openstack_conn_id": OPENSTACK_CONN_ID,
        "flavor": "m1.small",
        "network": "build-net",
        "source_image": "rhel-8",
        # Ansible's connection (the fake's servers run nothing)
        "connection": {"ansible_connection": "local"},
        **more,
    }


def make_target(pipeline: str, **more: Any) -> OpenstackTarget:
    spec = parse_spec({"pipeline": pipeline, "cloud": "openstack", "image_type": "base", "target": settings(**more)})
    target = target_for("openstack", spec.target, pipeline=pipeline, image_type="base")
    assert isinstance(target, OpenstackTarget)
    return target


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Any]:
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    yield store.register(unique("os"), BuildIdentity("os-pipe", "openstack", "base", plan=(0, 5, 10, 15, 95, 100)))


def packer_image(fake: Any, target: OpenstackTarget, build: Any, milestone: int = 10, owner: str = PROJECT_ID) -> str:
    """What Packer's openstack builder leaves: an image of the name the build asked for, in the
    project it logged in to."""
    return str(fake.add_image(target.packer_image_name(build, target.pipeline, milestone), b"green", owner=owner))


def test_build_server_checkpoints_seal_publish_and_cleanup(build: Any, fake_os: Any) -> None:
    target = make_target(
        "os-pipe", visibility="shared", share_with_projects=[SHARE], properties={"os_distro": "rhel", "os_version": "8"}
    )
    green = packer_image(fake_os, target, build)
    target.claim_images(build, {"": green}, 10)
    assert target.owns_image(build, green)

    host = target.launch(build, Checkpoint(10, green))
    server = fake_os.servers[host.id]
    assert target.alive(build, host) and host.address.startswith("10.0.0.") and host.checkpoint == 10
    assert server["name"] == f"{target.prefix(build)}-h010" and server["metadata"][KEY] == target.key(build)
    assert server["flavor"]["original_name"] == "m1.small"

    checkpoint = target.capture(build, host, 15, final=False)["checkpoint_image"]
    assert target.owns_image(build, checkpoint) and fake_os.servers[host.id]["status"] == "ACTIVE"  # started again

    # Stopped and never started again (a killed checkpoint): alive starts it.
    fake_os.servers[host.id]["status"] = "SHUTOFF"
    assert target.alive(build, host) and fake_os.servers[host.id]["status"] == "ACTIVE"

    # The server is lost: not alive; relaunched from 15.
    fake_os.remove_server(host.id)
    assert not target.alive(build, host)
    relaunched = target.launch(build, Checkpoint(15, checkpoint))
    assert relaunched.id != host.id and target.alive(build, relaunched)

    final = target.capture(build, relaunched, 95, final=True)
    assert target.owns_image(build, final["image_id"]) and fake_os.servers[relaunched.id]["status"] == "SHUTOFF"
    again = target.capture(build, relaunched, 95, final=True)  # a retried seal replaces its image
    assert again["image_name"] == final["image_name"] and final["image_id"] not in fake_os.images

    published = target.publish(build, again["image_id"])
    assert published["visibility"] == "shared" and published["members"] == [SHARE]
    image = fake_os.images[again["image_id"]]
    assert image["visibility"] == "shared" and image["os_distro"] == "rhel" and image["imagebuild_published"] == "true"
    assert fake_os.members[again["image_id"]][SHARE]["status"] == "pending"
    assert target.publish(build, again["image_id"]) == published  # a retried publish: same result, no 409

    assert target.discard(build, [green, checkpoint, "no-such-image"]) == [green, checkpoint]
    assert not target.owns_image(build, green)
    target.cleanup(build, relaunched)
    target.cleanup(build, relaunched)  # idempotent
    assert relaunched.id not in fake_os.servers and target.owns_image(build, again["image_id"])


def test_what_is_not_the_builds_is_refused(build: Any, fake_os: Any) -> None:
    target = make_target("os-pipe")
    foreign = fake_os.add_image("someone-elses-image", b"theirs")
    with pytest.raises(InvalidInput, match=r"not build .*'s image"):
        target.launch(build, Checkpoint(10, foreign))
    with pytest.raises(InvalidInput, match=r"not build .*'s active image"):
        target.publish(build, foreign)
    with pytest.raises(InvalidInput, match="is not the image this build asked for"):
        target.claim_images(build, {"": foreign}, 10)
    # Another build's image under this build's name (a spoofed manifest) is refused too.
    other = make_target("other-pipe")
    spoofed = packer_image(fake_os, target, build, 5)
    fake_os.images[spoofed][KEY] = other.key(build)
    with pytest.raises(InvalidInput, match="belongs to another build"):
        target.claim_images(build, {"": spoofed}, 5)
    # A recorded host that is not the build's server is not alive, and cleanup leaves it.
    mine = packer_image(fake_os, other, build)
    other.claim_images(build, {"": mine}, 10)
    theirs = other.launch(build, Checkpoint(10, mine))
    assert not target.alive(build, theirs)
    target.cleanup(build, Host(theirs.id, "", "x", 10, 10))
    assert theirs.id in fake_os.servers
    assert target.discard(build, [mine]) == [] and mine in fake_os.images
    other.cleanup(build, theirs)


OTHER_CONN_ID = "openstack_imagebuild_other_project"


def test_another_projects_image_with_the_builds_key_is_refused(build: Any, fake_os: Any) -> None:
    """The key is a digest anyone can compute from the pipeline and build id, and Glance shows
    other projects' public, community and shared images: a tenant who gives an image of its own
    this build's name and key (and someone with store write rights who records its id) must not
    get a build server booted from it, nor have it published, claimed or deleted."""
    target = make_target("os-pipe")
    marks = target.marks(build, "checkpoint")
    name = target.packer_image_name(build, target.pipeline, 10)
    for visibility in ("public", "community", "shared"):
        theirs = fake_os.add_image(name, b"their image", owner=OTHER_PROJECT_ID, visibility=visibility, **marks)
        if visibility == "shared":  # shared with this build's project, and accepted
            fake_os.members[theirs] = {PROJECT_ID: {"member_id": PROJECT_ID, "status": "accepted"}}
        assert not target.owns_image(build, theirs)
        with pytest.raises(InvalidInput, match=r"checkpoint_image: .*not build .*'s image"):
            target.launch(build, Checkpoint(10, theirs))
        assert not [s for s in fake_os.servers.values() if s["image"]["id"] == theirs]  # nothing booted
        with pytest.raises(InvalidInput, match=r"image_id: .*not build .*'s active image"):
            target.publish(build, theirs)
        with pytest.raises(InvalidInput, match=r"packer artifact: .*another project"):
            target.claim_images(build, {"": theirs}, 10)
        assert target.discard(build, [theirs]) == [] and fake_os.images[theirs]["visibility"] == visibility


def test_an_admin_login_leaves_other_projects_alone(build: Any, fake_os: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an admin login Nova and Glance show (and let it change) every project's servers and
    images: another project running the same pipeline and build id (so the same key) keeps its
    server and images through this project's host checks, checkpoints, discards and cleanups."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{OTHER_CONN_ID.upper()}", connection_uri(fake_os, project=OTHER_PROJECT))
    theirs = make_target("os-pipe", openstack_conn_id=OTHER_CONN_ID)
    their_green = packer_image(fake_os, theirs, build, owner=OTHER_PROJECT_ID)
    theirs.claim_images(build, {"": their_green}, 10)
    their_host = theirs.launch(build, Checkpoint(10, their_green))
    their_checkpoint = theirs.capture(build, their_host, 15, final=False)["checkpoint_image"]
    assert fake_os.servers[their_host.id]["tenant_id"] == OTHER_PROJECT_ID
    assert fake_os.images[their_checkpoint]["owner"] == OTHER_PROJECT_ID

    admin = connection_uri(fake_os, ADMIN_PASSWORD, user=ADMIN_USER)
    monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", admin)
    ours = make_target("os-pipe")
    assert not ours.alive(build, their_host)
    with pytest.raises(InvalidInput, match="host_id"):
        ours.capture(build, their_host, 15, final=False)
    with pytest.raises(InvalidInput, match="checkpoint_image"):
        ours.launch(build, Checkpoint(15, their_checkpoint))
    assert ours.discard(build, [their_checkpoint, their_green]) == []
    ours.cleanup(build, their_host)

    # This project's own build, of the same names: its retried checkpoint replaces only its own.
    green = packer_image(fake_os, ours, build)
    ours.claim_images(build, {"": green}, 10)
    host = ours.launch(build, Checkpoint(10, green))
    checkpoint = ours.capture(build, host, 15, final=False)["checkpoint_image"]
    assert fake_os.images[checkpoint]["owner"] == PROJECT_ID and ours.owns_image(build, checkpoint)
    ours.cleanup(build, host)
    assert host.id not in fake_os.servers
    assert fake_os.servers[their_host.id]["status"] == "ACTIVE"
    assert {their_green, their_checkpoint} <= set(fake_os.images)
    theirs.cleanup(build, their_host)
    assert theirs.discard(build, [their_checkpoint, their_green]) == [their_checkpoint, their_green]


def test_errors_say_what_kind_they_are(build: Any, fake_os: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    target = make_target("os-pipe")
    green = packer_image(fake_os, target, build)
    target.claim_images(build, {"": green}, 10)
    with pytest.raises(InvalidInput, match=r"target\.flavor"):
        make_target("os-pipe", flavor="m9.huge").launch(build, Checkpoint(10, green))
    with pytest.raises(InvalidInput, match=r"target\.network"):
        make_target("os-pipe", network="no-such-net").launch(build, Checkpoint(10, green))
    fake_os.fail("POST", r"^/compute/v2\.1/servers$", 403, message="Quota exceeded for instances: Requested 1")
    with pytest.raises(InvalidInput, match=r"quota: .*Quota exceeded"):
        target.launch(build, Checkpoint(10, green))
    fake_os.fail("POST", r"^/compute/v2\.1/servers$", 403, message="Policy doesn't allow os_compute_api:servers:create")
    with pytest.raises(InvalidInput, match=r"credentials: .*refused \(403\)"):
        target.launch(build, Checkpoint(10, green))
    fake_os.fail("POST", r"^/compute/v2\.1/servers$", 503)
    with pytest.raises(TargetError, match="HTTP 503"):
        target.launch(build, Checkpoint(10, green))
    monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", connection_uri(fake_os, password="wrong-pw"))
    with pytest.raises(InvalidInput, match="credentials") as info:
        make_target("os-pipe").launch(build, Checkpoint(10, green))
    assert "wrong-pw" not in str(info.value)
    missing = {"conn_type": "generic", "login": "u", "password": "p", "extra": {"project_name": "x"}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", json.dumps(missing))
    with pytest.raises(InvalidInput, match=r"openstack_conn_id: .*auth_url"):
        make_target("os-pipe")


def test_packer_gets_the_login_in_its_environment_only(fake_os: Any) -> None:
    target = make_target("os-pipe")
    env, values = target.packer_env(), target.packer_vars()
    assert env["OS_PASSWORD"] == PASSWORD and env["OS_AUTH_URL"].endswith("/identity/v3")
    assert PASSWORD not in json.dumps(values) and values["openstack_network"] == fake_os.network_id()


@pytest.mark.parametrize(
    ("target", "where", "reason"),
    [
        ({"flavor": "m1\nsmall"}, "target.flavor", "not an OpenStack name"),
        ({"share_with_projects": ["acme"]}, "target.share_with_projects", "not a project id"),
        ({"share_with_projects": [SHARE]}, "share_with_projects", "needs visibility: shared"),
        ({"properties": {"imagebuild_key": "x"}}, "target.properties", "set by the provider itself"),
        ({"properties": {"visibility": "public"}}, "target.properties", "image attribute"),
        ({"visibility": "everyone"}, "target.visibility", "Input should be"),
        ({"region": "us east"}, "target.region", "not a cloud or region name"),
        ({"datacenter": "DC0"}, "target.datacenter", "unknown key"),
        ({"ssh_user": "root"}, "target.ssh_user", "not root"),
    ],
)
def test_bad_target_settings_name_the_key(target: dict[str, Any], where: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason) as info:
        parse_spec({"pipeline": "p", "cloud": "openstack", "image_type": "t", "target": settings(**target)})
    assert where in str(info.value)


def test_a_build_server_needs_a_flavor_and_network() -> None:
    spec = {
        "pipeline": "p",
        "cloud": "openstack",
        "image_type": "t",
        "target": {k: v for k, v in settings().items() if k != "network"},
        "milestones": {15: {"action": "ansible", "playbook": "x.yml"}},
    }
    with pytest.raises(SpecError, match=r"target\.network: is required"):
        parse_spec(spec)
