"""Parking: a milestone that failed for good (its last try, or a failure Airflow does not retry)
parks the build host, records how in the build's metadata, and the next attempt starts it again.

Through the operators the DAG factory makes, on the AWS target against the loopback moto server
(StopInstances / StartInstances), with the playbook running for real over chroot into a Debian
tree standing in for the instance; the target hooks alone for ownership (another build's host is
never stopped) and for the local target (kept as is).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_imagebuild.spec.pipeline import TargetSpec, load_spec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.aws import AwsTarget
from airflow_provider_imagebuild.targets.base import HOST_PARKED, Checkpoint, Host
from airflow_provider_imagebuild.targets.local import LocalTarget
from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars
from tests.dags.conftest import write
from tests.helpers import task_context

PLAYBOOK = """
- name: Park test milestone
  hosts: all
  gather_facts: false
  tasks:
    - name: A planted failure
      ansible.builtin.stat: {path: "/etc/imagebuild-park-fail-{{ imagebuild_milestone }}"}
      register: planted
    - name: Fail as planted
      ansible.builtin.fail: {msg: "planted failure at {{ imagebuild_milestone }}"}
      when: planted.stat.exists
"""


def _state(ec2: Any, instance_id: str) -> str:
    return str(ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"])


class Pipeline:
    """An AWS pipeline (0, 10, 15, 20, 95, 100) whose 10 is recorded as the claimed green image."""

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest, build_id: str, extra: str = "") -> None:
        from airflow_provider_imagebuild.dag_factory import build_dag
        from tests.servers.aws_sample import CONN_ID, moto_connection

        moto_url = request.getfixturevalue("moto_url")
        request.getfixturevalue("monkeypatch").setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", moto_connection(moto_url))
        self.root: Path = request.getfixturevalue("build_host_root")
        folder = tmp_path / "pipelines"
        write(folder / "park.yml", PLAYBOOK)
        text = f"""pipeline: park-aws
cloud: aws
image_type: base
store: sqlite:///{tmp_path}/state.db
target:
  aws_conn_id: {CONN_ID}
  region: us-east-1
  connection: {chroot_host_vars(self.root)}
{extra}milestones:
  10: {{action: noop}}
  15: {{action: ansible, playbook: park.yml, retries: 1}}
  20: {{action: ansible, playbook: park.yml, retries: 1}}
  95: {{action: seal}}
  100: {{action: publish}}
