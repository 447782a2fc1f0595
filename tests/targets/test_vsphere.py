"""The vSphere target against govmomi's vCenter simulator (tests/servers/vcsim.py).

Real: the simulator (govmomi's own vCenter model, built from Debian's package), pyVmomi's SOAP
calls and the vAPI REST calls for the content library, over https on loopback, with the login
from an Airflow connection. What Packer's vsphere-clone does at 5/10 (clone the source VM into a
template named by the build) is done here with pyVmomi; the contract suite runs real Packer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets import target_for
from airflow_provider_imagebuild.targets.base import MANAGED_BY, Checkpoint, Host
from airflow_provider_imagebuild.targets.vsphere import KEY_OPTION, VsphereTarget
from tests.conftest import VSPHERE_CONN_ID, unique
from tests.servers.vcsim import CLUSTER, DATACENTER, DATASTORE, LIBRARY, NO_DRS_CLUSTER, SOURCE_TEMPLATE, USER


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


# -- what vCenter refuses (the simulator made strict) ---------------------------------------------
def test_the_simulator_refuses_placements_and_names_vcenter_refuses(vsphere_conn: tuple[str, int]) -> None:
    """pyVmomi's RelocateSpec.host: a pool of a cluster without DRS and no host is refused
    (InvalidArgument); MarkAsVirtualMachine takes no host only for a stand-alone host or a DRS
    cluster, and only a host of the pool's cluster; an inventory name is at most 80 characters."""
    from pyVmomi import vim, vmodl

    target = make_target("vs-fake", cluster=NO_DRS_CLUSTER)
    cluster = target._find(f"{DATACENTER}/host/{NO_DRS_CLUSTER}", "cluster")
    assert cluster.configurationEx.drsConfig.enabled is False
    other_host = target._find(f"{DATACENTER}/host/{CLUSTER}", "cluster").host[0]
    source = target._vm(SOURCE_TEMPLATE)
    for host in (None, other_host):
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=cluster.resourcePool, host=host))
        with pytest.raises(vmodl.fault.InvalidArgument, match=r"not correct: spec\.location\.host"):
            source.CloneVM_Task(folder=target.folder(), name=unique("nodrs"), spec=spec)
    template = unique("nodrs-template")
    packer_clone(make_target("vs-fake"), template)  # on the DRS cluster: no host needed
    for host in (None, other_host):
        with pytest.raises(vmodl.fault.InvalidArgument, match=r"not correct: host"):
            target._vm(template).MarkAsVirtualMachine(pool=cluster.resourcePool, host=host)
    target._vm(template).MarkAsVirtualMachine(pool=cluster.resourcePool, host=cluster.host[1])
    assert not target._vm(template).config.template
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=cluster.resourcePool, host=cluster.host[0]))
    with pytest.raises(vim.fault.InvalidName):
        source.CloneVM_Task(folder=target.folder(), name="n" * 81, spec=spec)
    with pytest.raises(vim.fault.InvalidName):  # '/' counts as its escape, %2f
        source.CloneVM_Task(folder=target.folder(), name="n" * 77 + "/x", spec=spec)
    target.clients.wait("destroy", target._vm(template).Destroy_Task())


def test_the_simulator_refuses_a_clone_over_a_name_and_a_cancel_of_an_ended_task(vsphere_conn: tuple[str, int]) -> None:
    """What vCenter refuses and the simulator took: a clone named as a VM of its destination folder
    (DuplicateName, naming the folder), and CancelTask of a task that has ended (InvalidState)."""
    from pyVmomi import vim

    target = make_target("vs-fake")
    name = unique("dup")
    packer_clone(target, name)
    source = target._vm(SOURCE_TEMPLATE)
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=target.pool(), datastore=target.datastore()))
    with pytest.raises(vim.fault.DuplicateName) as info:
        source.CloneVM_Task(folder=target.folder(), name=name, spec=spec)
    assert info.value.name == name and info.value.object._moId == target.folder()._moId
    task = target._vm(name).Destroy_Task()
    target.clients.wait("destroy", task)
    with pytest.raises(vim.fault.InvalidState):
        task.CancelTask()


