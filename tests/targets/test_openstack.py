"""The OpenStack target against the loopback fake of Keystone, Nova, Glance and Neutron.

Real: openstacksdk (discovery, Keystone v3 password login from an Airflow connection, the
catalog, compute microversion negotiation, Glance JSON patches) over HTTP on loopback, and Packer's
``openstack`` builder running the shipped template in the Packer milestone tests. Faked: the cloud
itself (tests/servers/openstack.py, checking requests against Nova's and Glance's own schemas); a
server is a record, so where no Packer runs, what its builder makes at 5/10 is an image added to
the fake here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.ids import derive_build_id
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.redact.patterns import redact_patterns
from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, parse_spec
from airflow_provider_imagebuild.store import BuildStore, open_store
from airflow_provider_imagebuild.targets import target_for
from airflow_provider_imagebuild.targets.base import MANAGED_BY, Checkpoint, Host
from airflow_provider_imagebuild.targets.openstack import KEY, MANAGED, OpenstackTarget
from tests.conftest import OPENSTACK_CONN_ID, unique
from tests.dags.conftest import ROOT, write
from tests.helpers import task_context
from tests.servers.openstack import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    OTHER_PROJECT,
    OTHER_PROJECT_ID,
    PASSWORD,
    PROJECT_ID,
    connection_uri,
    fake_openstack,
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
    assert server["name"] == target.names(build).server(10) and server["metadata"][KEY] == target.key(build)
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
    with pytest.raises(InvalidInput, match=r"credentials: .*refused \(403\)") as refused:
        target.launch(build, Checkpoint(10, green))
    # the log's redaction hides a value after "credentials:", not what was refused
    assert f"at OpenStack boot {target.names(build).server(10)}" in redact_patterns(str(refused.value))
    fake_os.fail("POST", r"^/compute/v2\.1/servers$", 503)
    with pytest.raises(TargetError, match="HTTP 503"):
        target.launch(build, Checkpoint(10, green))
    monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", connection_uri(fake_os, password="wrong-pw"))
    with pytest.raises(InvalidInput, match="credentials") as info:
        make_target("os-pipe").launch(build, Checkpoint(10, green))
    assert "wrong-pw" not in str(info.value) and "Keystone refused the login (401)" in redact_patterns(str(info.value))
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
        ({"properties": {"os_glance_import_task": "x"}}, "target.properties", "reserved by Glance"),
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


SCHEDULED_RUN = "scheduled__2026-11-04T03:15:00+00:00"


@pytest.mark.parametrize("length", [63, 128])
def test_every_name_of_a_build_fits_nova_and_starts_with_the_pipeline(
    tmp_path: Path, fake_os: Any, length: int
) -> None:
    """A long pipeline name (63 characters, and the longest a spec takes) with a scheduled run's
    derived build id: every server and image name Nova and Glance see is within their 255
    characters (the fake refuses longer ones, as Nova's and Glance's schemas do), starts with the
    pipeline, readable, and differs from another build's of the same pipeline."""
    pipeline = (unique("os-names") + "-" + "x" * 128)[:length]
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    build_id = derive_build_id(pipeline, SCHEDULED_RUN)
    build = store.register(build_id, BuildIdentity(pipeline, "openstack", "base", plan=(0, 5, 10, 15, 95, 100)))
    other = store.register(build_id[:-1] + "x", BuildIdentity(pipeline, "openstack", "base", plan=(0, 5, 95, 100)))
    target = make_target(pipeline)
    green = packer_image(fake_os, target, build)
    target.claim_images(build, {"": green}, 10)
    host = target.launch(build, Checkpoint(10, green))
    checkpoint = target.capture(build, host, 15, final=False)
    final = target.capture(build, host, 95, final=True)
    names = [fake_os.images[green]["name"], fake_os.servers[host.id]["name"], checkpoint["image_name"],
             final["image_name"]]  # fmt: skip
    for name in names:
        assert len(name) <= 255 and name.startswith(f"{pipeline}-"), name
    assert target.packer_image_name(other, pipeline, 10) != names[0]
    assert target.names(other).server(10) != names[1] and target.names(other).final() != names[3]
    target.cleanup(build, host)


