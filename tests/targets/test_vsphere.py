"""The vSphere target against govmomi's vCenter simulator (tests/servers/vcsim.py).

Real: the simulator (govmomi's own vCenter model, built from Debian's package), pyVmomi's SOAP
calls and the vAPI REST calls for the content library, over https on loopback, with the login
from an Airflow connection. What Packer's vsphere-clone does at 5/10 (clone the source VM into a
template named by the build) is done here with pyVmomi; the contract suite runs real Packer.
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
from airflow_provider_imagebuild.targets.vsphere import KEY_OPTION, VsphereTarget
from tests.conftest import VSPHERE_CONN_ID, unique
from tests.servers.vcsim import CLUSTER, DATACENTER, DATASTORE, LIBRARY, SOURCE_TEMPLATE, USER


def settings(**more: Any) -> dict[str, Any]:
    return {
        "vsphere_conn_id": VSPHERE_CONN_ID,
        "datacenter": DATACENTER,
        "cluster": CLUSTER,
        "datastore": DATASTORE,
        "template": SOURCE_TEMPLATE,
        "content_library": LIBRARY,
        # Ansible's connection (the simulator's VMs run nothing): no waiting for a guest address
        "connection": {"ansible_connection": "local"},
        **more,
    }


def make_target(pipeline: str, **more: Any) -> VsphereTarget:
    spec = parse_spec({"pipeline": pipeline, "cloud": "vsphere", "image_type": "base", "target": settings(**more)})
    target = target_for("vsphere", spec.target, pipeline=pipeline, image_type="base")
    assert isinstance(target, VsphereTarget)
    return target


@pytest.fixture
def build(tmp_path: Path) -> Iterator[Any]:
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    build_id = unique("vs")
    yield store.register(build_id, BuildIdentity("vs-pipe", "vsphere", "base", plan=(0, 5, 10, 15, 95, 100)))


def packer_clone(target: VsphereTarget, name: str, source: str = SOURCE_TEMPLATE) -> None:
    """What Packer's vsphere-clone does with convert_to_template: the source VM cloned into a
    template of the given name in the target's folder."""
    from pyVmomi import vim

    vm = target._vm(source)
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=target.pool(), datastore=target.datastore()))
    clone = target.clients.wait("clone", vm.CloneVM_Task(folder=target.folder(), name=name, spec=spec))
    clone.MarkAsTemplate()


def test_build_host_checkpoints_seal_publish_and_cleanup(build: Any, vsphere_library: str) -> None:
    target = make_target("vs-pipe", publish_tags={"os": "rhel8", "image-tier": "golden"})
    green = target.packer_image_name(build, "vs-pipe", 10)
    packer_clone(target, green)
    target.claim_images(build, {"": green}, 10)
    assert target.owns_image(build, green)

    host = target.launch(build, Checkpoint(10, green))
    assert target.alive(build, host) and host.checkpoint == 10
    vm = target._by_uuid(host.id)
    assert vm.name == f"{target.prefix(build)}-h010" and target._options(vm)[KEY_OPTION] == target.key(build)

    out = target.capture(build, host, 15, final=False)
    checkpoint = out["checkpoint_image"]
    assert target.owns_image(build, checkpoint) and target.alive(build, host)  # started again

    # The host is lost (destroyed behind the build's back): not alive; relaunched from 15.
    target.clients.wait("destroy", vm.PowerOffVM_Task())
    target.clients.wait("destroy", vm.Destroy_Task())
    assert not target.alive(build, host)
    relaunched = target.launch(build, Checkpoint(15, checkpoint))
    assert relaunched.id != host.id and target.alive(build, relaunched)

    final = target.capture(build, relaunched, 95, final=True)["image_id"]
    assert target.owns_image(build, final) and not target.alive(build, relaunched)  # powered off
    assert final == target.capture(build, relaunched, 95, final=True)["image_id"]  # a retried seal

    published = target.publish(build, final)
    assert published["content_library"] == LIBRARY and published["library_item_id"]
    assert published["tags"] == {"os": "rhel8", "image-tier": "golden"}
    assert target.publish(build, final) == published  # a retried publish finds its item and tags
    rest, template_id = target.clients.rest(), target._vm(final)._moId
    body = {"object_id": {"id": template_id, "type": "VirtualMachine"}}
    attached = rest.post("/com/vmware/cis/tagging/tag-association", params={"~action": "list-attached-tags"}, json=body)
    names = {rest.get(f"/com/vmware/cis/tagging/tag/id:{t}").json()["value"]["name"] for t in attached.json()["value"]}
    assert names == {"rhel8", "golden"}

    assert target.discard(build, [green, checkpoint, "not-a-template"]) == [green, checkpoint]
    assert not target.owns_image(build, green)
    rec = build
    target.cleanup(rec, relaunched)
    target.cleanup(rec, relaunched)  # idempotent
    assert target._by_uuid(relaunched.id) is None and target.owns_image(build, final)


