"""The target contract: every build target passes the same scenario, through the operators.

Like the store contract, one suite parametrised over the targets (``TARGETS`` below: add a cloud
there once it is registered in ``targets/registry.py``). Each target runs on what its own tests
use: ``local`` on real debootstrap, tar, ansible-runner over chroot, mkfs.ext4 and qemu-img;
``aws`` on real Packer and EC2/SSM calls to the loopback moto server; ``azure`` and ``gcp`` on real
Packer (a stand-in template) and the clouds' real client libraries against loopback fakes of Azure
Resource Manager and Compute Engine; ``vsphere`` on real Packer (``vsphere-clone``) and pyVmomi
against govmomi's vCenter simulator; ``openstack`` on real Packer (its ``openstack`` builder) and
openstacksdk against the loopback fake of Keystone, Nova, Glance and Neutron. For the clouds the
playbooks run for real over chroot into a Debian tree standing in for the instance (the clouds'
instances run nothing here).

The pipeline's tasks are built by the DAG factory from a spec and executed in plan order with a
task context, as a DAG run does (the Airflow path itself is covered by the ``dag.test()`` tests):

- every milestone fails once on its first try and resumes on the next (failure at any milestone);
- the build host is launched from a checkpoint and recorded; a retry reconnects to it (a real
  playbook failure at 20 included);
- the host is lost; the next milestone relaunches it from the latest checkpoint and replays the
  later Ansible milestones, each replay recorded;
- seal captures the image and keeps the checkpoints for the next build (``reuse:``); publish
  publishes and removes the host; cleanup again is harmless; outputs are recorded throughout;
- reuse (#32): a second build of the unchanged pipeline is delivered without building, reusing
  the first's image; a third, whose milestone 20 changed, starts from its own copy of the first
  build's checkpoint after 15 (``Target.adopt_checkpoint``: proven the first build's, made the
  third's), runs 20 on from there, and its delivery deletes the checkpoint the first build kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_imagebuild.errors import TargetError
from airflow_provider_imagebuild.spec.pipeline import load_spec, parse_spec
from airflow_provider_imagebuild.store import BuildStore, open_store
from airflow_provider_imagebuild.targets import target_for
from airflow_provider_imagebuild.targets.base import Host
from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars
from tests.dags.conftest import ROOT, write
from tests.helpers import task_context

TARGETS = ["local", "aws", "azure", "gcp", "vsphere", "openstack"]
MARK = """
- name: Contract milestone
  hosts: all
  gather_facts: false
  tasks:
    - name: A failure planted on the host fails this milestone once
      ansible.builtin.stat: {path: "/etc/imagebuild-contract/fail-{{ imagebuild_milestone }}"}
      register: planted
    - name: The planted failure is used up
      ansible.builtin.file: {path: "/etc/imagebuild-contract/fail-{{ imagebuild_milestone }}", state: absent}
      when: planted.stat.exists
    - name: Fail as planted
      ansible.builtin.fail: {msg: "planted failure at {{ imagebuild_milestone }}"}
      when: planted.stat.exists
    - name: The marks' directory exists
      ansible.builtin.file: {path: /etc/imagebuild-contract, state: directory, mode: "0755"}
    - name: The milestone leaves its mark
      ansible.builtin.copy:
        dest: "/etc/imagebuild-contract/{{ imagebuild_milestone }}"
        content: "{{ imagebuild_build_id }}\\n"
        mode: "0644"
"""
ANSIBLE = [15, 20, 25]
PLAN = [0, 5, 10, 15, 20, 25, 95, 100]


@dataclass
class Case:
    """One target's side of the scenario: its spec, and how to reach its resources."""

    name: str
    spec_text: str
    lose_host: Callable[[Host], None]
    host_alive: Callable[[Host], bool]
    image_exists: Callable[[str], bool]
    host_root: Callable[[Host], Path]  # where the host's files are, to plant a failure and read marks


def _milestones(first: list[str]) -> str:
    lines = [*first]
    lines += [f"  {code}: {{action: ansible, playbook: mark.yml}}" for code in ANSIBLE]
    lines += ["  95: {action: seal}", "  100: {action: publish}"]
    return "\n".join(lines)