def test_a_build_server_gets_the_specs_security_groups_and_nova_refuses_a_missing_one(build: Any, fake_os: Any) -> None:
    fake_os.add_security_group("imagebuild-ssh")
    target = make_target("os-pipe", security_groups=["imagebuild-ssh"])
    green = packer_image(fake_os, target, build)
    target.claim_images(build, {"": green}, 10)
    host = target.launch(build, Checkpoint(10, green))
    assert fake_os.servers[host.id]["security_groups"] == [{"name": "imagebuild-ssh"}]
    target.cleanup(build, host)
    # Nova answers 400 for a group the project lacks: the spec's setting, one line, not retried.
    with pytest.raises(InvalidInput, match=r"^target: Nova refused .*Security group no-such-group not found"):
        make_target("os-pipe", security_groups=["no-such-group"]).launch(build, Checkpoint(10, green))


def test_publishing_public_without_the_admin_role_names_target_visibility(build: Any, fake_os: Any) -> None:
    """Glance's publicize_image policy is the admin role's by default: a member login is refused
    with a 403, which is the spec's visibility, not the login (the fake answers as Glance does)."""
    target = make_target("os-pipe", visibility="public")
    green = packer_image(fake_os, target, build)
    target.claim_images(build, {"": green}, 10)
    with pytest.raises(InvalidInput, match=r"^target\.visibility: public needs Glance's publicize_image policy"):
        target.publish(build, green)
    assert fake_os.images[green]["visibility"] != "public"


# -- Packer milestones with the shipped template and Packer's real openstack builder -----------------
TEMPLATE = ROOT / "dags/packer/rhel8-openstack.pkr.hcl"


class PackerMilestone:
    """Milestone 5 of a pipeline that runs the shipped template (communicator none: the fake's
    servers run nothing), as the DAG factory makes it, run with a task context as a DAG run does."""

    def __init__(self, tmp_path: Path, pipeline: str, source: str, **target: Any) -> None:
        from airflow_provider_imagebuild.dag_factory import build_dag

        spec = {
            "pipeline": pipeline,
            "cloud": "openstack",
            "image_type": "base",
            "store": f"sqlite:///{tmp_path}/state.db",
            "target": settings(source_image=source, **target),
            "milestones": {5: {"action": "packer", "template": str(TEMPLATE), "only": ["openstack.kickstart"],
                               "vars": {"communicator": "none"}}},
        }  # fmt: skip
        loaded = load_spec(write(tmp_path / "pipelines/packer.yaml", yaml.safe_dump(spec)))
        self.tasks = {task.state: task for task in build_dag(loaded, tmp_path / "pipelines").tasks}  # type: ignore[attr-defined]
        self.store: BuildStore = open_store(str(loaded.store))
        self.target = make_target(pipeline, **target)
        self.build_id = unique("os-pk")

    def run(self, code: int, try_number: int = 1) -> None:
        task = self.tasks[code]
        task.execute(task_context(self.build_id, task.task_id, try_number))

    def record(self) -> Any:
        return self.store.get(self.build_id)


def images_named(fake: Any, name: str) -> list[dict[str, Any]]:
    return [i for i in fake.images.values() if i["name"] == name]