"""
        spec = load_spec(write(folder / "park.yaml", text))
        self.tasks: dict[int, Any] = {t.state: t for t in build_dag(spec, folder).tasks}  # type: ignore[union-attr]
        self.url = str(spec.store)
        self.store = open_store(self.url)
        self.build_id = build_id
        self.tasks[0].execute(task_context(build_id, self.tasks[0].task_id))
        ec2, base_ami = request.getfixturevalue("ec2"), request.getfixturevalue("base_ami")
        settings: Any = spec.target
        target = AwsTarget(settings, pipeline="park-aws", image_type="base",
                           clients=request.getfixturevalue("aws_clients"), region="us-east-1")  # fmt: skip
        build = self.store.get(build_id)
        green = str(ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=f"g-{build_id}")["ImageId"])
        target.claim_images(build, {"us-east-1": green}, 10)
        lease = self.store.begin(build_id, 10, owner="test")
        self.store.complete(build_id, 10, token=lease.token, outputs={"checkpoint_image": green})

    def run(self, code: int, try_number: int) -> None:
        task = self.tasks[code]
        task.execute(task_context(self.build_id, task.task_id, try_number))

    def plant(self, code: int) -> Path:
        planted = self.root / f"etc/imagebuild-park-fail-{code}"
        planted.write_text("")
        return planted

    def host(self) -> Host:
        found = Host.from_metadata(self.store.get(self.build_id).metadata)
        assert found is not None
        return found


def _shows_parked(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, host_id: str) -> None:
    """``imagebuild build show`` and the build page say the host is parked, and how."""
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from airflow_provider_imagebuild.cli.main import cli
    from airflow_provider_imagebuild.plugin import access, api

    url = pipeline.url
    shown = CliRunner().invoke(cli, ["--store", url, "build", "show", pipeline.build_id])
    assert shown.exit_code == 0 and f"build host {host_id} parked (stopped) since" in shown.stdout, shown.output

    class User:
        def get_name(self) -> str:
            return "admin"

    monkeypatch.setenv("IMAGEBUILD_STORE", url)
    monkeypatch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
    monkeypatch.setattr(access, "may", lambda user, dag_id, act: True)
    access.store.cache_clear()
    try:
        app = api.create_app()
        app.dependency_overrides[access.current_user] = User
        page = TestClient(app, root_path="/imagebuild").get(f"/builds/{pipeline.build_id}")
    finally:
        access.store.cache_clear()
    assert page.status_code == 200 and '<dd id="parked">stopped since' in page.text, page.text[-2000:]


def test_a_milestone_failed_for_good_parks_the_host_and_the_next_attempt_starts_it(
    tmp_path: Path, request: pytest.FixtureRequest, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(tmp_path, request, "park-1")
    pipeline.run(15, 1)
    host = pipeline.host()
    assert _state(ec2, host.id) == "running"

    planted = pipeline.plant(20)
    with pytest.raises(AirflowException, match="planted failure at 20"):
        pipeline.run(20, 1)  # retries: 1, so Airflow tries again: the host stays up
    assert _state(ec2, host.id) == "running" and HOST_PARKED not in pipeline.store.get("park-1").metadata
    with pytest.raises(AirflowException, match="planted failure at 20"):
        pipeline.run(20, 2)  # the last try: parked
    rec = pipeline.store.get("park-1")
    assert _state(ec2, host.id) == "stopped"
    assert rec.metadata[HOST_PARKED] == "stopped" and rec.metadata["host_parked_at"]
    assert any(e.kind == "metadata" and "host_parked" in e.detail for e in rec.events)
    assert (rec.current_state, rec.status) == (20, "failed")  # the failure itself is recorded as ever
    _shows_parked(pipeline, monkeypatch, host.id)

    planted.unlink()
    pipeline.run(20, 3)  # a person clears the task: the same host is started again, not relaunched
    rec = pipeline.store.get("park-1")
    assert rec.milestones[20].outputs["ansible_failed"] == 0
    assert pipeline.host().id == host.id and _state(ec2, host.id) == "running"
    assert rec.metadata[HOST_PARKED] == "" and rec.metadata["host_parked_at"] == ""


def test_a_persistent_failure_parks_at_once_and_on_failure_park_false_keeps_the_host(
    tmp_path: Path, request: pytest.FixtureRequest, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(tmp_path, request, "park-2")
    pipeline.run(15, 1)
    host = pipeline.host()
    monkeypatch.setenv("IMAGEBUILD_FAIL_AT", "20")  # the drill: a failure Airflow does not retry
    with pytest.raises(AirflowFailException, match="failure injected"):
        pipeline.run(20, 1)  # the first of two tries, but not retried: parked now
    assert _state(ec2, host.id) == "stopped" and pipeline.store.get("park-2").metadata[HOST_PARKED] == "stopped"

    monkeypatch.setenv("IMAGEBUILD_FAIL_AT", "")
    kept = Pipeline(tmp_path, request, "park-3", extra="on_failure: {park: false}\n")
    kept.run(15, 1)
    monkeypatch.setenv("IMAGEBUILD_FAIL_AT", "20")
    with pytest.raises(AirflowFailException, match="failure injected"):
        kept.run(20, 1)
    assert _state(ec2, kept.host().id) == "running" and HOST_PARKED not in kept.store.get("park-3").metadata


def test_park_hooks_touch_only_the_builds_own_host(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    mine = store.create_build("park-own", pipeline="web", cloud="aws", image_type="base", plan=[0, 10, 95, 100])
    other = store.create_build("park-other", pipeline="web", cloud="aws", image_type="base", plan=[0, 10, 95, 100])
    target = AwsTarget(TargetSpec(region="us-east-1"), pipeline="web", image_type="base", clients=aws_clients,
                       region="us-east-1")  # fmt: skip
    green = str(ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name="g-park-own")["ImageId"])
    target.claim_images(mine, {"us-east-1": green}, 10)
    host = target.launch(mine, Checkpoint(10, green))
    assert target.park_host(other, host) == ""  # not the other build's: left running
    assert _state(ec2, host.id) == "running"
    assert target.park_host(mine, host) == "stopped" == target.park_host(mine, host)  # idempotent
    assert target.unpark_host(other, host) is None and _state(ec2, host.id) == "stopped"
    woken = target.unpark_host(mine, host)
    assert woken is not None and woken.id == host.id and target.alive(mine, woken)
    target.cleanup(mine, host)
    assert target.park_host(mine, host) == "" and target.unpark_host(mine, host) is None  # gone: relaunched


def test_the_local_target_keeps_a_failed_builds_tree_as_it_is(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    build = store.create_build("park-local", pipeline="p", cloud="local", image_type="base", plan=[0, 10, 95, 100])
    target = LocalTarget(TargetSpec(work_dir=str(tmp_path / "work")), pipeline="p", image_type="base")
    host = Host(str(tmp_path / "work/park-local/rootfs"), "", "", 10, 10)
    assert not target.parks_by_default and target.park_host(build, host) == ""
    assert target.unpark_host(build, host) == host


def test_openstack_shelves_the_builds_server_or_stops_it_where_shelving_is_refused(
    tmp_path: Path, fake_os: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the Nova fake's shelve/unshelve (os-shelve: from ACTIVE or SHUTOFF, offloaded at
    once; unshelve back to ACTIVE; 403 where the policy refuses the login)."""
    from airflow_provider_imagebuild.build.identity import BuildIdentity
    from tests.conftest import unique
    from tests.targets.test_openstack import make_target, packer_image

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    identity = BuildIdentity("os-pipe", "openstack", "base", plan=(0, 5, 10, 15, 95, 100))
    build, other = store.register(unique("os"), identity), store.register(unique("os"), identity)
    target = make_target("os-pipe")
    green = packer_image(fake_os, target, build)
    target.claim_images(build, {"": green}, 10)
    host = target.launch(build, Checkpoint(10, green))
    assert target.park_host(other, host) == "" and fake_os.servers[host.id]["status"] == "ACTIVE"
    assert target.park_host(build, host) == "shelved" == target.park_host(build, host)
    assert fake_os.servers[host.id]["status"] == "SHELVED_OFFLOADED" and not target.alive(build, host)
    assert target.unpark_host(other, host) is None
    woken = target.unpark_host(build, host)
    assert woken is not None and woken.id == host.id and fake_os.servers[host.id]["status"] == "ACTIVE"
    assert woken.address and target.alive(build, woken)

    monkeypatch.setattr(fake_os, "shelve_forbidden", True)
    assert target.park_host(build, host) == "stopped" and fake_os.servers[host.id]["status"] == "SHUTOFF"
    woken = target.unpark_host(build, host)
    assert woken is not None and fake_os.servers[host.id]["status"] == "ACTIVE"
    fake_os.remove_server(host.id)
    assert target.park_host(build, host) == "" and target.unpark_host(build, host) is None


