"""The Azure target against a loopback fake of Azure Resource Manager.

Real: ``azure-mgmt-compute`` and ``azure-mgmt-network`` (requests, long-running operation polling
through ``Azure-AsyncOperation``, retries on 429 with ``Retry-After``), ``azure-identity``'s
``DefaultAzureCredential`` finding a managed identity, and the Airflow Azure connection read by
the Azure provider's hook. Faked: Resource Manager itself (tests/servers/azure_arm.py, following
the example payloads of Azure's published REST API specifications, named there). Nothing runs on
the "VMs"; the playbooks of the end-to-end tests run in a chroot tree instead.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec.pipeline import AzureTargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.azure import AzureTarget, gallery_version
from airflow_provider_imagebuild.targets.base import MANAGED_BY, Checkpoint
from tests.conftest import AZURE_CONN_ID, AZURE_GROUP
from tests.servers.azure_arm import SUBSCRIPTION, FakeArm, Fault

GROUP_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{AZURE_GROUP}/providers"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImagebuildTestKeyOnlyForTheFakeArmServer imagebuild"


def _target(pipeline: str = "web", **settings: Any) -> AzureTarget:
    base: dict[str, Any] = {
        "azure_conn_id": AZURE_CONN_ID,
        "resource_group": AZURE_GROUP,
        "location": "westeurope",
        "network": "vnet-build/builders",
        "ssh_public_key": KEY,
        "gallery": "golden",
        "gallery_image": "rhel8-web",
    }
    spec = AzureTargetSpec(**{**base, **settings})
    return AzureTarget.from_settings(spec, pipeline=pipeline, image_type="webserver")


def _build(tmp_path: Any, build_id: str, pipeline: str = "web") -> Any:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    return store.create_build(
        build_id, pipeline=pipeline, cloud="azure", image_type="webserver", plan=[0, 10, 30, 95, 100]
    )


def _reached(tmp_path: Any, build: Any, checkpoints: dict[int, str]) -> Any:
    """The build with milestones up to the last of ``checkpoints`` done, each with its image."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    for code in checkpoints:
        lease = store.begin(build.build_id, code, owner="test")
        outputs = {"checkpoint_image": checkpoints[code]} if code in checkpoints else {}
        build = store.complete(build.build_id, code, token=lease.token, outputs=outputs)
    return build


def _green_image(fake: FakeArm, target: AzureTarget, build: Any, name: str = "green", generation: str = "V2") -> str:
    """The managed image Packer's azure-arm builder would have made (from a Gen2 marketplace image
    unless ``generation`` says otherwise), claimed as the operator does."""
    image_id = f"{GROUP_ID}/Microsoft.Compute/images/{name}"
    os_disk = {"osType": "Linux", "osState": "Generalized"}
    fake.add(
        image_id,
        {
            "location": "westeurope",
            "properties": {"hyperVGeneration": generation, "storageProfile": {"osDisk": os_disk}},
        },
    )
    target.claim_images(build, {"": image_id}, 10)
    return image_id