@pytest.mark.slow
def test_a_retried_packer_milestone_adopts_the_image_its_first_attempt_made(tmp_path: Path, fake_os: Any) -> None:
    """Packer finished, then claiming its image failed (a 500 of Glance): the retry finds the image
    the first attempt made (its name, the project's, the marks the template wrote) and adopts it
    instead of running Packer into a second image of the same name (Glance allows duplicates)."""
    source = fake_os.add_image(unique("rhel-8"), b"rhel 8 base")
    milestone = PackerMilestone(tmp_path, unique("os-adopt"), fake_os.images[source]["name"])
    milestone.run(0)
    # the claim's patch, not Packer's (a 500: the SDK itself retries a 503)
    fake_os.fail("PATCH", r"^/image/v2/images/", 500, body=rb"imagebuild_role")
    with pytest.raises(Exception, match="HTTP 500"):
        milestone.run(5)
    build = milestone.record()
    assert (build.current_state, build.status) == (5, "failed")
    name = milestone.target.packer_image_name(build, build.pipeline, 5)
    made = images_named(fake_os, name)
    assert len(made) == 1 and made[0]["status"] == "active"
    assert (made[0][KEY], made[0][MANAGED], made[0]["imagebuild_milestone"]) == (
        milestone.target.key(build), MANAGED_BY, "5")  # written by the template itself  # fmt: skip
    boots = len(fake_os.server_requests)

    milestone.run(5, 2)
    outputs = milestone.record().milestones[5].outputs
    assert outputs["packer_adopted"] is True and outputs["image_id"] == made[0]["id"]
    assert [i["id"] for i in images_named(fake_os, name)] == [made[0]["id"]]
    assert len(fake_os.server_requests) == boots, "Packer ran again"
    assert fake_os.images[made[0]["id"]]["imagebuild_role"] == "checkpoint"  # claimed now


def test_packer_artifacts_remove_an_unfinished_one_and_never_touch_one_they_cannot_prove(
    build: Any, fake_os: Any
) -> None:
    target = make_target("os-pipe")
    name = target.packer_image_name(build, target.pipeline, 5)
    marks = {KEY: target.key(build), MANAGED: MANAGED_BY, "imagebuild_milestone": "5"}
    theirs = fake_os.add_image(name, b"another project's", owner=OTHER_PROJECT_ID, visibility="public", **marks)
    unfinished = fake_os.add_image(name, b"cut short", **marks)
    fake_os.images[unfinished]["status"] = "queued"
    assert target.packer_artifacts(build, 5) == {}  # nothing complete: Packer runs
    assert unfinished not in fake_os.images and theirs in fake_os.images
    done = fake_os.add_image(name, b"made", **marks)
    assert target.packer_artifacts(build, 5) == {"": done}
    assert target.packer_artifacts(build, 10) == {}
    stranger = fake_os.add_image(name, b"unmarked", visibility="private")
    with pytest.raises(InvalidInput, match=rf"^packer artifact: an image {name} \({stranger}\) .*left alone"):
        target.packer_artifacts(build, 5)
    assert {stranger, done, theirs} <= set(fake_os.images)


@pytest.mark.slow
def test_packer_builds_on_an_image_another_build_published(tmp_path: Path, fake_os: Any) -> None:
    """A layered image starts from a golden image this provider published for another pipeline:
    Nova's snapshot inherits that image's properties, another build's key among them, and the
    template's own marks replace them, so the claim takes the image as this build's."""
    base = make_target("golden-base")
    source = fake_os.add_image(unique("golden"), b"published golden image", **base.marks(base_build(tmp_path), "final"))
    milestone = PackerMilestone(tmp_path, unique("os-layered"), fake_os.images[source]["name"])
    milestone.run(0)
    milestone.run(5)
    image = fake_os.images[milestone.record().milestones[5].outputs["image_id"]]
    assert image[KEY] == milestone.target.key(milestone.record()) and image["base_image_ref"] == source


def base_build(tmp_path: Path) -> Any:
    store = open_store(f"sqlite:///{tmp_path}/base.db")
    return store.register("golden-1", BuildIdentity("golden-base", "openstack", "base", plan=(0, 95, 100)))