def test_what_is_not_the_builds_is_refused(build: Any, vsphere_conn: tuple[str, int]) -> None:
    target = make_target("vs-pipe")
    # A template of the inventory that no build marked: never launched from, published or claimed.
    packer_clone(target, "someone-elses-template")
    with pytest.raises(InvalidInput, match=r"not build .*'s template"):
        target.launch(build, Checkpoint(10, "someone-elses-template"))
    with pytest.raises(InvalidInput, match=r"not build .*'s template"):
        target.publish(build, "someone-elses-template")
    with pytest.raises(InvalidInput, match="is not the template this build asked Packer for"):
        target.claim_images(build, {"": "someone-elses-template"}, 10)
    # Another build's template under this build's name (a spoofed manifest) is refused too.
    other = make_target("other-pipe")
    name = target.packer_image_name(build, "vs-pipe", 5)
    packer_clone(target, name)
    other._mark(build, _as_vm(other, name), "checkpoint")
    with pytest.raises(InvalidInput, match="belongs to another build"):
        target.claim_images(build, {"": name}, 5)
    # A recorded host that is not the build's VM is simply not alive (a new one would be launched).
    source = target._vm(SOURCE_TEMPLATE)
    assert not target.alive(build, Host(str(source.config.instanceUuid), "", "x", 10, 10))
    target.cleanup(build, Host(str(source.config.instanceUuid), "", "x", 10, 10))
    assert target._vm(SOURCE_TEMPLATE) is not None  # never destroyed


def test_a_vm_with_the_builds_key_outside_the_targets_folder_is_not_the_builds(
    build: Any, vsphere_conn: tuple[str, int]
) -> None:
    """The key is a digest anyone can compute, and whoever may make VMs in another folder of the
    datacenter can give one the build's key. A host is found by its instance UUID anywhere in the
    datacenter, and an image name may be a path (``other-folder/vm``): only a VM directly in the
    target's own folder is the build's, so no other folder's VM is used, captured or destroyed."""
    theirs = make_target("vs-pipe")  # the datacenter's VM folder itself
    folder = unique("ib-team")
    theirs.folder().CreateFolder(folder)
    ours = make_target("vs-pipe", folder=folder)
    green = theirs.packer_image_name(build, "vs-pipe", 10)
    packer_clone(theirs, green)
    theirs.claim_images(build, {"": green}, 10)
    their_host = theirs.launch(build, Checkpoint(10, green))
    assert theirs.alive(build, their_host)

    assert not ours.alive(build, their_host)
    with pytest.raises(InvalidInput, match="host_id"):
        ours.capture(build, their_host, 15, final=False)
    ours.cleanup(build, their_host)
    assert theirs.alive(build, their_host)  # not powered off, not destroyed
    # A store value naming a VM of a subfolder, for a target whose folder is the datacenter's own.
    from pyVmomi import vim

    cloned = ours.packer_image_name(build, "vs-pipe", 5)
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=ours.pool(), datastore=ours.datastore()))
    source = theirs._vm(SOURCE_TEMPLATE)
    ours.clients.wait("clone", source.CloneVM_Task(folder=ours.folder(), name=cloned, spec=spec)).MarkAsTemplate()
    ours.claim_images(build, {"": cloned}, 5)
    assert ours.owns_image(build, cloned) and not theirs.owns_image(build, f"{folder}/{cloned}")
    with pytest.raises(InvalidInput, match="checkpoint_image"):
        theirs.launch(build, Checkpoint(10, f"{folder}/{cloned}"))
    assert theirs.discard(build, [f"{folder}/{cloned}"]) == [] and ours.owns_image(build, cloned)
    theirs.cleanup(build, their_host)
    assert theirs.discard(build, [green]) == [green] and ours.discard(build, [cloned]) == [cloned]


def _as_vm(target: VsphereTarget, name: str) -> Any:
    vm = target._vm(name)
    vm.MarkAsVirtualMachine(pool=target.pool())
    return vm