def test_host_checkpoint_seal_publish_and_cleanup(fake_arm: FakeArm, tmp_path: Any) -> None:
    target = _target(replication_regions=["northeurope"], replica_count=2, end_of_life_days=90, tags={"team": "web"})
    build = _build(tmp_path, "az-target-1")
    green = _green_image(fake_arm, target, build)
    assert fake_arm.get(green)["tags"]["BuildId"] == "az-target-1"  # type: ignore[index]

    host = target.launch(build, Checkpoint(10, green))
    assert target.alive(build, host) and host.synced == 10 and host.address.startswith("10.0.0.")
    vm = fake_arm.get(host.id)
    assert vm is not None and vm["tags"]["Role"] == "buildhost" and vm["tags"]["team"] == "web"
    keys = vm["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"]
    assert keys == [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": KEY}]
    assert "publicIPAddress" not in str(fake_arm.get(vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"]))

    checkpoint = target.capture(build, host, 30, final=False)["checkpoint_image"]
    snapshot = fake_arm.get(checkpoint)
    assert snapshot is not None and snapshot["properties"]["incremental"] is True
    assert target.alive(build, host), "the host runs again after its checkpoint"
    assert target.capture(build, host, 30, final=False)["checkpoint_image"] == checkpoint  # retried: same name

    # The host is lost: a new one starts from the snapshot, on a copy of it, attached.
    fake_arm.remove(host.id)
    assert not target.alive(build, host)
    relaunched = target.launch(build, Checkpoint(30, checkpoint))
    disk_id = fake_arm.get(relaunched.id)["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]  # type: ignore[index]
    assert fake_arm.get(disk_id)["properties"]["creationData"]["sourceResourceId"] == checkpoint  # type: ignore[index]

    final = target.capture(build, relaunched, 95, final=True)["image_id"]
    assert fake_arm.get(final)["tags"]["Milestone"] == "95"  # type: ignore[index]
    assert not target.alive(build, relaunched), "a generalized host is no build host any more"
    assert target.discard(build, [checkpoint, f"{GROUP_ID}/Microsoft.Compute/snapshots/gone"]) == [checkpoint]
    assert fake_arm.get(checkpoint) is None

    published = target.publish(build, final)
    assert published == target.publish(build, final)  # idempotent: the version is found, not made twice
    version = fake_arm.get(published["gallery_image_version_id"])
    assert version is not None and published["gallery_image_version"] == gallery_version(build)
    profile = version["properties"]["publishingProfile"]
    assert profile["excludeFromLatest"] is False and profile["endOfLifeDate"].endswith("Z")
    assert [(r["name"], r["regionalReplicaCount"]) for r in profile["targetRegions"]] == [
        ("westeurope", 2),
        ("northeurope", 2),
    ]
    assert version["properties"]["storageProfile"]["source"]["id"] == final
    assert version["tags"]["BuildId"] == "az-target-1" and len(version["tags"]["MilestoneHistory"]) == 16
    assert published["published_regions"] == ["westeurope", "northeurope"]

    # Clean-up removes the host, and what the lost host (launched from 10) left: its disk and NIC.
    build = _reached(tmp_path, build, {10: green, 30: checkpoint})
    assert len(fake_arm.ids("Microsoft.Compute/disks")) == 2
    target.cleanup(build, relaunched)
    target.cleanup(build, relaunched)  # again: harmless
    left = fake_arm.ids("Microsoft.Compute/virtualMachines") + fake_arm.ids("Microsoft.Compute/disks")
    left += fake_arm.ids("Microsoft.Network/networkInterfaces")
    assert left == [], left


def test_throttling_a_failed_capture_and_a_vanished_vm(fake_arm: FakeArm, tmp_path: Any) -> None:
    target = _target(public_ip=True, network_security_group="nsg-build")
    build = _build(tmp_path, "az-target-2")
    green = _green_image(fake_arm, target, build)

    # 429 with Retry-After on the VM's creation: the SDK waits as told and the launch goes on.
    fake_arm.fail_next(Fault("PUT", r"/virtualMachines/", retry_after="1"))
    host = target.launch(build, Checkpoint(10, green))
    assert [m for m, p in fake_arm.requests if m == "PUT" and "/virtualMachines/" in p] == ["PUT", "PUT"]
    assert host.address.startswith("203.0.113."), "a public IP was asked for"

    # A capture whose operation fails: a transient error naming Azure's code; the retry captures.
    fake_arm.fail_operation_once("PUT", r"/images/")
    with pytest.raises(TargetError, match="InternalOperationError"):
        target.capture(build, host, 95, final=True)
    final = target.capture(build, host, 95, final=True)["image_id"]
    assert fake_arm.get(final)["properties"]["provisioningState"] == "Succeeded"  # type: ignore[index]

    # Throttled for longer than the SDK retries: transient, so Airflow retries the milestone.
    fake_arm.fail_next(Fault("GET", r"/virtualMachines/", retry_after="0", times=10))
    with pytest.raises(TargetError, match="TooManyRequests"):
        target.alive(build, host)
    fake_arm.faults.clear()

    target.cleanup(_reached(tmp_path, build, {10: green}), host)
    assert fake_arm.ids("Microsoft.Network/publicIPAddresses") == []


def test_what_is_not_the_builds_is_refused(fake_arm: FakeArm, tmp_path: Any) -> None:
    target = _target()
    build = _build(tmp_path, "az-target-3")
    (tmp_path / "o").mkdir()
    other = _build(tmp_path / "o", "az-other")
    foreign = f"{GROUP_ID}/Microsoft.Compute/images/vendor"
    fake_arm.add(foreign, {"location": "westeurope"})
    with pytest.raises(InvalidInput, match="not build az-target-3's"):
        target.launch(build, Checkpoint(10, foreign))
    with pytest.raises(InvalidInput, match="not build az-target-3's"):
        target.publish(build, foreign)
    theirs = _green_image(fake_arm, target, other, "theirs")
    with pytest.raises(InvalidInput, match="checkpoint_image"):
        target.launch(build, Checkpoint(10, theirs))
    elsewhere = theirs.replace(AZURE_GROUP, "rg-other")
    assert not target.owns_image(build, elsewhere) and not target.owns_image(build, "not-an-id")
    assert target.discard(build, [theirs]) == [] and fake_arm.get(theirs) is not None

    # A missing gallery image definition is named, before anything is created.
    mine = _green_image(fake_arm, target, build, "mine")
    with pytest.raises(InvalidInput, match="rhel8-missing does not exist") as info:
        _target(gallery_image="rhel8-missing").publish(build, mine)
    assert info.value.field == "target.gallery_image"
    assert fake_arm.ids("Microsoft.Compute/galleries/images/versions") == []


def test_credentials_and_endpoint_errors(fake_arm: FakeArm, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from tests.servers.process import free_port

    build = _build(tmp_path, "az-target-4")
    fake_arm.fail_next(Fault("GET", r"/images/", status=403, code="AuthorizationFailed", retry_after=None))
    with pytest.raises(InvalidInput, match="AuthorizationFailed") as info:
        _target().publish(build, f"{GROUP_ID}/Microsoft.Compute/images/x")
    assert info.value.field == "credentials"

    dead = f"http://127.0.0.1:{free_port()}"
    extra = {"subscriptionId": SUBSCRIPTION, "resource_manager_endpoint": dead}
    monkeypatch.setenv(f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}", json.dumps({"conn_type": "azure", "extra": extra}))
    with pytest.raises(TargetError, match="cannot reach"):
        _target().owns_image(build, f"{GROUP_ID}/Microsoft.Compute/images/x")

    # A service principal: its secret goes to Packer's environment, never into the settings or logs.
    sp = {"conn_type": "azure", "login": "app-id", "password": "s3cret-value", "extra": {**extra, "tenantId": "t"}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}", json.dumps(sp))
    env = _target().packer_env()
    assert env["ARM_CLIENT_SECRET"] == "s3cret-value" and env["ARM_SUBSCRIPTION_ID"] == SUBSCRIPTION
    assert "s3cret" not in json.dumps(_target().packer_vars())

    extra["resource_manager_endpoint"] = "http://management.example.com"
    monkeypatch.setenv(f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}", json.dumps({"conn_type": "azure", "extra": extra}))
    with pytest.raises(InvalidInput, match="must be https"):
        _target()


def test_image_links_go_to_the_portal_for_well_formed_ids_only() -> None:
    from airflow_provider_imagebuild.targets.links import image_links

    version = f"{GROUP_ID}/Microsoft.Compute/galleries/golden/images/rhel8-web/versions/2026.1127.213005"
    links = image_links("azure", {"gallery_image_version_id": version, "image_id": f"{GROUP_ID}/x/y"})
    assert links == {"2026.1127.213005": f"https://portal.azure.com/#@/resource{version}"}
    assert image_links("azure", {"image_id": "javascript:alert(1)"}) == {}


# A pipeline name of 63 characters and the build id Airflow's scheduler derives for it: every name
# Azure or Packer sees must still keep its rule (Packer refuses managed_image_name over 80).
LONG_PIPELINE = "rhel8-webserver-hardened-cis-level2-sap-hana-westeurope-nightly"
SCHEDULED_RUN = "scheduled__2026-11-03T02:30:00+00:00"


def test_every_name_of_a_long_pipelines_scheduled_build_keeps_azures_and_packers_rules(
    fake_arm: FakeArm, tmp_path: Any
) -> None:
    import re

    from airflow_provider_imagebuild.build.ids import derive_build_id
    from airflow_provider_imagebuild.targets.azure_names import RULES

    assert len(LONG_PIPELINE) == 63
    build_id = derive_build_id(LONG_PIPELINE, SCHEDULED_RUN)
    target = _target(pipeline=LONG_PIPELINE, public_ip=True, network_security_group="nsg-build")
    build = _build(tmp_path, build_id, LONG_PIPELINE)
    packer_names = {target.packer_image_name(build, LONG_PIPELINE, code) for code in (5, 10)}
    for name in packer_names:  # Packer's validManagedDiskName, and no trailing '-' or '.'
        assert re.fullmatch(r"[^_\W][\w\-._)]{0,79}", name, re.ASCII) and name[-1] not in "-.", name
        assert name.startswith(LONG_PIPELINE[:40]), "the image Packer makes is found by its pipeline in the portal"
    assert len(packer_names) == 2

    # A whole build on the fake: every resource it creates is named within its documented rule.
    green = _green_image(fake_arm, target, build, target.packer_image_name(build, LONG_PIPELINE, 10))
    host = target.launch(build, Checkpoint(10, green))
    checkpoint = target.capture(build, host, 30, final=False)["checkpoint_image"]
    final = target.capture(build, host, 95, final=True)["image_id"]
    target.publish(build, final)
    kinds = {
        "Microsoft.Compute/virtualMachines": "virtual machine",
        "Microsoft.Compute/disks": "disk",
        "Microsoft.Compute/snapshots": "snapshot",
        "Microsoft.Compute/images": "image",
        "Microsoft.Network/networkInterfaces": "network interface",
        "Microsoft.Network/publicIPAddresses": "public IP address",
        "Microsoft.Compute/galleries/images/versions": "gallery image version",
    }
    seen = 0
    for kind, rule in kinds.items():
        for resource_id in fake_arm.ids(kind):
            name = resource_id.rsplit("/", 1)[-1]
            assert RULES[rule].problem(name) is None, (rule, name)
            seen += 1
    vm = fake_arm.get(host.id) or {}
    assert seen >= 8 and checkpoint and vm["properties"]["osProfile"]["computerName"] == vm["name"]


def test_packer_artifacts_adopt_only_a_complete_image_of_the_build_and_never_delete_a_foreign_one(
    fake_arm: FakeArm, tmp_path: Any
) -> None:
    target = _target()
    build = _build(tmp_path, "az-adopt-1")
    name = target.packer_image_name(build, "web", 5)
    image_id = f"{GROUP_ID}/Microsoft.Compute/images/{name}"
    assert target.packer_artifacts(build, 5) == {}, "nothing there: run Packer"

    def template_tags(build_id: str, milestone: str = "5") -> dict[str, str]:
        return {"BuildId": build_id, "Pipeline": "web", "Milestone": milestone, "ManagedBy": MANAGED_BY}

    body = {"location": "westeurope", "properties": {"storageProfile": {"osDisk": {"osType": "Linux"}}}}
    for foreign in (template_tags("az-other"), template_tags("az-adopt-1", "10"), {"BuildId": "az-adopt-1"}):
        fake_arm.add(image_id, {**body, "tags": foreign})
        with pytest.raises(InvalidInput, match=f"{name} in resource group {AZURE_GROUP} exists and is not") as info:
            target.packer_artifacts(build, 5)
        assert info.value.field == "packer artifact" and fake_arm.get(image_id) is not None, "never deleted"

    fake_arm.add(image_id, {**body, "tags": template_tags("az-adopt-1")})
    assert target.packer_artifacts(build, 5) == {"": image_id}

    (fake_arm.get(image_id) or {})["properties"]["provisioningState"] = "Failed"  # an attempt cut short
    assert target.packer_artifacts(build, 5) == {} and fake_arm.get(image_id) is None, "removed: Packer remakes it"


def _shipped_spec(**target: Any) -> Any:
    """The shipped Azure sample spec's raw YAML with ``target`` settings changed."""
    import yaml

    from tests.servers.azure_sample import SHIPPED

    raw = yaml.safe_load(SHIPPED.read_text())
    raw["target"].update(target)
    return raw


@pytest.mark.parametrize(
    ("settings", "field", "reason"),
    [
        ({"os_disk_type": "Standard_ZRS"}, "target.os_disk_type", "not a managed disk SKU (it is a gallery replica"),
        ({"os_disk_type": "UltraSSD_LRS"}, "target.os_disk_type", "for data disks only"),
        ({"os_disk_type": "Premium"}, "target.os_disk_type", "not a managed disk SKU; one of Standard_LRS"),
        ({"replica_storage_type": "StandardSSD_LRS"}, "target.replica_storage_type", "(it is a managed disk SKU"),
        ({"replica_storage_type": "Premium_ZRS"}, "target.replica_storage_type", "not a gallery replica storage"),
        ({"storage_account_type": "Standard_LRS"}, "target.storage_account_type", "set os_disk_type and replica"),
    ],
)
def test_os_disk_and_gallery_replica_storage_are_two_settings_each_checked_against_its_own_enum(
    settings: dict[str, str], field: str, reason: str
) -> None:
    from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec

    with pytest.raises(SpecError) as info:
        parse_spec(_shipped_spec(**settings), "azure.yaml")
    assert f"{field}: " in str(info.value) and reason in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_the_os_disk_gets_its_sku_and_the_gallery_its_replica_type(fake_arm: FakeArm, tmp_path: Any) -> None:
    target = _target(os_disk_type="Premium_ZRS", replica_storage_type="Standard_ZRS")
    build = _build(tmp_path, "az-storage-1")
    host = target.launch(build, Checkpoint(10, _green_image(fake_arm, target, build)))
    vm = fake_arm.get(host.id) or {}
    assert vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["storageAccountType"] == "Premium_ZRS"
    relaunched = target.launch(build, Checkpoint(30, target.capture(build, host, 30, final=False)["checkpoint_image"]))
    disk_id = (fake_arm.get(relaunched.id) or {})["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
    assert (fake_arm.get(disk_id) or {})["sku"] == {"name": "Premium_ZRS"}, "the copied OS disk has the same SKU"
    version = (
        fake_arm.get(
            target.publish(build, target.capture(build, relaunched, 95, final=True)["image_id"])[
                "gallery_image_version_id"
            ]
        )
        or {}
    )
    profile = version["properties"]["publishingProfile"]
    assert profile["storageAccountType"] == "Standard_ZRS"
    assert {r["storageAccountType"] for r in profile["targetRegions"]} == {"Standard_ZRS"}


def test_the_spec_takes_each_source_form_the_template_handles() -> None:
    from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec

    gallery = f"{GROUP_ID}/Microsoft.Compute/galleries/corp/images/rhel8-cis/versions/1.2.3"
    for source in ("RedHat:RHEL:8-lvm-gen2:latest", f"{GROUP_ID}/Microsoft.Compute/images/base", gallery):
        target = parse_spec(_shipped_spec(source_image=source), "azure.yaml").target
        assert isinstance(target, AzureTargetSpec) and target.source_image == source
    with pytest.raises(SpecError, match=r"target\.source_image: .* nor a gallery image version id"):
        parse_spec(_shipped_spec(source_image=gallery.rsplit("/versions/", 1)[0]), "azure.yaml")


def test_a_publish_whose_replication_outlasts_the_wait_never_lifts_exclude_from_latest(
    fake_arm: FakeArm, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow_provider_imagebuild.targets.azure as azure_target

    monkeypatch.setattr(azure_target, "WAIT_S", 0.3)
    target = _target()
    target.wait_s = 0.3
    build = _build(tmp_path, "az-slow-1")
    host = target.launch(build, Checkpoint(10, _green_image(fake_arm, target, build)))
    final = target.capture(build, host, 95, final=True)["image_id"]
    fake_arm.slow_operation_once("PUT", r"/versions/", polls=10_000)  # replication takes hours
    with pytest.raises(TargetError, match=r"still running after 0\.3 s"):
        target.publish(build, final)
    version = fake_arm.ids("Microsoft.Compute/galleries/images/versions")[0]
    assert (fake_arm.get(version) or {})["properties"]["publishingProfile"]["excludeFromLatest"] is True
    assert not [p for m, p in fake_arm.requests if m == "PATCH" and "/versions/" in p], "latest not released"


def test_the_final_image_keeps_the_generation_of_its_source(fake_arm: FakeArm, tmp_path: Any) -> None:
    """A Gen1 source (RHEL's non-gen2 SKUs, an older managed image) stays Gen1: captured as V2 it would
    not boot; a gallery definition of the other generation is refused before any version is made."""
    target = _target()
    build = _build(tmp_path, "az-gen1")
    host = target.launch(build, Checkpoint(10, _green_image(fake_arm, target, build, generation="V1")))
    relaunched = target.launch(build, Checkpoint(30, target.capture(build, host, 30, final=False)["checkpoint_image"]))
    final = target.capture(build, relaunched, 95, final=True)["image_id"]
    assert (fake_arm.get(final) or {})["properties"]["hyperVGeneration"] == "V1"
    with pytest.raises(InvalidInput, match="is Hyper-V generation V2 and the image is V1") as info:
        target.publish(build, final)
    assert info.value.field == "target.gallery_image"
    assert fake_arm.ids("Microsoft.Compute/galleries/images/versions") == []


def test_a_public_ip_needs_a_network_security_group_on_the_nic_or_its_subnet(fake_arm: FakeArm, tmp_path: Any) -> None:
    """A Standard SKU public IP accepts no inbound traffic until an NSG allows it: without one Ansible
    could never reach the host, so the launch is refused before anything is made."""
    build = _build(tmp_path, "az-nsg-1")
    target = _target(public_ip=True)
    green = _green_image(fake_arm, target, build)
    with pytest.raises(InvalidInput, match="subnet builders has none") as info:
        target.launch(build, Checkpoint(10, green))
    assert info.value.field == "target.network_security_group"
    assert (
        fake_arm.ids("Microsoft.Network/networkInterfaces") == fake_arm.ids("Microsoft.Compute/virtualMachines") == []
    )

    host = _target(public_ip=True, network_security_group="nsg-build").launch(build, Checkpoint(10, green))
    nic = (fake_arm.get(host.id) or {})["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
    nsg = (fake_arm.get(nic) or {})["properties"]["networkSecurityGroup"]["id"]
    assert nsg == f"{GROUP_ID}/Microsoft.Network/networkSecurityGroups/nsg-build"

    subnet = f"{GROUP_ID}/Microsoft.Network/virtualNetworks/vnet-build/subnets/builders"
    (fake_arm.get(subnet) or {})["properties"]["networkSecurityGroup"] = {"id": nsg}
    assert target.launch(build, Checkpoint(10, green)).address.startswith("203.0.113."), "the subnet's NSG will do"


def test_a_nic_kept_for_a_vm_deleted_moments_ago_is_waited_for(fake_arm: FakeArm, tmp_path: Any) -> None:
    """Azure keeps a NIC 180 s for the VM that held it (NicReservedForAnotherVm, 400): the relaunch of a
    lost host and the clean-up of its NIC wait for it instead of failing for good."""
    target = _target()
    target.nic_retry_s = 0.2
    fake_arm.nic_reservation_s = 1.0
    build = _build(tmp_path, "az-nic-1")
    green = _green_image(fake_arm, target, build)
    host = target.launch(build, Checkpoint(10, green))
    fake_arm.delete_keeping_nic(host.id)  # deleted by someone, its NIC detached and kept
    assert not target.alive(build, host)
    started = time.monotonic()
    relaunched = target.launch(build, Checkpoint(10, green))
    assert target.alive(build, relaunched) and time.monotonic() - started >= 0.8

    fake_arm.delete_keeping_nic(relaunched.id)
    target.cleanup(_reached(tmp_path, build, {10: green}), relaunched)
    assert fake_arm.ids("Microsoft.Network/networkInterfaces") == []

    target.nic_reservation_wait_s = 0.5  # past the wait: transient, for Airflow to retry the milestone
    fake_arm.nic_reservation_s = 60.0
    host = target.launch(build, Checkpoint(10, green))
    fake_arm.delete_keeping_nic(host.id)
    with pytest.raises(TargetError, match="NicReservedForAnotherVm"):
        target.launch(build, Checkpoint(10, green))


@pytest.mark.parametrize("user", ["user", "test", "guest", "owner", "sql", "admin1"])
def test_an_admin_user_azure_refuses_is_refused_in_the_spec(user: str) -> None:
    from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec

    with pytest.raises(SpecError, match=r"target\.ssh_user: .* admin user names Azure refuses"):
        parse_spec(_shipped_spec(ssh_user=user), "azure.yaml")


def test_the_launch_test_vm_boots_with_diagnostics_reads_its_console_and_is_deleted_with_its_parts(
    fake_arm: FakeArm, tmp_path: Any
) -> None:
    """The launch test's hooks (targets/launch.py runs them): one VM from the sealed image with a NIC
    of its own and boot diagnostics on, its serial console log read through the SAS URI that
    retrieveBootDiagnosticsData gives (never with the ARM token), and the VM, NIC and OS disk gone
    after the delete; a leftover is found by name and tags, another build's never."""
    target = _target()
    build = _build(tmp_path, "az-launch-1")
    sealed = _green_image(fake_arm, target, build, name="sealed")
    console = tmp_path / "console.log"
    console.write_bytes(b"Debian GNU/Linux 12 web ttyS0\r\n\r\nweb login: ")
    fake_arm.guest_console = console

    vm_id = target.launch_test_instance(build, sealed)
    vm = fake_arm.get(vm_id)
    assert vm is not None and vm["tags"]["Role"] == "launch-test" and vm["tags"]["BuildId"] == "az-launch-1"
    assert vm["properties"]["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}
    assert vm["properties"]["storageProfile"]["imageReference"]["id"] == sealed
    found = target.test_instance(build, vm_id)
    assert found is not None and found.state == "running" and found.address.startswith("10.0.0.")
    assert target.leftover_test_instances(build) == [vm_id]
    assert target.test_instance_console(build, vm_id) == console.read_bytes()
    blob_reads = [p for m, p in fake_arm.requests if p.startswith("/bootdiagnostics/")]
    assert len(blob_reads) == 1

    other = _build(tmp_path, "az-launch-2")
    assert target.leftover_test_instances(other) == [] and target.test_instance(other, vm_id) is None
    target.delete_test_instance(other, vm_id)  # not the other build's: left alone
    assert fake_arm.get(vm_id) is not None

    target.delete_test_instance(build, vm_id)
    assert fake_arm.ids("Microsoft.Compute/virtualMachines") == []
    assert fake_arm.ids("Microsoft.Network/networkInterfaces") == []
    assert fake_arm.ids("Microsoft.Compute/disks") == []
    assert target.test_instance(build, vm_id) is None and target.leftover_test_instances(build) == []
    target.delete_test_instance(build, vm_id)  # again: harmless


@pytest.mark.slow
def test_the_launch_test_passes_on_the_stand_in_guest_and_a_failed_one_still_deletes_its_vm(
    fake_arm: FakeArm, standin_guest: Any, tmp_path: Any
) -> None:
    """The whole launch test (targets/launch.py's template with the Azure hooks): the VM is made in
    the fake with boot diagnostics, SSH, sudo, the network and the shipped verification playbook run
    on the stand-in guest (tests/servers/guest.py, reached through target.boot.ssh_address), its
    serial log is the console read; a failing playbook fails the check with the console's tail, and
    either way no VM, NIC or disk is left."""
    from airflow_provider_imagebuild.operators.target import default_verification_playbook
    from airflow_provider_imagebuild.targets.boot import SEALED_IMAGE, boot_request

    target = _target(ssh_private_key_file=str(standin_guest.key), boot=standin_guest.boot_settings())
    build = _build(tmp_path, "az-launch-e2e")
    sealed = _green_image(fake_arm, target, build, name="sealed")
    fake_arm.guest_console = standin_guest.console
    boot = target.settings.boot
    report = target.boot_check(build, sealed, boot_request(boot, SEALED_IMAGE, "uefi", default_verification_playbook()))
    assert report.passed, report.error_text()
    assert report.checks["launch"] == "ok" and report.checks["login_prompt"] == "ok" and report.checks["delete"] == "ok"
    assert report.instance.endswith("/virtualMachines/" + target.names(build).test_host())
    assert fake_arm.ids("Microsoft.Compute/virtualMachines") == [] and fake_arm.ids("Microsoft.Compute/disks") == []
    assert fake_arm.ids("Microsoft.Network/networkInterfaces") == []

    failing = tmp_path / "fails.yml"
    failing.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                       "    - ansible.builtin.fail: {msg: the image is not what it should be}\n")  # fmt: skip
    report = target.boot_check(build, sealed, boot_request(boot, SEALED_IMAGE, "uefi", failing))
    assert not report.passed and "the image is not what it should be" in report.failure
    assert "login:" in report.console_tail and report.checks["delete"] == "ok"
    assert fake_arm.ids("Microsoft.Compute/virtualMachines") == [] and fake_arm.ids("Microsoft.Compute/disks") == []


def test_a_launch_test_vm_whose_creation_fails_is_deleted_at_once(fake_arm: FakeArm, tmp_path: Any) -> None:
    """The VM's creation ends Failed (Azure keeps such a VM): the hook deletes it before it raises,
    rather than leaving it running up costs until the next try."""
    target = _target()
    build = _build(tmp_path, "az-launch-fails")
    sealed = _green_image(fake_arm, target, build, name="sealed")
    fake_arm.fail_operation_once("PUT", r"/virtualMachines/ib-[0-9a-f]+-lt$")
    with pytest.raises(TargetError, match="InternalOperationError"):
        target.launch_test_instance(build, sealed)
    assert fake_arm.ids("Microsoft.Compute/virtualMachines") == []
    assert any(m == "DELETE" and p.endswith("-lt") for m, p in fake_arm.requests)


# -- reuse (#32): an earlier build's checkpoint made a new build's ------------------------------------
def _done(tmp_path: Any, build: Any, images: dict[int, str], through: int) -> Any:
    """The build with every milestone of its plan up to ``through`` completed, ``images`` recorded."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    for code in [c for c in build.plan[1:] if c <= through]:
        lease = store.begin(build.build_id, code, owner="test")
        outputs = {"checkpoint_image": images[code]} if code in images else {}
        build = store.complete(build.build_id, code, token=lease.token, outputs=outputs)
    return build


def _checkpoint_snapshot(fake: FakeArm, target: AzureTarget, build: Any, name: str = "") -> str:
    """The incremental snapshot the build's capture after milestone 30 made (as ``_snapshot`` tags it)."""
    snapshot_id = f"{GROUP_ID}/Microsoft.Compute/snapshots/{name or target.names(build).snapshot(30)}"
    disk = f"{GROUP_ID}/Microsoft.Compute/disks/{target.names(build).os_disk(10)}"
    properties = {"incremental": True, "diskSizeGB": 64, "hyperVGeneration": "V2",
                  "creationData": {"createOption": "Copy", "sourceResourceId": disk}}  # fmt: skip
    fake.add(snapshot_id, {"location": "westeurope", "tags": target.build_tags(build, 30, "checkpoint"),
                           "properties": properties})  # fmt: skip
    return snapshot_id


def _writes(fake: FakeArm, kind: str) -> list[tuple[str, str]]:
    return [(m, p) for m, p in fake.requests if m in ("PUT", "PATCH", "DELETE") and f"/{kind}/" in p]


def test_a_reused_checkpoint_snapshot_is_copied_as_the_new_builds_once(fake_arm: FakeArm, tmp_path: Any) -> None:
    """The copy is the new build's (its snapshot name for the milestone, its tags, and where it came
    from); the source keeps its own; a retried adopt finds the copy instead of making another; the
    new build's discard deletes the copy only."""
    target = _target()
    first, night2 = _build(tmp_path, "az-reuse-1"), _build(tmp_path, "az-reuse-2")
    source = _checkpoint_snapshot(fake_arm, target, first)
    first = _done(tmp_path, first, {30: source}, through=30)  # not delivered: a snapshot is copied all the same

    adopted = target.adopt_checkpoint(night2, first, Checkpoint(30, source))
    copy = adopted["checkpoint_image"]
    name = target.names(night2).snapshot(30)
    assert adopted == {"checkpoint_image": f"{GROUP_ID}/Microsoft.Compute/snapshots/{name}",
                       "checkpoint_image_name": name, "image_region": "westeurope", "checkpoint_gb": 64}  # fmt: skip
    made = fake_arm.get(copy) or {}
    assert made["properties"]["creationData"] == {"createOption": "Copy", "sourceResourceId": source}
    assert made["properties"]["provisioningState"] == "Succeeded" and made["properties"]["incremental"] is False
    assert {k: made["tags"][k] for k in ("BuildId", "Pipeline", "Milestone", "Role", "ReusedFrom")} == {
        "BuildId": "az-reuse-2", "Pipeline": "web", "Milestone": "30", "Role": "checkpoint", "ReusedFrom": "az-reuse-1"
    }  # fmt: skip
    assert target.owns_image(night2, copy) and not target.owns_image(first, copy) and target.owns_image(first, source)

    puts = _writes(fake_arm, "snapshots")
    assert target.adopt_checkpoint(night2, first, Checkpoint(30, source)) == adopted  # retried: the same copy
    assert _writes(fake_arm, "snapshots") == puts, "a retry made a second copy"

    assert target.discard(night2, [copy, source]) == [copy]  # the source's is not the new build's to delete
    assert fake_arm.get(copy) is None and fake_arm.get(source) is not None


def test_a_copy_that_never_becomes_available_is_deleted_before_the_error(fake_arm: FakeArm, tmp_path: Any) -> None:
    """The copy's operation outlasts the wait: the half-made snapshot is deleted and the error says
    so (nothing is left that no record names); the next try copies it whole."""
    target = _target()
    target.wait_s = 0.3
    first, night2 = _build(tmp_path, "az-reuse-slow-1"), _build(tmp_path, "az-reuse-slow-2")
    source = _checkpoint_snapshot(fake_arm, target, first)
    fake_arm.slow_operation_once("PUT", r"/snapshots/ib-", polls=200)  # still copying when the wait ends
    with pytest.raises(TargetError, match=r"failed; what was made of the copy is deleted: .*still running after 0\.3"):
        target.adopt_checkpoint(night2, first, Checkpoint(30, source))
    name = target.names(night2).snapshot(30)
    assert fake_arm.ids("Microsoft.Compute/snapshots") == [source]
    assert [m for m, p in _writes(fake_arm, "snapshots") if p.endswith(name)] == ["PUT", "DELETE"]

    target.wait_s = 30
    copy = target.adopt_checkpoint(night2, first, Checkpoint(30, source))["checkpoint_image"]
    assert (fake_arm.get(copy) or {})["properties"]["provisioningState"] == "Succeeded"


def test_a_checkpoint_not_the_named_source_builds_is_refused_and_nothing_copied(
    fake_arm: FakeArm, tmp_path: Any
) -> None:
    """Whoever could write the source's record could name any snapshot as its checkpoint: another
    build's of the pipeline, another pipeline's tagged with the source's build id, the source's of
    another milestone, one outside the target's resource group. Each is refused by its tags."""
    target = _target()
    first, night2 = _build(tmp_path, "az-reuse-src"), _build(tmp_path, "az-reuse-new")
    (tmp_path / "o").mkdir()
    theirs = _checkpoint_snapshot(fake_arm, target, _build(tmp_path / "o", "az-reuse-other"))
    foreign = _checkpoint_snapshot(fake_arm, _target("db"), first, name="ib-db-cp030")
    own = _checkpoint_snapshot(fake_arm, target, first)
    for image, code in ((theirs, 30), (foreign, 30), (own, 25), (own.replace(AZURE_GROUP, "rg-other"), 30)):
        with pytest.raises(
            InvalidInput, match=f"is not build az-reuse-src's checkpoint after milestone {code}"
        ) as info:
            target.adopt_checkpoint(night2, first, Checkpoint(code, image))
        assert info.value.field == f"milestones.{code}.outputs.checkpoint_image"
    for junk in ("not-an-id", f"{GROUP_ID}/Microsoft.Compute/disks/{'d' * 5000}"):  # a record written by hand
        with pytest.raises(InvalidInput, match="is not a checkpoint snapshot or managed image") as info:
            target.adopt_checkpoint(night2, first, Checkpoint(30, junk))
        assert len(str(info.value)) < 500
    assert _writes(fake_arm, "snapshots") == [] and _writes(fake_arm, "images") == []
    assert sorted(fake_arm.ids("Microsoft.Compute/snapshots")) == sorted([theirs, foreign, own])


def test_a_managed_image_a_build_delivered_is_never_claimed(fake_arm: FakeArm, tmp_path: Any) -> None:
    """A pipeline without a seal delivers its Packer image, which is its checkpoint as well: a new
    build starting from it would take the delivered product away from the build that published it."""
    target = _target()
    first, night2 = _build(tmp_path, "az-product-1"), _build(tmp_path, "az-product-2")
    green = _green_image(fake_arm, target, first)
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    for code in first.plan[1:]:
        lease = store.begin(first.build_id, code, owner="test")
        made = {"image_id": green, "checkpoint_image": green} if code == 10 else {}
        first = store.complete(first.build_id, code, token=lease.token, outputs=made)
    assert first.delivered and first.merged_outputs()["image_id"] == green
    writes = _writes(fake_arm, "images")
    with pytest.raises(InvalidInput, match="build az-product-1 delivered"):
        target.adopt_checkpoint(night2, first, Checkpoint(10, green))
    assert target.owns_image(first, green) and _writes(fake_arm, "images") == writes


def test_a_reused_managed_image_is_claimed_only_from_a_delivered_build_and_a_refused_claim_changes_nothing(
    fake_arm: FakeArm, tmp_path: Any
) -> None:
    """Azure copies no managed image (a snapshot of one is refused as Azure refuses it), so the green
    image is claimed: re-tagged as the new build's. Not from a build that may still resume from it,
    nor one the spec keeps for a redo; a claim Azure refuses leaves the image its build's."""
    from azure.core.exceptions import HttpResponseError

    target = _target()
    first, night2 = _build(tmp_path, "az-claim-1"), _build(tmp_path, "az-claim-2")
    green = _green_image(fake_arm, target, first)
    copy = {
        "location": "westeurope",
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": green}},
    }
    with pytest.raises(HttpResponseError, match="sourceResourceId is invalid"):
        target.compute.snapshots.begin_create_or_update(AZURE_GROUP, "copy-of-green", copy)

    with pytest.raises(InvalidInput, match="build az-claim-1 is not delivered"):
        target.adopt_checkpoint(night2, first, Checkpoint(10, green))
    first = _done(tmp_path, first, {10: green}, through=100)
    with pytest.raises(InvalidInput, match="keep_checkpoints keeps for a redo of build az-claim-1"):
        _target(keep_checkpoints=[10]).adopt_checkpoint(night2, first, Checkpoint(10, green))
    fake_arm.fail_next(Fault("PATCH", r"/images/green$", status=409, code="Conflict", retry_after=None))
    with pytest.raises(TargetError, match=r"claiming build az-claim-1's checkpoint image .* left as it was"):
        target.adopt_checkpoint(night2, first, Checkpoint(10, green))
    assert target.owns_image(first, green) and not target.owns_image(night2, green)

    adopted = target.adopt_checkpoint(night2, first, Checkpoint(10, green))
    assert adopted["checkpoint_image"] == green and adopted["checkpoint_image_name"] == "green"
    assert target.owns_image(night2, green) and not target.owns_image(first, green)
    assert (fake_arm.get(green) or {})["tags"]["ReusedFrom"] == "az-claim-1"
    patches = _writes(fake_arm, "images")
    assert target.adopt_checkpoint(night2, first, Checkpoint(10, green)) == adopted  # retried: claimed already
    assert _writes(fake_arm, "images") == patches
    assert target.discard(night2, [green]) == [green] and fake_arm.get(green) is None