@pytest.mark.slow
def test_packer_reaches_a_self_signed_cloud_and_boots_in_the_specs_security_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cloud whose certificate no CA vouches for, with ``insecure`` in the connection: Packer's
    builder ignores OS_INSECURE, so the template gets it as a variable; its build server gets the
    spec's security groups and network (Nova's ``default`` group otherwise)."""
    with fake_openstack(tmp_path / "tls") as fake:
        monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", connection_uri(fake, insecure=True))
        monkeypatch.setattr(OpenstackTarget, "poll_s", 0.05)
        fake.add_security_group("imagebuild-ssh")
        source = fake.add_image("rhel-8", b"rhel 8 base")
        milestone = PackerMilestone(tmp_path, "os-tls", "rhel-8", security_groups=["imagebuild-ssh"])
        assert fake.url.startswith("https://")
        milestone.run(0)
        milestone.run(5)
        image = fake.images[milestone.record().milestones[5].outputs["image_id"]]
        assert image["base_image_ref"] == source and image["status"] == "active"
        packer_server = next(r["server"] for r in fake.server_requests if r["server"]["name"].endswith("-packer"))
        assert packer_server["security_groups"] == [{"name": "imagebuild-ssh"}]
        assert packer_server["networks"] == [{"uuid": fake.network_id()}]
        assert packer_server["metadata"][KEY] == milestone.target.key(milestone.record())


def test_packer_gets_tls_and_the_interface_as_variables(
    fake_os: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the builder does not read from its environment comes as template variables, from the
    connection's extra or a clouds.yaml cloud alike; a CA bundle goes as OS_CACERT."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    uri = connection_uri(fake_os, interface="internal", cacert=str(ca))
    monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", uri)
    target = make_target("os-pipe", security_groups=["web", "ssh"])
    values, env = target.packer_vars(), target.packer_env()
    assert (values["openstack_insecure"], values["openstack_endpoint_type"]) == ("false", "internal")
    assert json.loads(values["openstack_security_groups"]) == ["web", "ssh"]
    assert json.loads(values["openstack_networks"]) == [fake_os.network_id()] and env["OS_CACERT"] == str(ca)
    clouds = tmp_path / "clouds.yaml"
    auth = {"auth_url": f"{fake_os.url}/identity/v3", "username": "u", "password": "p", "project_name": "x"}
    clouds.write_text(yaml.safe_dump({"clouds": {"lab": {"auth": auth, "verify": False, "interface": "admin"}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    lab = make_target("os-pipe", cloud="lab", openstack_conn_id="unused")
    assert lab.clients.packer_access() == {"openstack_insecure": "true", "openstack_endpoint_type": "admin"}
    assert lab.packer_env() == {"OS_CLOUD": "lab"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", connection_uri(fake_os, interface="private"))
    with pytest.raises(InvalidInput, match=r"target\.openstack_conn_id: .*extra\.interface 'private'"):
        make_target("os-pipe")


def _post(conn: Any, service: str, path: str, body: Any, micro: str | None = None) -> tuple[int, str]:
    """A raw request with the login's token (what a client that skips the SDK's checks sends)."""
    proxy = getattr(conn, service)
    headers = {"OpenStack-API-Version": f"compute {micro}"} if micro else {}
    resp = proxy.post(path, json=body, headers=headers, raise_exc=False)
    return resp.status_code, resp.text


def test_the_fake_refuses_what_nova_and_glance_refuse(
    build: Any, fake_os: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests Nova's and Glance's own schemas and policies refuse (tests/servers/openstack_api)
    are refused here too, with their status and message: names over 255 characters or with
    leading whitespace, missing required fields, values outside an enum, Glance's reserved
    properties, security groups the project lacks, publicizing without the admin role."""
    target = make_target("os-pipe")
    conn = target.conn
    image = packer_image(fake_os, target, build)
    net = [{"uuid": fake_os.network_id()}]
    server = {"name": "ok", "flavorRef": "f1", "imageRef": image, "networks": net}
    without_networks = {k: v for k, v in server.items() if k != "networks"}
    refused = {  # case: (body, microversion)
        "name of 256": ({**server, "name": "n" * 256}, "2.100"),
        "leading space": ({**server, "name": " lead"}, "2.100"),
        "no flavorRef": ({"name": "x", "imageRef": image, "networks": net}, "2.1"),
        "no networks from 2.37": (without_networks, "2.100"),
        "an unknown key": ({**server, "flavor": "m1.small"}, "2.1"),
        "metadata value of 256": ({**server, "metadata": {"k": "v" * 256}}, "2.1"),
        "a missing group": ({**server, "security_groups": [{"name": "nope"}]}, "2.1"),
        "a missing key pair": ({**server, "key_name": "nope"}, "2.1"),
    }
    answers = {
        case: _post(conn, "compute", "/servers", {"server": body}, micro) for case, (body, micro) in refused.items()
    }
    assert all(status == 400 for status, _ in answers.values()), answers
    assert "Invalid input for field/attribute name" in answers["name of 256"][1]
    assert "An invalid 'name' value was provided" in answers["leading space"][1]
    assert "'flavorRef' is a required property" in answers["no flavorRef"][1]
    assert "'networks' is a required property" in answers["no networks from 2.37"][1]
    assert "Security group nope not found." in answers["a missing group"][1]
    assert "Invalid key_name provided." in answers["a missing key pair"][1]
    status, text = _post(conn, "compute", "/servers", {"server": server}, "2.1")  # before 2.37: networks optional
    made = json.loads(text)["server"]
    assert status == 202 and fake_os.servers[made["id"]]["security_groups"] == [{"name": "default"}]
    fake_os.servers[made["id"]]["status"] = "ACTIVE"
    action = f"/servers/{made['id']}/action"
    assert _post(conn, "compute", action, {"createImage": {"name": "s" * 256}})[0] == 400
    assert _post(conn, "compute", action, {"createImage": {"metadata": {}}})[0] == 400
    fake_os.remove_server(made["id"])

    bad_images = {
        "visibility": ({"name": "x", "visibility": "everyone"}, 400, "does not match schema 'image'"),
        "disk_format": ({"name": "x", "disk_format": "qcow3"}, 400, "does not match schema 'image'"),
        "container_format": ({"name": "x", "container_format": "tarball"}, 400, "does not match schema 'image'"),
        "name": ({"name": "i" * 256}, 400, "does not match schema 'image'"),
        "property name": ({"name": "x", "p" * 256: "v"}, 400, "Custom property should not be greater than 255"),
        "reserved": ({"name": "x", "os_glance_x": "t"}, 403, "Attribute 'os_glance_x' is reserved."),
        "public": ({"name": "x", "visibility": "public"}, 403, "You are not authorized to complete publicize_image"),
        "min_disk": ({"name": "x", "min_disk": "ten"}, 400, "does not match schema 'image'"),
        "stores": ({"name": "x", "stores": "ceph"}, 403, "Attribute 'stores' is read-only."),
        "deleted": ({"name": "x", "deleted": "False"}, 403, "Attribute 'deleted' is reserved."),
    }  # fmt: skip
    for case, (body, status, message) in bad_images.items():
        answer = _post(conn, "image", "/images", body)
        assert answer[0] == status and message in answer[1], (case, answer)
    # Data goes up as application/octet-stream, once the image has its disk and container formats.
    queued = json.loads(_post(conn, "image", "/images", {"name": unique("no-formats")})[1])["id"]
    octets = {"Content-Type": "application/octet-stream"}
    answer = conn.image.put(f"/images/{queued}/file", data=b"data", headers=octets, raise_exc=False)
    assert answer.status_code == 400 and "Properties disk_format, container_format must be set prior" in answer.text
    as_json = {"Content-Type": "application/json"}
    assert conn.image.put(f"/images/{queued}/file", data=b"{}", headers=as_json, raise_exc=False).status_code == 415
    assert fake_os.images.pop(queued)["status"] == "queued"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", connection_uri(fake_os, ADMIN_PASSWORD, user=ADMIN_USER)
    )
    admin = make_target("os-pipe").conn
    status, text = _post(admin, "image", "/images", {"name": unique("public"), "visibility": "public"})
    assert status == 201 and json.loads(text)["visibility"] == "public"
    change = json.dumps([{"op": "replace", "path": "/disk_format", "value": "qcow3"}])
    patch_type = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
    patch = conn.image.patch(f"/images/{image}", data=change, headers=patch_type, raise_exc=False)
    assert patch.status_code == 400 and fake_os.images[image]["disk_format"] == "qcow2"