def local_case(tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    spec = f"""pipeline: contract-local
cloud: local
image_type: base
store: sqlite:///{tmp_path}/state.db
reuse: {{}}
checkpoints: [10, 15]
target:
  work_dir: {tmp_path}/work
  catalog: {tmp_path}/catalog
  keep_checkpoints: [10]
  # The contract is about hosts, checkpoints and replays; booting is proven by test_local_boot.py
  # and test_local_pipeline.py (mark.yml makes no bootable green image).
  boot: {{green_image: false, before_publish: false}}
milestones:
{_milestones(["  5: {action: bootstrap}", "  10: {action: ansible, playbook: mark.yml}"])}
"""
    return Case(
        "local",
        spec,
        lose_host=lambda host: shutil.rmtree(host.id),
        host_alive=lambda host: Path(host.id, "etc/os-release").exists(),
        image_exists=lambda image: Path(image).is_file(),
        host_root=lambda host: Path(host.id),
    )


def aws_case(tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    from tests.servers.aws_sample import CONN_ID, moto_connection

    moto_url = request.getfixturevalue("moto_url")
    ec2 = request.getfixturevalue("ec2")
    root = request.getfixturevalue("build_host_root")
    request.getfixturevalue("monkeypatch").setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", moto_connection(moto_url))
    template = ROOT / "dags/packer/rhel8.pkr.hcl"
    packer = "{{action: packer, template: {t}, only: [amazon-ebs.{src}], vars: {{communicator: none}}}}"
    spec = f"""pipeline: contract-aws
cloud: aws
image_type: base
store: sqlite:///{tmp_path}/state.db
reuse: {{}}
checkpoints: [15]
target:
  aws_conn_id: {CONN_ID}
  region: us-east-1
  source_image: {request.getfixturevalue("base_ami")}
  publish_regions: [us-east-1, eu-west-1]
  keep_checkpoints: [5, 10]
  connection: {chroot_host_vars(root)}
milestones:
{_milestones([f"  5: {packer.format(t=template, src='kickstart')}", f"  10: {packer.format(t=template, src='green')}"])}
"""

    def state(host: Host) -> str:
        found = ec2.describe_instances(InstanceIds=[host.id])["Reservations"][0]["Instances"][0]
        return str(found["State"]["Name"])

    def image_exists(image: str) -> bool:
        return bool(ec2.describe_images(Filters=[{"Name": "image-id", "Values": [image]}])["Images"])

    return Case(
        "aws",
        spec,
        lose_host=lambda host: ec2.terminate_instances(InstanceIds=[host.id]),
        host_alive=lambda host: state(host) in ("pending", "running"),
        image_exists=image_exists,
        host_root=lambda host: root,
    )


def azure_case(tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    """Resource Manager is the loopback fake (tests/servers/azure_arm.py) driven by the real SDKs;
    5 and 10 run real Packer on the stand-in template (azure-arm cannot reach a loopback endpoint)."""
    from tests.conftest import AZURE_CONN_ID, AZURE_GROUP
    from tests.servers.azure_sample import STANDIN

    fake = request.getfixturevalue("fake_arm")
    root = request.getfixturevalue("build_host_root")
    packer = "{{action: packer, template: {t}, only: [null.{src}], vars: {{arm_endpoint: '{url}'}}}}"
    spec = f"""pipeline: contract-azure
cloud: azure
image_type: base
store: sqlite:///{tmp_path}/state.db
reuse: {{}}
checkpoints: [15]
target:
  azure_conn_id: {AZURE_CONN_ID}
  resource_group: {AZURE_GROUP}
  location: westeurope
  source_image: "RedHat:RHEL:8-lvm-gen2:latest"
  network: vnet-build/builders
  ssh_public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIContractKey contract
  gallery: golden
  gallery_image: rhel8-web
  keep_checkpoints: [5, 10]
  connection: {chroot_host_vars(root)}
milestones:
{_milestones([f"  5: {packer.format(t=STANDIN, src='kickstart', url=fake.url)}",
              f"  10: {packer.format(t=STANDIN, src='green', url=fake.url)}"])}
"""  # fmt: skip

    def running(host: Host) -> bool:
        vm = fake.get(host.id)
        statuses = {s["code"] for s in (vm or {}).get("properties", {}).get("instanceView", {}).get("statuses", [])}
        return "PowerState/running" in statuses

    return Case(
        "azure",
        spec,
        lose_host=lambda host: fake.remove(host.id),
        host_alive=running,
        image_exists=lambda image: fake.get(image) is not None,
        host_root=lambda host: root,
    )


def gcp_case(tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    """Compute Engine is the loopback fake (tests/servers/gce.py, request bodies checked against
    the discovery document) driven by the real client; 5 and 10 run real Packer on the stand-in."""
    from tests.conftest import GCP_CONN_ID
    from tests.servers.gce import PROJECT, ZONE
    from tests.servers.gcp_sample import STANDIN

    fake = request.getfixturevalue("fake_gce")
    root = request.getfixturevalue("build_host_root")
    endpoint = f"{fake.url}/compute/v1/"
    packer = "{{action: packer, template: {t}, only: [null.{src}], vars: {{compute_endpoint: '{url}'}}}}"
    spec = f"""pipeline: contract-gcp
cloud: gcp
image_type: base
store: sqlite:///{tmp_path}/state.db
reuse: {{}}
checkpoints: [15]
target:
  gcp_conn_id: {GCP_CONN_ID}
  project: {PROJECT}
  zone: {ZONE}
  source_image_family: rhel-8
  source_image_project: {PROJECT}
  image_family: contract
  keep_checkpoints: [5, 10]
  connection: {chroot_host_vars(root)}
milestones:
{_milestones([f"  5: {packer.format(t=STANDIN, src='kickstart', url=endpoint)}",
              f"  10: {packer.format(t=STANDIN, src='green', url=endpoint)}"])}
"""  # fmt: skip

    def name(image_or_host: str) -> str:
        return image_or_host.rstrip("/").rsplit("/", 1)[-1]

    return Case(
        "gcp",
        spec,
        lose_host=lambda host: fake.remove_instance(name(host.id)),
        host_alive=lambda host: fake.instances.get(name(host.id), {}).get("status") == "RUNNING",
        image_exists=lambda image: name(image) in fake.images,
        host_root=lambda host: root,
    )


def vsphere_case(tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    """govmomi's vCenter simulator (tests/servers/vcsim.py) with real pyVmomi and the vAPI; 5 and
    10 run the shipped template with Packer's real vsphere-clone builder against it."""
    from tests.conftest import VSPHERE_CONN_ID
    from tests.servers.vcsim import CLUSTER, DATACENTER, DATASTORE, LIBRARY, SOURCE_TEMPLATE

    request.getfixturevalue("vsphere_library")
    root = request.getfixturevalue("build_host_root")
    template = ROOT / "dags/packer/rhel8-vsphere.pkr.hcl"
    packer = "{{action: packer, template: {t}, only: [vsphere-clone.{src}]}}"
    spec = f"""pipeline: contract-vsphere-{tmp_path.name[-12:]}
cloud: vsphere
image_type: base
store: sqlite:///{tmp_path}/state.db
reuse: {{}}
checkpoints: [15]
target:
  vsphere_conn_id: {VSPHERE_CONN_ID}
  datacenter: {DATACENTER}
  cluster: {CLUSTER}
  datastore: {DATASTORE}
  template: {SOURCE_TEMPLATE}
  content_library: {LIBRARY}
  keep_checkpoints: [5, 10]
  connection: {chroot_host_vars(root)}
milestones:
{_milestones([f"  5: {packer.format(t=template, src='kickstart')}", f"  10: {packer.format(t=template, src='green')}"])}
"""
    target: Any = None

    def vsphere() -> Any:
        nonlocal target
        if target is None:
            settings = {**yaml.safe_load(spec)["target"], "keep_checkpoints": []}
            probe = parse_spec({"pipeline": "probe", "cloud": "vsphere", "image_type": "base", "target": settings})
            target = target_for("vsphere", probe.target, pipeline="probe", image_type="base")
        return target

    def lose(host: Host) -> None:
        vm = vsphere()._by_uuid(host.id)
        vsphere().clients.wait("power off", vm.PowerOffVM_Task())
        vsphere().clients.wait("destroy", vm.Destroy_Task())

    def alive(host: Host) -> bool:
        vm = vsphere()._by_uuid(host.id)
        return vm is not None and vm.runtime.powerState == "poweredOn"

    return Case(
        "vsphere",
        spec,
        lose_host=lose,
        host_alive=alive,
        image_exists=lambda image: vsphere()._vm(image) is not None,
        host_root=lambda host: root,
    )


def openstack_case(tmp_path: Path, request: pytest.FixtureRequest) -> Case:
    """Keystone, Nova, Glance and Neutron are the loopback fake (tests/servers/openstack.py) driven
    by openstacksdk; 5 and 10 run the shipped template with Packer's real openstack builder
    (gophercloud) against the same fake, communicator none."""
    from tests.conftest import OPENSTACK_CONN_ID

    fake = request.getfixturevalue("fake_os")
    root = request.getfixturevalue("build_host_root")
    source = fake.add_image(f"rhel-8-{tmp_path.name[-12:]}", b"rhel 8 base")
    template = ROOT / "dags/packer/rhel8-openstack.pkr.hcl"
    packer = "{{action: packer, template: {t}, only: [openstack.{src}], vars: {{communicator: none}}}}"
    spec = f"""pipeline: contract-openstack-{tmp_path.name[-12:]}
cloud: openstack
image_type: base
store: sqlite:///{tmp_path}/state.db
reuse: {{}}
checkpoints: [15]
target:
  openstack_conn_id: {OPENSTACK_CONN_ID}
  flavor: m1.small
  network: build-net
  source_image: {fake.images[source]["name"]}
  visibility: shared
  share_with_projects: [0123456789abcdef0123456789abcdef]
  properties: {{os_distro: rhel, os_version: "8"}}
  keep_checkpoints: [5, 10]
  connection: {chroot_host_vars(root)}
milestones:
{_milestones([f"  5: {packer.format(t=template, src='kickstart')}", f"  10: {packer.format(t=template, src='green')}"])}
"""
    return Case(
        "openstack",
        spec,
        lose_host=lambda host: fake.remove_server(host.id),
        host_alive=lambda host: fake.servers.get(host.id, {}).get("status") == "ACTIVE",
        image_exists=lambda image: image in fake.images,
        host_root=lambda host: root,
    )


class Pipeline:
    """The pipeline's tasks from the DAG factory, run in plan order with a task context."""

    def __init__(self, case: Case, tmp_path: Path, build_id: str = "contract-1", spec_text: str = "") -> None:
        from airflow_provider_imagebuild.dag_factory import build_dag

        folder = tmp_path / "pipelines"
        write(folder / "mark.yml", MARK)
        spec = load_spec(write(folder / f"{build_id}.yaml", spec_text or case.spec_text))
        self.build_id = build_id
        self.dag = build_dag(spec, folder)
        self.tasks = {task.state: task for task in self.dag.tasks}  # type: ignore[attr-defined]
        assert sorted(self.tasks) == PLAN
        self.store: BuildStore = open_store(str(spec.store))
        self.spec = spec
        self.tries: dict[int, int] = {}

    def run(self, code: int, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> None:
        """One try of a milestone's task (``fail``: the drill switch fails it after its lease)."""
        monkeypatch.setenv("IMAGEBUILD_FAIL_AT", str(code) if fail else "")
        self.tries[code] = self.tries.get(code, 0) + 1
        task = self.tasks[code]
        task.execute(task_context(self.build_id, task.task_id, self.tries[code]))

    def host(self) -> Host:
        host = Host.from_metadata(self.store.get(self.build_id).metadata)
        assert host is not None, "no build host recorded"
        return host


@pytest.fixture(params=TARGETS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    cases = {"local": local_case, "aws": aws_case, "azure": azure_case, "gcp": gcp_case, "vsphere": vsphere_case,
             "openstack": openstack_case}  # fmt: skip
    return cases[request.param](tmp_path, request)


@pytest.mark.slow
def test_target_contract(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = Pipeline(case, tmp_path)
    store, run = pipeline.store, pipeline.run

    def resumable(code: int) -> None:
        """A failure at this milestone (first try) is recorded, and the next try resumes it."""
        with pytest.raises(AirflowFailException, match="failure injected"):
            run(code, monkeypatch, fail=True)
        rec = store.get("contract-1")
        assert (rec.current_state, rec.status, rec.lease) == (code, "failed", None)
        run(code, monkeypatch)
        rec = store.get("contract-1")
        assert rec.milestones[code].attempt == 2 and rec.next_state == next((c for c in PLAN if c > code), None)

    run(0, monkeypatch)
    for code in (5, 10, 15):
        resumable(code)
    rec = store.get("contract-1")
    host = pipeline.host()
    assert case.host_alive(host)
    green = str(rec.milestones[10].outputs["checkpoint_image"])
    assert case.image_exists(green) and case.image_exists(str(rec.milestones[15].outputs["checkpoint_image"]))
    if case.name != "local":  # the local host is made by bootstrap (5); a cloud's is launched from the green image
        assert host.image == green and host.checkpoint == 10
    assert rec.milestones[15].outputs["ansible_failed"] == 0

    # A real failure in a playbook at 20: the retry reconnects to the same host.
    (case.host_root(host) / "etc/imagebuild-contract").mkdir(parents=True, exist_ok=True)
    (case.host_root(host) / "etc/imagebuild-contract/fail-20").write_text("")
    with pytest.raises(AirflowException, match="planted failure at 20"):
        run(20, monkeypatch)
    run(20, monkeypatch)
    assert pipeline.host().id == host.id
    resumable(25)
    assert (case.host_root(host) / "etc/imagebuild-contract/25").read_text() == "contract-1\n"

    # The host is lost: seal relaunches it from the latest checkpoint (after 15) and replays 20, 25.
    case.lose_host(host)
    resumable(95)
    rec = store.get("contract-1")
    replays = [(a.state, a.owner.split("/")[2]) for a in rec.attempts if a.kind == "replay"]
    assert replays == [(20, "s095_seal"), (25, "s095_seal")], replays
    relaunched = pipeline.host()
    assert relaunched.checkpoint == 15 and relaunched.synced >= 25
    assert relaunched.image == rec.milestones[15].outputs["checkpoint_image"]
    assert case.name == "local" or relaunched.id != host.id  # a new instance (the local tree keeps its path)
    for code in (15, 20, 25):
        assert (case.host_root(relaunched) / f"etc/imagebuild-contract/{code}").is_file()
    final = str(rec.milestones[95].outputs["image_id"])
    assert case.image_exists(final)
    assert rec.milestones[95].outputs["discarded_checkpoints"] == []  # kept for the next build (reuse:)
    kept = str(rec.milestones[15].outputs["checkpoint_image"])
    assert case.image_exists(kept)

    resumable(100)
    rec = store.get("contract-1")
    assert rec.delivered and rec.milestones[100].outputs["image_id"] == final
    assert not case.host_alive(relaunched) and rec.metadata["host_released"] == relaunched.id
    target = target_for(case.name, pipeline.spec.target, pipeline=pipeline.spec.pipeline, image_type="base")
    target.cleanup(rec, relaunched)  # again: harmless
    runs = [a.state for a in rec.attempts if a.kind == "run" and a.status == "completed"]
    assert sorted(runs) == sorted(set(runs)), "a completed milestone ran twice"
    reuse_scenario(case, tmp_path, monkeypatch, pipeline)


def reuse_scenario(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: Pipeline) -> None:
    """Two more builds of the pipeline after the first was delivered (#32)."""
    store = first.store
    rec1 = store.get("contract-1")
    kept = str(rec1.milestones[15].outputs["checkpoint_image"])
    green = str(rec1.milestones[10].outputs["checkpoint_image"])

    # Nothing changed: delivered at once, the first build's image, no host, nothing run.
    second = Pipeline(case, tmp_path, "contract-2")
    for code in PLAN:
        second.run(code, monkeypatch)
    rec2 = store.get("contract-2")
    assert rec2.delivered and rec2.milestones[100].outputs["image_id"] == rec1.milestones[100].outputs["image_id"]
    assert [(a.state, a.kind, a.reused_from) for a in rec2.attempts if a.state] == [
        (c, "reused", {"build_id": "contract-1", "state": c}) for c in PLAN[1:]
    ]
    assert "host_id" not in rec2.metadata and "checkpoint_image" not in rec2.merged_outputs()

    # Milestone 20 changed: 5, 10 and 15 are taken, the host starts from the third build's own copy
    # of the checkpoint after 15, and 20, 25, 95 and 100 run.
    changed = case.spec_text.replace("  20: {action: ansible, playbook: mark.yml}",
                                     "  20: {action: ansible, playbook: mark.yml, extravars: {night: 3}}")  # fmt: skip
    assert changed != case.spec_text
    third = Pipeline(case, tmp_path, "contract-3", changed)
    for code in (0, 5, 10, 15):
        third.run(code, monkeypatch)
    rec3 = store.get("contract-3")
    assert [(a.state, a.kind, a.reused_from) for a in rec3.attempts if a.state] == [
        (c, "reused", {"build_id": "contract-1", "state": c}) for c in (5, 10, 15)
    ]
    copy = str(rec3.milestones[15].outputs["checkpoint_image"])
    target = target_for(case.name, third.spec.target, pipeline=third.spec.pipeline, image_type="base")
    assert case.image_exists(copy) and target.owns_image(rec3, copy) and not target.owns_image(rec1, copy)
    assert "checkpoint_image" not in rec3.milestones[10].outputs  # the first build's green image is not the third's
    if case.name == "local":  # the tree trusts the first build's key (milestone 10 wrote it): it is the third's too
        assert target.ssh_public_key(rec3) == target.ssh_public_key(rec1)  # type: ignore[attr-defined]
    third.run(20, monkeypatch)
    host = third.host()
    assert (host.image, host.checkpoint) == (copy, 15)
    assert (case.host_root(host) / "etc/imagebuild-contract/15").is_file()  # the checkpoint's work is there
    for code in (25, 95, 100):
        third.run(code, monkeypatch)
    rec3 = store.get("contract-3")
    assert rec3.delivered and [a.kind for a in rec3.attempts if a.state >= 20] == ["run"] * 4
    # The third's delivery deleted the checkpoint the first kept for reuse (not the ones kept for a redo).
    rec1 = store.get("contract-1")
    assert f"15@{rec1.milestones[15].attempt}" in rec1.metadata["checkpoints_discarded"].split(",")
    assert copy == kept or not case.image_exists(kept)
    assert case.image_exists(green) and case.image_exists(copy)


# -- the launch test (targets/launch.py) ------------------------------------------------------------
# Each cloud's launch test against its fake: the cloud calls are real (launch from the sealed image,
# describe, console output, delete, the leftover search), the guest is the session's stand-in VM
# (tests/servers/guest.py), reached through target.boot.ssh_address. The local target's launch test
# boots the sealed image itself in qemu: test_local_pipeline.py proves it on a real sealed image (a
# lost worker's VM killed first, another build's left alone, nothing left running), and
# test_local_boot.py a sealed image that cannot boot. A case is a row of LAUNCH_CASES: add a cloud
# there once its target implements the launch test hooks.
FAILING_VERIFICATION = """
- name: A verification that fails while a planted file exists (on the controller)
  hosts: all
  gather_facts: false
  tasks:
    - name: Fail as planted
      ansible.builtin.fail: {msg: "planted verification failure"}
      when: "'PLANTED' is exists"
"""


@dataclass
class LaunchCase:
    """One target's side of the launch test contract."""

    name: str  # the cloud
    target: dict[str, Any]  # the spec's target settings (the stand-in's key and boot settings are added)
    sealed_image: Callable[[Any, Any], str]  # (target, build) -> an image of the build's, as its seal records
    live: Callable[[Any, Any], list[str]]  # (target, build) -> the build's test instances that still exist
    leftover: Callable[[Any, Any, str], str]  # (target, build, image) -> a lost worker's test instance
    foreign: Callable[[Any, Any, str], Callable[[], bool]]  # the same marks, another owner: "still there?"
    console: bool  # the fake serves the stand-in's serial log as console output (the login prompt is read)
    timeout: int = 180  # target.boot.timeout: a cloud's instance is up at once, the stand-in runs already
    # The cloud's id of the one test instance is its name, derived from the build (an ARM id, a
    # selfLink): the instance launched after the leftover was deleted has the leftover's id.
    names_reused: bool = False
    boot: dict[str, Any] = field(default_factory=dict)  # more target.boot settings


def aws_launch(tmp_path: Path, request: pytest.FixtureRequest, guest: Any) -> LaunchCase:
    """moto: the sealed AMI is CreateImage of an instance with the build's tags; another account's
    instance with the build's very tags (STS AssumeRole into it) is never seen, never terminated."""
    import boto3

    from tests.servers.aws_sample import CONN_ID, moto_connection

    moto_url = request.getfixturevalue("moto_url")
    ec2 = request.getfixturevalue("ec2")
    base_ami = request.getfixturevalue("base_ami")
    request.getfixturevalue("monkeypatch").setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", moto_connection(moto_url))

    def sealed(target: Any, build: Any) -> str:
        instance = ec2.run_instances(ImageId=base_ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        tags = [{"Key": k, "Value": v} for k, v in target.build_tags(build, 95, "final").items()]
        image = ec2.create_image(InstanceId=instance, Name=target.image_name(build),
                                 TagSpecifications=[{"ResourceType": "image", "Tags": tags}])["ImageId"]  # fmt: skip
        ec2.terminate_instances(InstanceIds=[instance])
        return str(image)

    def live(target: Any, build: Any) -> list[str]:
        states = ["pending", "running", "stopping", "stopped"]
        filters = [{"Name": "tag:BuildId", "Values": [build.build_id]}, {"Name": "tag:Role", "Values": ["launch-test"]},
                   {"Name": "instance-state-name", "Values": states}]  # fmt: skip
        found = ec2.describe_instances(Filters=filters)["Reservations"]
        return [i["InstanceId"] for r in found for i in r["Instances"]]

    def foreign(target: Any, build: Any, image: str) -> Callable[[], bool]:
        sts = boto3.client("sts", region_name="us-east-1", endpoint_url=moto_url)
        role = "arn:aws:iam::210987654321:role/partner"
        creds = sts.assume_role(RoleArn=role, RoleSessionName="partner")["Credentials"]
        theirs = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_url,
                              aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                              aws_session_token=creds["SessionToken"])  # fmt: skip
        tags = [{"Key": k, "Value": v} for k, v in target.test_instance_tags(build).items()]
        made = theirs.run_instances(ImageId=base_ami, MinCount=1, MaxCount=1,
                                    TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])  # fmt: skip
        instance = made["Instances"][0]["InstanceId"]
        assert instance not in live(target, build)  # EC2 shows an account its own instances only

        def running() -> bool:
            found = theirs.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
            return bool(found["State"]["Name"] == "running")

        return running

    return LaunchCase(
        "aws",
        {"aws_conn_id": CONN_ID, "region": "us-east-1", "source_image": base_ami},
        sealed_image=sealed,
        live=live,
        leftover=lambda target, build, image: target.launch_test_instance(build, image),
        foreign=foreign,
        console=False,  # moto's GetConsoleOutput is a canned text: read, without a login prompt
    )


def openstack_launch(tmp_path: Path, request: pytest.FixtureRequest, guest: Any) -> LaunchCase:
    """The OpenStack fake serves the stand-in's serial log as every server's console output; a
    server with the build's marks in another project is never deleted."""
    from tests.conftest import OPENSTACK_CONN_ID
    from tests.servers.openstack import OTHER_PROJECT_ID, PROJECT_ID

    fake = request.getfixturevalue("fake_os")
    request.getfixturevalue("monkeypatch").setattr(fake, "console_log", guest.console)

    def sealed(target: Any, build: Any) -> str:
        return str(fake.add_image(target.names(build).final(), b"sealed image", **target.marks(build, "final")))

    def live(target: Any, build: Any) -> list[str]:
        return [sid for sid, s in fake.servers.items() if s["tenant_id"] == PROJECT_ID
                and s["metadata"].get("imagebuild_key") == target.key(build)
                and s["metadata"].get("imagebuild_role") == "launch-test"]  # fmt: skip

    def foreign(target: Any, build: Any, image: str) -> Callable[[], bool]:
        theirs = fake.add_server(
            target.names(build).test_server(), target.marks(build, "launch-test"), OTHER_PROJECT_ID
        )
        return lambda: theirs in fake.servers

    return LaunchCase(
        "openstack",
        {
            "openstack_conn_id": OPENSTACK_CONN_ID,
            "flavor": "m1.small",
            "network": "build-net",
            "source_image": "rhel-8",
        },
        sealed_image=sealed,
        live=live,
        leftover=lambda target, build, image: target.launch_test_instance(build, image),
        foreign=foreign,
        console=True,
    )


def azure_launch(tmp_path: Path, request: pytest.FixtureRequest, guest: Any) -> LaunchCase:
    """The Resource Manager fake serves the stand-in's serial log as every VM's boot diagnostics log;
    a VM of the same name and the build's very tags in another resource group is never deleted."""
    from tests.conftest import AZURE_CONN_ID, AZURE_GROUP
    from tests.servers.azure_arm import SUBSCRIPTION

    fake = request.getfixturevalue("fake_arm")
    request.getfixturevalue("monkeypatch").setattr(fake, "guest_console", guest.console)

    def sealed(target: Any, build: Any) -> str:
        image = target.resource_id("images", target.names(build).final_image())
        fake.add(image, {"location": "westeurope", "tags": target.build_tags(build, 95, "final"),
                         "properties": {"hyperVGeneration": "V2"}})  # fmt: skip
        return image

    def live(target: Any, build: Any) -> list[str]:
        return [vm for vm in fake.ids("Microsoft.Compute/virtualMachines")
                if f"/resourceGroups/{AZURE_GROUP}/" in vm and (fake.get(vm) or {})["tags"].get("Role") == "launch-test"
                and fake.get(vm)["tags"].get("BuildId") == build.build_id]  # fmt: skip

    def foreign(target: Any, build: Any, image: str) -> Callable[[], bool]:
        theirs = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-partner/providers/Microsoft.Compute"
                  f"/virtualMachines/{target.names(build).test_host()}")  # fmt: skip
        fake.add(theirs, {"location": "westeurope", "tags": target.build_tags(build, 97, "launch-test")})
        return lambda: fake.get(theirs) is not None

    return LaunchCase(
        "azure",
        {
            "azure_conn_id": AZURE_CONN_ID,
            "resource_group": AZURE_GROUP,
            "location": "westeurope",
            "network": "vnet-build/builders",
            "gallery": "golden",
            "gallery_image": "rhel8-web",
            "ssh_public_key": guest.key.with_suffix(".pub").read_text().strip(),
        },
        sealed_image=sealed,
        live=live,
        leftover=lambda target, build, image: target.launch_test_instance(build, image),
        foreign=foreign,
        console=True,
        names_reused=True,
    )


def gcp_launch(tmp_path: Path, request: pytest.FixtureRequest, guest: Any) -> LaunchCase:
    """The Compute Engine fake serves the stand-in's serial log as every instance's serial port 1.
    The fake holds one project and zone, so the foreign instance carries the build's very labels
    under another name (someone's copy): a leftover is only the build's own instance name."""
    from tests.conftest import GCP_CONN_ID
    from tests.servers.gce import ZONE

    fake = request.getfixturevalue("fake_gce")
    request.getfixturevalue("monkeypatch").setattr(fake, "guest_console", guest.console)

    def sealed(target: Any, build: Any) -> str:
        name = target.names.final_image(build)
        return str(fake.add_image(name, target.build_labels(build, 95, "final"), target.names.family())["selfLink"])

    def live(target: Any, build: Any) -> list[str]:
        return [i["selfLink"] for i in fake.instances.values()
                if i["labels"].get("imagebuild-key") == target.key(build)
                and i["labels"].get("imagebuild-role") == "launch-test" and i["name"].endswith("-lt")]  # fmt: skip

    def foreign(target: Any, build: Any, image: str) -> Callable[[], bool]:
        name = f"partner-copy-{target.key(build)[:10]}"
        labels = target.build_labels(build, 97, "launch-test")
        fake.instances[name] = {"name": name, "labels": labels, "status": "RUNNING", "disks": [{"autoDelete": True}],
                                "selfLink": f"{fake.base}/zones/{ZONE}/instances/{name}"}  # fmt: skip
        return lambda: name in fake.instances

    return LaunchCase(
        "gcp",
        {
            "gcp_conn_id": GCP_CONN_ID,
            "zone": ZONE,
            "image_family": "launch-contract",
            "ssh_public_key": guest.key.with_suffix(".pub").read_text().strip(),
        },
        sealed_image=sealed,
        live=live,
        leftover=lambda target, build, image: target.launch_test_instance(build, image),
        foreign=foreign,
        console=True,
        names_reused=True,
    )


def vsphere_launch(tmp_path: Path, request: pytest.FixtureRequest, guest: Any) -> LaunchCase:
    """govmomi's simulator (which reports a guest address once a VM is powered on): the sealed
    template is cloned from its source VM as the seal clones; a VM of the same name with the build's
    marks in another folder is never destroyed. vSphere has no console output to read."""
    from tests.conftest import VSPHERE_CONN_ID
    from tests.servers.vcsim import CLUSTER, DATACENTER, DATASTORE, LIBRARY, SOURCE_TEMPLATE

    request.getfixturevalue("vsphere_library")

    def sealed(target: Any, build: Any) -> str:
        name = target.vm_name(build, "final")
        target._clone(build, target._vm(SOURCE_TEMPLATE), name, template=True, role="final", seal="contract")
        return str(name)

    def live(target: Any, build: Any) -> list[str]:
        vm = target._vm(target.vm_name(build, "test"))
        return [str(vm.config.instanceUuid)] if vm is not None else []

    def foreign(target: Any, build: Any, image: str) -> Callable[[], bool]:
        from pyVmomi import vim

        folder = target.folder().CreateFolder(f"partner-{tmp_path.name[-12:]}")
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=target.pool(), datastore=target.datastore()))
        task = target._vm(SOURCE_TEMPLATE).CloneVM_Task(folder=folder, name=target.vm_name(build, "test"), spec=spec)
        theirs = target.clients.wait("clone", task)
        target._mark(build, theirs, "launch-test")
        uuid = str(theirs.config.instanceUuid)
        return lambda: target._by_uuid(uuid) is not None

    return LaunchCase(
        "vsphere",
        {
            "vsphere_conn_id": VSPHERE_CONN_ID,
            "datacenter": DATACENTER,
            "cluster": CLUSTER,
            "datastore": DATASTORE,
            "content_library": LIBRARY,
        },
        sealed_image=sealed,
        live=live,
        leftover=lambda target, build, image: target.launch_test_instance(build, image),
        foreign=foreign,
        console=False,
        names_reused=True,  # the simulator derives a VM's instance UUID from its name (vCenter does not)
    )


LAUNCH_CASES: dict[str, Callable[[Path, pytest.FixtureRequest, Any], LaunchCase]] = {
    "aws": aws_launch,
    "azure": azure_launch,
    "gcp": gcp_launch,
    "vsphere": vsphere_launch,
    "openstack": openstack_launch,
}


class LaunchRun:
    """A pipeline of seal (95, recorded as the seal records it), launch test (97) and publish (100)."""

    def __init__(self, case: LaunchCase, tmp_path: Path, guest: Any, playbook: str | None = None) -> None:
        from airflow_provider_imagebuild.dag_factory import build_dag

        folder = tmp_path / "pipelines"
        self.planted = folder / "fail-verification"
        self.planted.parent.mkdir(parents=True, exist_ok=True)
        self.planted.write_text("")
        write(folder / "failing.yml", FAILING_VERIFICATION.replace("PLANTED", str(self.planted)))
        boot = guest.boot_settings(case.timeout, **case.boot, **({"playbook": playbook} if playbook else {}))
        spec_text = yaml.safe_dump({
            "pipeline": f"launch-{case.name}-{tmp_path.name[-12:]}".replace("_", "-"),
            "cloud": case.name,
            "image_type": "base",
            "store": f"sqlite:///{tmp_path}/state.db",
            "target": {**case.target, "ssh_private_key_file": str(guest.key), "boot": boot},
            "milestones": {95: {"action": "seal"}, 97: {"action": "launch_test"}, 100: {"action": "publish"}},
        })  # fmt: skip
        spec = load_spec(write(folder / "launch.yaml", spec_text))
        self.tasks = {task.state: task for task in build_dag(spec, folder).tasks}  # type: ignore[attr-defined]
        self.store: BuildStore = open_store(str(spec.store))
        self.target = target_for(case.name, spec.target, pipeline=spec.pipeline, image_type="base")
        self.build = self.store.create_build("launch-1", pipeline=spec.pipeline, cloud=case.name, image_type="base",
                                             plan=[0, 95, 97, 100])  # fmt: skip
        self.image = case.sealed_image(self.target, self.build)
        lease = self.store.begin("launch-1", 95, owner="test")
        self.store.complete("launch-1", 95, token=lease.token, outputs={"image_id": self.image})

    def run(self, code: int) -> None:
        self.tasks[code].execute(task_context("launch-1", self.tasks[code].task_id))


@pytest.fixture(params=list(LAUNCH_CASES))
def launch_case(request: pytest.FixtureRequest, tmp_path: Path, standin_guest: Any) -> LaunchCase:
    return LAUNCH_CASES[request.param](tmp_path, request, standin_guest)


def test_the_launch_test_proves_the_sealed_image_and_cleans_up(
    launch_case: LaunchCase, tmp_path: Path, standin_guest: Any
) -> None:
    """A lost worker's test instance of the build is removed first, one instance is launched from
    the sealed image and checked over SSH (sudo, network, the shipped verification playbook), and
    deleted; another owner's instance with the build's marks is untouched; publish takes the check."""
    case, run = launch_case, LaunchRun(launch_case, tmp_path, standin_guest)
    leftover = case.leftover(run.target, run.build, run.image)
    theirs_exist = case.foreign(run.target, run.build, run.image)
    assert case.live(run.target, run.build) == [leftover]
    run.run(97)
    outputs = run.store.get("launch-1").milestones[97].outputs
    assert outputs["boot_sealed_passed"] is True and outputs["boot_sealed_image"] == run.image
    assert outputs["boot_sealed_playbook_ok"] > 0 and outputs["boot_sealed_playbook_failed"] == 0
    assert ("boot_sealed_login_prompt_s" in outputs) == case.console
    assert outputs["boot_sealed_firmware"] == case.boot.get("before_publish", "cloud")  # a cloud boots as it does
    instance = outputs["boot_sealed_instance"]
    assert instance != "" and (case.names_reused or instance != leftover)
    assert case.live(run.target, run.build) == []  # the leftover and the test instance are gone
    assert theirs_exist()
    run.run(100)
    assert run.store.get("launch-1").delivered


@pytest.mark.parametrize("cloud", list(LAUNCH_CASES))
def test_a_failed_launch_test_stops_the_build_and_deletes_its_instance(
    cloud: str, request: pytest.FixtureRequest, tmp_path: Path, standin_guest: Any
) -> None:
    """The verification fails: the milestone fails naming the check, the test instance is deleted
    all the same, and publish cannot start. Its retry (once the cause is gone) launches a new test
    instance from the same sealed image: the seal is not redone. The clouds' (their instances are
    the session's stand-in); the local target's, a whole qemu boot, is test_local_boot.py's (a
    sealed image that cannot boot is never published, and no VM is left)."""
    launch_case = LAUNCH_CASES[cloud](tmp_path, request, standin_guest)
    run = LaunchRun(launch_case, tmp_path, standin_guest, playbook="failing.yml")
    with pytest.raises(TargetError, match=r"the verification playbook failing\.yml failed: .*planted verification"):
        run.run(97)
    rec = run.store.get("launch-1")
    assert rec.status == "failed" and "checks: " in str(rec.attempts_at(97)[-1].error)
    assert launch_case.live(run.target, run.build) == []
    with pytest.raises(AirflowFailException, match="cannot start milestone 100"):
        run.run(100)
    run.planted.unlink()
    run.run(97)
    rec = run.store.get("launch-1")
    assert rec.milestones[97].attempt == 2 and rec.milestones[97].outputs["boot_sealed_image"] == run.image
    assert len(rec.attempts_at(95)) == 1 and rec.milestones[95].outputs["image_id"] == run.image
    assert launch_case.live(run.target, run.build) == []