# -- clusters without DRS --------------------------------------------------------------------------
def test_a_cluster_without_drs_gets_a_host_for_every_clone_and_conversion(
    build: Any, vsphere_conn: tuple[str, int]
) -> None:
    """vCenter places nothing on a cluster without DRS: every clone into its pool and every
    template made a VM again there names a host (the spec's, else one the target chooses: connected,
    not in maintenance, mounting the datastore). Launch, checkpoint, claim and seal all convert or
    clone into that pool."""
    drs = make_target("vs-pipe")
    green = drs.packer_image_name(build, "vs-pipe", 10)
    packer_clone(drs, green)  # what Packer made (on the DRS cluster)
    target = make_target("vs-pipe", cluster=NO_DRS_CLUSTER)
    target.claim_images(build, {"": green}, 10)  # made a VM for its marks, then a template again
    host = target.launch(build, Checkpoint(10, green))
    assert target.alive(build, host)
    checkpoint = target.capture(build, host, 15, final=False)["checkpoint_image"]
    assert target.owns_image(build, checkpoint) and target.alive(build, host)
    final = target.capture(build, host, 95, final=True)["image_id"]
    assert target.owns_image(build, final)
    members = {h._moId for h in target._find(f"{DATACENTER}/host/{NO_DRS_CLUSTER}", "cluster").host}
    chosen = target.placement_host()
    assert chosen is not None and chosen._moId in members
    pinned = make_target("vs-pipe", cluster=NO_DRS_CLUSTER, host=f"{NO_DRS_CLUSTER}_H2")
    assert pinned.placement_host().name == f"{NO_DRS_CLUSTER}_H2"
    assert make_target("vs-pipe").placement_host() is None  # DRS chooses
    target.cleanup(build, host)
    assert target.discard(build, [green, checkpoint]) == [green, checkpoint]
    target.clients.wait("destroy", target._vm(final).Destroy_Task())


# -- Packer milestones of the shipped template (vsphere-clone against the simulator) --------------
SCHEDULED_RUN = "scheduled__2026-11-04T03:15:00+00:00"
LONG_PIPELINE = "vsphere-rhel8-webserver-sap-hana-scale-out-eu-central-frankfurt"  # 63 characters


def packer_milestone(store_url: str, pipeline: str, code: int = 5, **more: Any) -> Any:
    """Milestone ``code`` (5: kickstart, 10: green) of the shipped template, with real Packer."""
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator
    from tests.dags.conftest import ROOT

    source = {5: "kickstart", 10: "green"}[code]
    spec = parse_spec({"pipeline": pipeline, "cloud": "vsphere", "image_type": "base", "target": settings(**more)})
    return PackerMilestoneOperator(
        task_id=f"s{code:03d}_{source}",
        identity=BuildIdentity(pipeline, "vsphere", "base", plan=(0, 5, 10, 100)),
        state=code,
        store=store_url,
        template=str(ROOT / "dags/packer/rhel8-vsphere.pkr.hcl"),
        only=[f"vsphere-clone.{source}"],
        target=spec.target,
    )


def test_a_long_pipeline_and_a_scheduled_build_get_names_vcenter_takes(
    tmp_path: Path, vsphere_conn: tuple[str, int]
) -> None:
    """A 63-character pipeline and a scheduled run's derived build id: milestone 5 runs real
    Packer into a template named from the build's digest, and every name the build gives vCenter
    (Packer's templates, build hosts, checkpoints, the final template) is within its 80
    characters, which the simulator now enforces as vCenter does."""
    from airflow_provider_imagebuild.build.ids import derive_build_id
    from tests.conftest import task_context

    assert len(LONG_PIPELINE) == 63
    build_id = derive_build_id(LONG_PIPELINE, SCHEDULED_RUN)
    store_url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(store_url)
    store.create_build(build_id, pipeline=LONG_PIPELINE, cloud="vsphere", image_type="base", plan=[0, 5, 10, 100])
    op = packer_milestone(store_url, LONG_PIPELINE)
    outputs = op.execute(task_context(build_id, "s005_kickstart"))
    target = op.get_target()
    build = store.get(build_id)
    assert outputs["image_id"] == target.vm_name(build, "packer", 5) and target.owns_image(build, outputs["image_id"])
    names = [target.vm_name(build, role, code) for role in ("packer", "host", "checkpoint") for code in (5, 10, 95)]
    names.append(target.vm_name(build, "final"))
    assert all(len(name) <= 80 for name in names) and len(set(names)) == len(names)
    host = target.launch(build, Checkpoint(5, outputs["image_id"]))
    assert target._by_uuid(host.id).name == target.vm_name(build, "host", 5)
    final = target.capture(build, host, 95, final=True)["image_id"]
    assert final == target.vm_name(build, "final") and final.startswith(LONG_PIPELINE[:40])
    target.cleanup(build, host)
    assert target.discard(build, [outputs["image_id"]]) == [outputs["image_id"]]
    target.clients.wait("destroy", target._vm(final).Destroy_Task())