# -- reuse: a build starts from its own copy of an earlier build's checkpoint (#32) -----------------
def reuse_builds(tmp_path: Path, pipeline: str) -> tuple[Any, Any]:
    """An earlier build of ``pipeline`` (the source) and a new one, in one store."""
    store = open_store(f"sqlite:///{tmp_path}/reuse.db")
    plan = (0, 5, 10, 15, 20, 95, 100)
    return tuple(store.register(unique(f"{pipeline}-{n}"), BuildIdentity(pipeline, "openstack", "base", plan=plan))
                 for n in ("night1", "night3"))  # type: ignore[return-value]  # fmt: skip


def source_checkpoint(fake: Any, target: OpenstackTarget, source: Any, data: bytes = b"") -> str:
    """What capture leaves after milestone 15 of ``source``: a server snapshot of its project with
    its marks, Nova's snapshot properties and what it inherited from the image it booted."""
    props = {**target.marks(source, "checkpoint"), "image_type": "snapshot", "instance_uuid": "3f1e6c1a-0000-4000",
             "hw_disk_bus": "scsi", "os_glance_import_task": "t-1", "imagebuild_milestone": "10"}  # fmt: skip
    return str(fake.add_image(target.names(source).checkpoint(15), data or b"cp15" * 300_000, **props))