def test_wrong_login_and_missing_inventory_are_input_errors(
    build: Any, vsphere_conn: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = vsphere_conn
    with pytest.raises(InvalidInput, match=r"target\.datastore"):
        make_target("vs-pipe", datastore="NoSuchDS").datastore()
    with pytest.raises(InvalidInput, match=r"target\.cluster"):
        make_target("vs-pipe", cluster="NoSuchCluster").pool()
    wrong = {"conn_type": "generic", "host": host, "port": port, "login": USER, "password": "wrong",
             "extra": {"insecure": True}}  # fmt: skip
    monkeypatch.setenv(f"AIRFLOW_CONN_{VSPHERE_CONN_ID.upper()}", json.dumps(wrong))
    with pytest.raises(InvalidInput, match="credentials") as info:
        make_target("vs-pipe").launch(build, Checkpoint(10, "x"))
    assert "wrong" not in str(info.value)
    # A certificate nobody vouched for is refused unless the connection says insecure.
    monkeypatch.setenv(f"AIRFLOW_CONN_{VSPHERE_CONN_ID.upper()}", json.dumps({**wrong, "extra": {}}))
    with pytest.raises(TargetError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        make_target("vs-pipe").launch(build, Checkpoint(10, "x"))


@pytest.mark.parametrize(
    ("target", "where", "reason"),
    [
        ({"datacenter": "DC0/x"}, "target.datacenter", "not a vSphere inventory name"),
        ({"folder": "/abs"}, "target.folder", "relative inventory path"),
        ({"region": "us-east-1"}, "target.region", "unknown key"),
        ({"ssh_user": "root"}, "target.ssh_user", "not root"),
        ({"publish_tags": {"os/family": "rhel"}}, "target.publish_tags", "not a vSphere tag category name"),
    ],
)
def test_bad_target_settings_name_the_key(target: dict[str, Any], where: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason) as info:
        parse_spec({"pipeline": "p", "cloud": "vsphere", "image_type": "t", "target": settings(**target)})
    assert where in str(info.value)


def test_a_publish_milestone_needs_a_content_library() -> None:
    spec = {
        "pipeline": "p",
        "cloud": "vsphere",
        "image_type": "t",
        "target": {k: v for k, v in settings().items() if k != "content_library"},
        "milestones": {100: {"action": "publish"}},
    }
    with pytest.raises(SpecError, match=r"target\.content_library: is required"):
        parse_spec(spec)


def test_a_resealed_template_replaces_its_content_library_item(build: Any, vsphere_library: str) -> None:
    """The final template's name comes from the build (the same after a new seal), and so does its
    content library item's: an item of the build is kept only if its description records this
    very template's seal. A build sealed again gets a new item (the old one, holding the image
    of the first seal, is deleted); publishing the same seal again keeps its item."""
    target = make_target("vs-pipe")
    green = target.packer_image_name(build, "vs-pipe", 10)
    packer_clone(target, green)
    target.claim_images(build, {"": green}, 10)
    host = target.launch(build, Checkpoint(10, green))
    sealed = target.capture(build, host, 95, final=True)
    first = target.publish(build, sealed["image_id"])
    rest = target.clients.rest()

    resealed = target.capture(build, host, 95, final=True)  # reset to 95, sealed again
    assert resealed["image_id"] == sealed["image_id"]
    second = target.publish(build, resealed["image_id"])
    assert second["library_item_id"] != first["library_item_id"]
    assert resealed["seal"] != sealed["seal"]
    assert rest.get(f"/com/vmware/content/library/item/id:{first['library_item_id']}").status_code == 404
    item = rest.get(f"/com/vmware/content/library/item/id:{second['library_item_id']}").json()["value"]
    assert f"[imagebuild.seal={resealed['seal']}]" in item["description"]
    assert second["seal"] == resealed["seal"]
    assert target.publish(build, resealed["image_id"]) == second  # the same seal: its item is kept
    # An item of the template's name that records no key of this build is not the build's to replace.
    rest.delete(f"/com/vmware/content/library/item/id:{second['library_item_id']}")
    spec = {"library_id": vsphere_library, "name": resealed["image_id"], "type": "ovf",
            "description": f"[imagebuild.seal={resealed['seal']}]"}  # fmt: skip
    theirs = rest.post("/com/vmware/content/library/item", json={"create_spec": spec}).json()["value"]
    with pytest.raises(InvalidInput, match=r"target\.content_library: an item .* that is not this build's exists"):
        target.publish(build, resealed["image_id"])
    assert rest.get(f"/com/vmware/content/library/item/id:{theirs}").status_code == 200
    rest.delete(f"/com/vmware/content/library/item/id:{theirs}")
    target.cleanup(build, host)
    assert target.discard(build, [green]) == [green]