def test_a_retry_after_packer_made_its_template_adopts_it_and_a_foreign_one_is_never_touched(
    tmp_path: Path, vsphere_conn: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """vsphere-clone stops with "already exists, you can use -force flag to destroy it", so a
    milestone that failed after Packer made its template (here the claim fails once) could never
    succeed again. The retry adopts the template: in the target's folder, marked by the shipped
    template's configuration parameters as this build's. A template of that name without the
    marks is neither adopted nor destroyed; a VM of the build's that Packer left half-made (not a
    template yet) is destroyed and Packer makes it again."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from tests.conftest import task_context

    pipeline = unique("vs-retry")
    store_url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(store_url)
    for build_id in ("vs-retry-1", "vs-retry-2", "vs-retry-3"):
        store.create_build(build_id, pipeline=pipeline, cloud="vsphere", image_type="base", plan=[0, 5, 10, 100])
    claim = VsphereTarget.claim_images
    failed: list[str] = []

    def fails_once(self: VsphereTarget, build: Any, images: Any, milestone: int) -> None:
        if not failed:
            failed.append(next(iter(images.values())))
            raise TargetError("vSphere reconfigure: the vCenter session expired")
        claim(self, build, images, milestone)

    monkeypatch.setattr(VsphereTarget, "claim_images", fails_once)
    op = packer_milestone(store_url, pipeline)
    with pytest.raises((AirflowException, TargetError), match="session expired"):
        op.execute(task_context("vs-retry-1", "s005_kickstart"))
    target = op.get_target()
    made = target._vm(failed[0])
    assert made is not None and made.config.template
    retried = packer_milestone(store_url, pipeline).execute(task_context("vs-retry-1", "s005_kickstart", 2))
    assert retried["image_id"] == failed[0] and retried["packer_adopted"] is True
    assert target._vm(failed[0])._moId == made._moId  # the same template, not a new one
    assert target.owns_image(store.get("vs-retry-1"), failed[0])  # claimed this time

    # A template of the name the next build's milestone 5 gets, without its marks: left alone.
    theirs = target.vm_name(store.get("vs-retry-2"), "packer", 5)
    packer_clone(target, theirs)
    with pytest.raises(AirflowFailException, match=rf"packer artifact: a VM or template named {theirs} .*not build"):
        packer_milestone(store_url, pipeline).execute(task_context("vs-retry-2", "s005_kickstart"))
    assert target._vm(theirs) is not None

    # The build's own VM that Packer left before making it a template: made again.
    half = target.vm_name(store.get("vs-retry-3"), "packer", 5)
    packer_clone(target, half)
    vm = target._vm(half)
    vm.MarkAsVirtualMachine(pool=target.pool())
    marks = {"imagebuild.build": "vs-retry-3", "imagebuild.pipeline": pipeline, "imagebuild.managed_by": MANAGED_BY}
    target.clients.wait("mark", vm.ReconfigVM_Task(_config(marks)))
    outputs = packer_milestone(store_url, pipeline).execute(task_context("vs-retry-3", "s005_kickstart"))
    assert outputs["image_id"] == half and "packer_adopted" not in outputs
    assert target._vm(half)._moId != vm._moId and target._vm(half).config.template
    for name in (failed[0], theirs, half):
        template = target._vm(name)
        template.MarkAsVirtualMachine(pool=target.pool())
        target.clients.wait("destroy", template.Destroy_Task())


def _config(options: dict[str, str]) -> Any:
    from pyVmomi import vim

    return vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in options.items()])


def test_packer_on_a_cluster_without_drs_gets_the_host_the_target_chose(
    tmp_path: Path, vsphere_conn: tuple[str, int]
) -> None:
    """Packer's vsphere-clone names the clone's host only from 1.7 on (vsphere plugin 1.0.1):
    with it, milestone 5 on a cluster without DRS clones onto the host the target chose; an older
    Packer is refused before it runs, naming the gap, instead of failing at vCenter every retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_imagebuild.targets.vsphere import PACKER_SENDS_HOST, _version
    from airflow_provider_imagebuild.toolchain.versions import packer_version
    from tests.conftest import task_context

    pipeline = unique("vs-nodrs")
    store_url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(store_url)
    store.create_build("nodrs-1", pipeline=pipeline, cloud="vsphere", image_type="base", plan=[0, 5, 10, 100])
    op = packer_milestone(store_url, pipeline, cluster=NO_DRS_CLUSTER)
    target = op.get_target()
    name = target.vm_name(store.get("nodrs-1"), "packer", 5)
    version = packer_version()
    assert version is not None
    if _version(version) < PACKER_SENDS_HOST:
        with pytest.raises(
            AirflowFailException, match=rf"target\.cluster: {NO_DRS_CLUSTER} has DRS off, .*Packer {version}"
        ):
            op.execute(task_context("nodrs-1", "s005_kickstart"))
        assert target._vm(name) is None
        return
    chosen = target.placement_host()
    assert target.packer_vars()["vsphere_host"] == f"{NO_DRS_CLUSTER}/{chosen.name}"
    assert op.execute(task_context("nodrs-1", "s005_kickstart"))["image_id"] == name
    assert target.owns_image(store.get("nodrs-1"), name)


def test_the_launch_test_vm_is_cloned_from_the_sealed_template_reports_its_address_and_is_destroyed(
    build: Any, vsphere_conn: tuple[str, int]
) -> None:
    """The launch test's hooks (targets/launch.py runs them) on the simulator, whose VMware Tools
    report a TEST-NET-2 address once a VM is powered on (tests/servers/vcsim/main.go): the test VM is
    a clone of the sealed template in the target's folder, marked as the build's launch test, found
    by instance UUID and as a leftover by name and marks (another build's never), and destroyed.
    vSphere has no console output to read (None)."""
    target = make_target("vs-pipe")
    sealed = target.packer_image_name(build, "vs-pipe", 95)
    packer_clone(target, sealed)
    target.claim_images(build, {"": sealed}, 95)

    uuid = target.launch_test_instance(build, sealed)
    vm = target._by_uuid(uuid)
    assert vm.name == f"{target.prefix(build)}-lt" and target._options(vm)["imagebuild.role"] == "launch-test"
    found = target.test_instance(build, uuid)
    assert found is not None and found.state == "running" and found.address.startswith("198.51.100.")
    assert target.leftover_test_instances(build) == [uuid]
    assert target.test_instance_console(build, uuid) is None
    assert target._owned(build, sealed, template=True) is not None  # the image itself is untouched

    other = dataclasses.replace(build, build_id=build.build_id + "-other")
    assert target.leftover_test_instances(other) == [] and target.test_instance(other, uuid) is None
    target.delete_test_instance(other, uuid)
    assert target._by_uuid(uuid) is not None

    target.clients.wait("power off", vm.PowerOffVM_Task())  # powered off by someone: it will not come up
    found = target.test_instance(build, uuid)
    assert found is not None and found.state == "stopped" and "poweredOff" in found.detail
    target.delete_test_instance(build, uuid)
    assert target._by_uuid(uuid) is None and target.leftover_test_instances(build) == []
    target.delete_test_instance(build, uuid)  # again: harmless


@pytest.mark.slow
def test_the_launch_test_passes_on_the_stand_in_guest_and_a_failed_one_still_destroys_its_vm(
    build: Any, vsphere_conn: tuple[str, int], standin_guest: Any, tmp_path: Path
) -> None:
    """The whole launch test (targets/launch.py's template with the vSphere hooks): the sealed
    template is cloned and powered on in the simulator, which reports the guest's address as VMware
    Tools does; SSH, sudo, the network and the shipped verification playbook run on the stand-in
    guest (tests/servers/guest.py, through target.boot.ssh_address). vSphere has no console output:
    the login prompt is reported as not available. A failing playbook fails the check, and either
    way the test VM is destroyed."""
    from airflow_provider_imagebuild.operators.target import default_verification_playbook
    from airflow_provider_imagebuild.targets.boot import NO_CONSOLE, SEALED_IMAGE, boot_request

    target = make_target("vs-pipe", ssh_private_key_file=str(standin_guest.key), boot=standin_guest.boot_settings())
    sealed = target.packer_image_name(build, "vs-pipe", 95)
    packer_clone(target, sealed)
    target.claim_images(build, {"": sealed}, 95)
    boot = target.settings.boot
    report = target.boot_check(build, sealed, boot_request(boot, SEALED_IMAGE, "uefi", default_verification_playbook()))
    assert report.passed, report.error_text()
    assert report.checks["launch"] == "ok" and report.checks["login_prompt"] == NO_CONSOLE
    assert report.checks["delete"] == "ok" and target._by_uuid(report.instance) is None
    assert target.leftover_test_instances(build) == []

    failing = tmp_path / "fails.yml"
    failing.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                       "    - ansible.builtin.fail: {msg: the image is not what it should be}\n")  # fmt: skip
    report = target.boot_check(build, sealed, boot_request(boot, SEALED_IMAGE, "uefi", failing))
    assert not report.passed and "the image is not what it should be" in report.failure
    assert report.checks["delete"] == "ok" and target._by_uuid(report.instance) is None
    assert target.owns_image(build, sealed)  # the sealed template itself is never touched