def test_gcp_stops_the_builds_instance_and_starts_it_again(tmp_path: Path, fake_gce: Any) -> None:
    """Against the Compute Engine fake's instances.stop/start (status TERMINATED / RUNNING)."""
    from tests.targets.test_gcp import _build, _green, _target

    target = _target()
    build, other = _build(tmp_path, "gcp-park-1"), _build(tmp_path / "o", "gcp-park-2")
    host = target.launch(build, Checkpoint(10, _green(fake_gce, target, build)))
    instance = fake_gce.instances[host.id.rsplit("/", 1)[-1]]
    assert target.park_host(other, host) == "" and instance["status"] == "RUNNING"
    assert target.park_host(build, host) == "stopped" == target.park_host(build, host)
    assert instance["status"] == "TERMINATED" and not target.alive(build, host)
    assert target.unpark_host(other, host) is None and instance["status"] == "TERMINATED"
    woken = target.unpark_host(build, host)
    assert woken is not None and woken.id == host.id and woken.address and target.alive(build, woken)
    fake_gce.remove_instance(instance["name"])
    assert target.park_host(build, host) == "" and target.unpark_host(build, host) is None


def test_vsphere_powers_the_builds_vm_off_and_on_again(tmp_path: Path, vsphere_library: str) -> None:
    """Against govmomi's vCenter simulator (PowerOffVM_Task / PowerOnVM_Task)."""
    from airflow_provider_imagebuild.build.identity import BuildIdentity
    from tests.conftest import unique
    from tests.targets.test_vsphere import make_target, packer_clone

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    identity = BuildIdentity("vs-pipe", "vsphere", "base", plan=(0, 5, 10, 15, 95, 100))
    build, other = store.register(unique("vs"), identity), store.register(unique("vs"), identity)
    target = make_target("vs-pipe")
    green = target.packer_image_name(build, "vs-pipe", 10)
    packer_clone(target, green)
    target.claim_images(build, {"": green}, 10)
    host = target.launch(build, Checkpoint(10, green))
    vm = target._by_uuid(host.id)
    assert target.park_host(other, host) == "" and vm.runtime.powerState == "poweredOn"
    assert target.park_host(build, host) == "powered off" == target.park_host(build, host)
    assert vm.runtime.powerState == "poweredOff" and not target.alive(build, host)
    assert target.unpark_host(other, host) is None and vm.runtime.powerState == "poweredOff"
    woken = target.unpark_host(build, host)
    assert woken is not None and woken.id == host.id and target.alive(build, woken)
    target.cleanup(build, host)
    assert target.park_host(build, host) == "" and target.unpark_host(build, host) is None


def test_azure_deallocates_the_builds_vm_and_starts_it_again(tmp_path: Path, fake_arm: Any) -> None:
    """Against the Resource Manager fake's virtualMachines deallocate/start (PowerState/deallocated,
    PowerState/running in the instance view)."""
    from tests.targets.test_azure import _build, _green_image, _target

    target = _target()
    build, other = _build(tmp_path, "az-park-1"), _build(tmp_path / "o", "az-park-2")
    host = target.launch(build, Checkpoint(10, _green_image(fake_arm, target, build)))

    def power() -> str:
        vm = fake_arm.get(host.id)
        return next(s["code"] for s in vm["properties"]["instanceView"]["statuses"] if "PowerState" in s["code"])

    assert target.park_host(other, host) == "" and power() == "PowerState/running"
    assert target.park_host(build, host) == "deallocated" == target.park_host(build, host)
    assert power() == "PowerState/deallocated" and not target.alive(build, host)
    assert target.unpark_host(other, host) is None and power() == "PowerState/deallocated"
    woken = target.unpark_host(build, host)
    assert woken is not None and woken.id == host.id and woken.address.startswith("10.0.0.")
    assert power() == "PowerState/running" and target.alive(build, woken)
    target.cleanup(build, host)
    assert target.park_host(build, host) == "" and target.unpark_host(build, host) is None