def copies_of(fake: Any, target: OpenstackTarget, build: Any) -> list[dict[str, Any]]:
    return images_named(fake, target.names(build).checkpoint(15))


def test_a_build_starts_from_its_own_copy_of_an_earlier_builds_checkpoint(tmp_path: Path, fake_os: Any) -> None:
    """The copy is the new build's (its name, marks, the source's data, checksums and boot
    properties, not Glance's reserved ones nor the source's marks), launch takes it and discard
    deletes it; the source's image is untouched; a retry returns the same copy, and one after an
    attempt cut short deletes the half-made image and copies again."""
    pipeline = unique("os-reuse")
    target = make_target(pipeline)
    source, build = reuse_builds(tmp_path, pipeline)
    image = source_checkpoint(fake_os, target, source)  # 1.2 MB: relayed in two chunks
    before = dict(fake_os.images[image])

    adopted = target.adopt_checkpoint(build, source, Checkpoint(15, image))
    copy = adopted["checkpoint_image"]
    made = fake_os.images[copy]
    assert copy != image and adopted["image_name"] == made["name"] == target.names(build).checkpoint(15)
    assert adopted["checkpoint_gb"] == 0.0012 and fake_os.data[copy] == fake_os.data[image]
    assert (made["os_hash_value"], made["size"]) == (before["os_hash_value"], before["size"])
    assert target.owns_image(build, copy) and not target.owns_image(source, copy)
    assert (made["imagebuild_copied_from"], made["visibility"], made["owner"]) == (image, "private", PROJECT_ID)
    assert (made["hw_disk_bus"], made["image_type"], made["disk_format"]) == ("scsi", "snapshot", "qcow2")
    assert "os_glance_import_task" not in made and "imagebuild_milestone" not in made
    assert fake_os.images[image] == before  # the source's checkpoint stays the source's

    creates = fake_os.calls.count(("POST", "/image/v2/images"))
    assert target.adopt_checkpoint(build, source, Checkpoint(15, image)) == adopted  # a retry: the same copy
    assert fake_os.calls.count(("POST", "/image/v2/images")) == creates and len(copies_of(fake_os, target, build)) == 1

    host = target.launch(build, Checkpoint(15, copy))
    assert fake_os.servers[host.id]["image"]["id"] == copy
    target.cleanup(build, host)
    assert target.discard(build, [copy]) == [copy] and copy not in fake_os.images

    # An attempt killed half-way left a queued image of the build under the copy's name.
    fake_os.add_image(target.names(build).checkpoint(15), b"cut", **target.marks(build, "checkpoint"))
    half = copies_of(fake_os, target, build)[0]
    half.update(status="queued", imagebuild_copied_from=image)
    again = target.adopt_checkpoint(build, source, Checkpoint(15, image))["checkpoint_image"]
    assert [i["id"] for i in copies_of(fake_os, target, build)] == [again] and half["id"] not in fake_os.images
    assert target.discard(build, [again, image]) == [again] and image in fake_os.images