# -- reuse: a new build's copy of an earlier build's checkpoint (#32) -------------------------------
def another_build(tmp_path: Path, pipeline: str = "vs-pipe") -> Any:
    """One more build in the ``build`` fixture's store."""
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    return store.register(unique("vs"), BuildIdentity(pipeline, "vsphere", "base", plan=(0, 5, 10, 15, 95, 100)))


def checkpoint_of(target: VsphereTarget, build: Any, code: int, role: str = "checkpoint") -> str:
    """A template of the build's in the target's folder, marked as its checkpoint of ``code``
    (what Packer made and the build claimed), or with another role."""
    name = target.packer_image_name(build, target.pipeline, code)
    packer_clone(target, name)
    target.claim_images(build, {"": name}, code)
    if role != "checkpoint":
        vm = _as_vm(target, name)
        target._mark(build, vm, role)
        vm.MarkAsTemplate()
    return name


def folder_names(target: VsphereTarget) -> set[str]:
    return {vm.name for vm in target.folder().childEntity}


def test_a_checkpoint_copy_that_stalls_is_cancelled_and_destroyed_and_a_retry_copies_again(
    build: Any, tmp_path: Path, vsphere_conn: tuple[str, int]
) -> None:
    """A copy that outlasts its bound (the simulator's clone stalls as a copy of a large disk does,
    tests/servers/vcsim.py stall_clone) is cancelled, and the VM it made, which vCenter refuses to
    destroy while the copy runs, is destroyed once the task has ended: nothing is left that no
    record names, and the source's template is untouched. The next attempt copies it whole."""
    from airflow_provider_imagebuild.clouds import vsphere as clouds
    from tests.servers.vcsim import stall_clone

    target = make_target("vs-pipe")
    source = checkpoint_of(target, build, 10)
    new = another_build(tmp_path)
    name = target.vm_name(new, "checkpoint", 10)
    before = folder_names(target)
    stall_clone(*vsphere_conn, name)
    with pytest.MonkeyPatch.context() as bound:
        bound.setattr(clouds, "TASK_TIMEOUT_S", 1)
        with pytest.raises(TargetError, match=rf"copy {source} to {name}: not done after 1 s"):
            target.adopt_checkpoint(new, build, Checkpoint(10, source))
    assert target._vm(name) is None and folder_names(target) == before
    assert target.owns_image(build, source)

    adopted = target.adopt_checkpoint(new, build, Checkpoint(10, source))
    assert adopted["checkpoint_image"] == name and target.owns_image(new, name)
    assert target.discard(new, [name]) == [name] and target.discard(build, [source]) == [source]


def test_a_checkpoint_that_is_not_the_named_source_builds_is_refused_and_nothing_is_copied(
    build: Any, tmp_path: Path, vsphere_conn: tuple[str, int]
) -> None:
    """Only a checkpoint template the source build's marks prove its own is copied: another
    build's of the pipeline, another pipeline's build of the same id (another key), the source's
    template of another role (its sealed image), a template no build marked, and a record naming
    another pipeline are refused; so is a copy over a VM of the copy's name that is not the new
    build's, which is left as it is."""
    target = make_target("vs-pipe")
    new = another_build(tmp_path)
    theirs = checkpoint_of(target, another_build(tmp_path), 10)
    twin = dataclasses.replace(build, pipeline="other-pipe")
    elsewhere = make_target("other-pipe")
    foreign = checkpoint_of(elsewhere, twin, 10)
    sealed = checkpoint_of(target, build, 95, role="final")
    subfolder = unique("ib-folder")
    target.folder().CreateFolder(subfolder)  # a folder is no template, whatever its name
    before = folder_names(target)
    for image in (theirs, foreign, sealed, SOURCE_TEMPLATE, "no-such-template", subfolder):
        with pytest.raises(InvalidInput, match=rf"checkpoint_image: {image} is not a checkpoint template of build "):
            target.adopt_checkpoint(new, build, Checkpoint(10, image))
    for image in (f"{subfolder}/{theirs}", "x" * 10_000):  # a path into a subfolder; no vCenter name
        with pytest.raises(InvalidInput, match=r"checkpoint_image: '.*' is not the name of a template in "):
            target.adopt_checkpoint(new, build, Checkpoint(10, image))
    with pytest.raises(InvalidInput, match=r"checkpoint_image: build .* is of pipeline other-pipe, not vs-pipe"):
        target.adopt_checkpoint(new, twin, Checkpoint(10, foreign))
    assert folder_names(target) == before

    mine = checkpoint_of(target, build, 10)
    name = target.vm_name(new, "checkpoint", 10)
    packer_clone(target, name)  # someone's template of the copy's name
    squatter = target._vm(name)._moId
    with pytest.raises(TargetError, match=rf"{name} is in .* and is not build {new.build_id}'s"):
        target.adopt_checkpoint(new, build, Checkpoint(10, mine))
    assert target._vm(name)._moId == squatter and not target.owns_image(new, name)
    later = another_build(tmp_path)
    taken = target.folder().CreateFolder(target.vm_name(later, "checkpoint", 10))  # vCenter refuses the name
    with pytest.raises(TargetError, match=rf"copy {mine}: The name '{taken.name}' already exists"):
        target.adopt_checkpoint(later, build, Checkpoint(10, mine))
    for folder in (taken, target._find(f"{target.folder_path()}/{subfolder}", "folder")):
        target.clients.wait("destroy", folder.Destroy_Task())
    for image, owner in ((theirs, None), (sealed, build), (mine, build)):
        if owner is not None:
            assert target.discard(owner, [image]) == [image]
    for name_ in (theirs, name):
        target.clients.wait("destroy", target._vm(name_).Destroy_Task())
    assert elsewhere.discard(twin, [foreign]) == [foreign]