@pytest.mark.parametrize(
    "failure",
    ["a refused upload (quota)", "the API process died mid-upload", "the stored data differs"],
)
def test_a_copy_that_fails_half_way_leaves_nothing_behind(tmp_path: Path, fake_os: Any, failure: str) -> None:
    """Glance refuses the data once the image exists (413: the project's storage quota), leaves it
    saving without data (its API process died; the client gets a 502), or stores something other
    than what was sent: the image made is deleted and the error says the checkpoint was not
    copied; the next try copies it."""
    pipeline = unique("os-reuse")
    target = make_target(pipeline)
    source, build = reuse_builds(tmp_path, pipeline)
    image = source_checkpoint(fake_os, target, source, b"cp15 data")
    if failure.startswith("a refused"):
        fake_os.fail("PUT", r"^/image/v2/images/[^/]+/file$", 413, message="Image exceeds the storage quota: 1 GiB")
    elif failure.startswith("the API"):
        fake_os.dying_uploads = 1
    else:
        fake_os.corrupt_uploads = 1
    creates = fake_os.calls.count(("POST", "/image/v2/images"))
    with pytest.raises(TargetError, match=rf"checkpoint {image} of build {source.build_id} was not copied \(the half"):
        target.adopt_checkpoint(build, source, Checkpoint(15, image))
    assert fake_os.calls.count(("POST", "/image/v2/images")) == creates + 1  # made, then deleted
    assert copies_of(fake_os, target, build) == [] and fake_os.images[image]["status"] == "active"
    copy = target.adopt_checkpoint(build, source, Checkpoint(15, image))["checkpoint_image"]
    assert fake_os.data[copy] == b"cp15 data"
    assert target.discard(build, [copy]) == [copy]


def test_only_the_source_builds_own_checkpoint_is_copied(tmp_path: Path, fake_os: Any) -> None:
    """The record naming an image proves nothing: another pipeline's image of a build of the same
    id, another build's of this pipeline, another project's public look-alike with the source's
    marks, the source's sealed image or a volume-backed server's snapshot (its disk is a Cinder
    snapshot, Glance holds no data) is refused, naming the output,
    and nothing is created; the source's own checkpoint is then copied."""
    pipeline = unique("os-reuse")
    target = make_target(pipeline)
    source, build = reuse_builds(tmp_path, pipeline)
    other_pipeline = make_target(unique("os-other"))
    marks = target.marks(source, "checkpoint")
    name = target.names(source).checkpoint(15)
    refused = {
        "another pipeline's": fake_os.add_image(name, b"x", **other_pipeline.marks(source, "checkpoint")),
        "another build's": fake_os.add_image(name, b"x", **target.marks(build, "checkpoint")),
        "another project's": fake_os.add_image(name, b"x", owner=OTHER_PROJECT_ID, visibility="public", **marks),
        "the sealed image": fake_os.add_image(name, b"x", **target.marks(source, "final")),
        "a volume-backed server's snapshot": fake_os.add_image(
            name, b"", **marks, block_device_mapping='[{"source_type": "snapshot"}]', bdm_v2="True"
        ),
        "missing": "0b7a3c1e-5d2f-4e6a-9b8c-7d6e5f4a3b2c",
    }
    fake_os.images[refused["another pipeline's"]]["imagebuild_pipeline"] = pipeline  # only the key differs
    creates = fake_os.calls.count(("POST", "/image/v2/images"))
    for case, image in refused.items():
        with pytest.raises(InvalidInput, match=rf"^milestones\.15\.outputs\.checkpoint_image: {image} .*nothing is co"):
            target.adopt_checkpoint(build, source, Checkpoint(15, image))
        assert copies_of(fake_os, target, build) == [], case
    assert fake_os.calls.count(("POST", "/image/v2/images")) == creates
    own = source_checkpoint(fake_os, target, source, b"the source's own")
    copy = target.adopt_checkpoint(build, source, Checkpoint(15, own))["checkpoint_image"]
    assert fake_os.data[copy] == b"the source's own"
    assert target.discard(build, [copy]) == [copy]
    for image in [own, *list(refused.values())[:-1]]:
        fake_os.images.pop(image, None)