def test_a_retried_adopt_returns_the_copy_it_made_which_the_new_build_launches_from_and_discards(
    build: Any, tmp_path: Path, vsphere_conn: tuple[str, int]
) -> None:
    """A retried adopt finds the copy the first made (the same template, no second one); the copy
    is the new build's (launched from, deleted by its discard), not the source's, whose template
    stays. A copy of another checkpoint under the name (an earlier attempt started from another
    build) is replaced by a copy of the one asked for."""
    from pyVmomi import vim

    from airflow_provider_imagebuild.targets.vsphere import COPIED_OPTION

    target = make_target("vs-pipe")
    source = checkpoint_of(target, build, 10)
    new = another_build(tmp_path)
    first = target.adopt_checkpoint(new, build, Checkpoint(10, source))
    name = first["checkpoint_image"]
    made = target._vm(name)._moId
    assert target.adopt_checkpoint(new, build, Checkpoint(10, source)) == first
    assert target._vm(name)._moId == made
    vms = [vm for vm in target.folder().childEntity if isinstance(vm, vim.VirtualMachine)]  # not the subfolders
    copies = [vm for vm in vms if target._options(vm).get(COPIED_OPTION, "").startswith(f"{build.build_id}@10:")]
    assert [vm._moId for vm in copies] == [made]
    assert target.owns_image(new, name) and not target.owns_image(build, name) and target.owns_image(build, source)

    host = target.launch(new, Checkpoint(10, name))
    assert target.alive(new, host) and host.image == name
    target.cleanup(new, host)

    other = another_build(tmp_path)
    elder = checkpoint_of(target, other, 10)
    again = target.adopt_checkpoint(new, other, Checkpoint(10, elder))
    assert again["checkpoint_image"] == name and target._vm(name)._moId != made
    assert target._options(target._vm(name))[COPIED_OPTION].startswith(f"{other.build_id}@10:")
    assert target.discard(new, [name]) == [name] and target._vm(name) is None
    assert target.discard(build, [source]) == [source] and target.discard(other, [elder]) == [elder]
