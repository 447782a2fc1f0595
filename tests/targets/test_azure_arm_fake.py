"""The fake Resource Manager refuses what Azure's published API refuses: one known-bad request per
rule, each next to the good request it was made from (which the fake accepts), so that a rule of the
fake cannot hide the defects it is there to show. The rules come from the REST descriptions in
tests/servers/azure_specs (azure-rest-api-specs; sources and commits in the README there) and from
Azure's documented naming rules; the behaviours (long-running operations, the NIC kept for a deleted
VM, throttling) from Azure's documentation of them."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from tests.conftest import AZURE_CONN_ID, AZURE_GROUP
from tests.servers.azure_arm import API_VERSIONS, SUBSCRIPTION, FakeArm, Fault

BASE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{AZURE_GROUP}/providers"
IMAGE = f"{BASE}/Microsoft.Compute/images/base"
NIC = f"{BASE}/Microsoft.Network/networkInterfaces/nic1"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIImagebuildTestKeyOnlyForTheFakeArmServer imagebuild"
VM: dict[str, Any] = {
    "location": "westeurope",
    "properties": {
        "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
        "storageProfile": {
            "imageReference": {"id": IMAGE},
            "osDisk": {"createOption": "FromImage", "managedDisk": {"storageAccountType": "StandardSSD_LRS"}},
        },
        "osProfile": {
            "computerName": "vm1",
            "adminUsername": "azureuser",
            "linuxConfiguration": {
                "disablePasswordAuthentication": True,
                "ssh": {"publicKeys": [{"path": "/home/azureuser/.ssh/authorized_keys", "keyData": KEY}]},
            },
        },
        "networkProfile": {"networkInterfaces": [{"id": NIC, "properties": {"primary": True}}]},
    },
}


def _request(fake: FakeArm, method: str, path: str, body: Any = None, version: str | None = None) -> tuple[int, Any]:
    kind = path.split("/providers/", 1)[1].split("/")
    rtype = f"{kind[0]}/{'/'.join(kind[1::2])}".lower()
    query = f"?api-version={version or API_VERSIONS[rtype]}"
    payload = b"" if body is None else json.dumps(body).encode()
    status, _, answer = fake.handle(method, path + query, {"authorization": "Bearer fake-token-1"}, payload)
    return status, answer


def _refused(fake: FakeArm, method: str, path: str, body: Any, version: str | None = None) -> str:
    status, answer = _request(fake, method, path, body, version)
    assert status == 400, (status, answer)
    return f"{answer['error']['code']}: {answer['error']['message']}"


def _changed(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``body`` with the member at dotted ``path`` set to ``value`` (removed when ``...``)."""
    changed = copy.deepcopy(body)
    *parents, last = path.split(".")
    at = changed
    for key in parents:
        at = at[key]
    if value is ...:
        del at[last]
    else:
        at[last] = value
    return changed


@pytest.fixture
def arm(fake_arm: FakeArm) -> FakeArm:
    fake_arm.add(IMAGE, {"location": "westeurope"})
    fake_arm.add(NIC, {"location": "westeurope"})
    return fake_arm


def test_a_virtual_machine_is_checked_against_computerp_2026_04_01(arm: FakeArm) -> None:
    vm = f"{BASE}/Microsoft.Compute/virtualMachines/vm1"
    assert _request(arm, "PUT", vm, VM)[0] == 201, "the good request the bad ones are made from"
    disk = "properties.storageProfile.osDisk"
    # StorageAccountTypes has no Standard_ZRS: that is a gallery replica type (GalleryRP StorageAccountType)
    assert "InvalidParameter: The value 'Standard_ZRS' of parameter" in _refused(
        arm, "PUT", vm, _changed(VM, f"{disk}.managedDisk.storageAccountType", "Standard_ZRS")
    )
    # OSDisk.required: ["createOption"]
    assert f"Required parameter '{disk}.createOption' is missing" in _refused(
        arm, "PUT", vm, _changed(VM, f"{disk}.createOption", ...)
    )
    # a member VirtualMachineProperties does not have (CRP's "Could not find member")
    assert "Could not find member 'hardwareProfil' on object of type 'VirtualMachineProperties'" in _refused(
        arm, "PUT", vm, _changed(VM, "properties.hardwareProfil", {})
    )
    # OSProfile.adminUsername: "Disallowed values: ... admin ... user ... test ..."
    for user in ("admin", "user", "test", "guest", "owner", "sql"):
        assert "adminUsername' is not allowed" in _refused(
            arm, "PUT", vm, _changed(VM, "properties.osProfile.adminUsername", user)
        )
    # a boolean where the model says boolean (no "true" strings)
    assert "InvalidRequestContent: Error converting value 'yes'" in _refused(
        arm, "PUT", vm, _changed(VM, "properties.osProfile.linuxConfiguration.disablePasswordAuthentication", "yes")
    )
    # TrackedResource.required: ["location"]
    assert "Required parameter 'location' is missing" in _refused(arm, "PUT", vm, _changed(VM, "location", ...))


def test_resource_names_keep_the_published_rules(arm: FakeArm) -> None:
    compute = f"{BASE}/Microsoft.Compute"
    assert "InvalidResourceName" in _refused(arm, "PUT", f"{compute}/virtualMachines/{'v' * 65}", VM)
    assert "InvalidResourceName" in _refused(arm, "PUT", f"{compute}/virtualMachines/vm1-", VM)
    snapshot = {"location": "westeurope", "properties": {"creationData": {"createOption": "Copy"}}}
    assert "InvalidResourceName" in _refused(arm, "PUT", f"{compute}/snapshots/cp.030", snapshot)  # no '.'
    assert "InvalidResourceName" in _refused(arm, "PUT", f"{compute}/snapshots/{'s' * 81}", snapshot)
    image = {"location": "westeurope", "properties": {"sourceVirtualMachine": {"id": "x"}}}
    assert "InvalidResourceName" in _refused(arm, "PUT", f"{compute}/images/final-", image)
    version = {"location": "westeurope", "properties": {"storageProfile": {"source": {"id": IMAGE}}}}
    versions = f"{compute}/galleries/golden/images/rhel8-web/versions"
    assert "InvalidResourceName" in _refused(arm, "PUT", f"{versions}/2026.1103", version)
    assert "beyond 32 bits" in _refused(arm, "PUT", f"{versions}/2026.1103.4294967296", version)
    nic = {"location": "westeurope", "properties": {}}
    assert "InvalidResourceName" in _refused(arm, "PUT", f"{BASE}/Microsoft.Network/networkInterfaces/nic-", nic)


def test_images_disks_snapshots_and_gallery_versions_are_checked_against_their_models(arm: FakeArm) -> None:
    compute = f"{BASE}/Microsoft.Compute"
    # ImageOSDisk.required: ["osType", "osState"]
    blob = {"location": "westeurope", "properties": {"storageProfile": {"osDisk": {"osType": "Linux", "blobUri": "u"}}}}
    assert "Required parameter 'properties.storageProfile.osDisk.osState' is missing" in _refused(
        arm, "PUT", f"{compute}/images/i1", blob
    )
    # HyperVGenerationTypes: V1, V2
    assert "'V3' of parameter 'properties.hyperVGeneration'" in _refused(
        arm, "PUT", f"{compute}/images/i1", {"location": "westeurope", "properties": {"hyperVGeneration": "V3"}}
    )
    # DiskProperties.required: ["creationData"]; DiskSku names the managed disk SKUs
    assert "Required parameter 'properties.creationData' is missing" in _refused(
        arm, "PUT", f"{compute}/disks/d1", {"location": "westeurope", "properties": {"osType": "Linux"}}
    )
    copy_data = {"createOption": "Copy", "sourceResourceId": IMAGE}
    assert "'Standard_ZRS' of parameter 'sku.name'" in _refused(
        arm, "PUT", f"{compute}/disks/d1",
        {"location": "westeurope", "sku": {"name": "Standard_ZRS"}, "properties": {"creationData": copy_data}},
    )  # fmt: skip
    # GalleryImageVersionProperties.required: ["storageProfile"], in a PATCH (GalleryImageVersionUpdate) too
    version = f"{compute}/galleries/golden/images/rhel8-web/versions/1.0.0"
    arm.add(version, {"location": "westeurope"})
    patch: dict[str, Any] = {"properties": {"publishingProfile": {"excludeFromLatest": False}}}
    assert "Required parameter 'properties.storageProfile' is missing" in _refused(arm, "PATCH", version, patch)
    patch["properties"]["storageProfile"] = {"source": {"id": IMAGE}}
    assert _request(arm, "PATCH", version, patch)[0] == 200
    # TargetRegion.required: ["name"]; StorageAccountType has no StandardSSD_LRS
    regions: dict[str, Any] = {"targetRegions": [{"regionalReplicaCount": 1}]}
    put: dict[str, Any] = {
        "location": "westeurope",
        "properties": {"storageProfile": {"source": {"id": IMAGE}}, "publishingProfile": regions},
    }
    assert "targetRegions[0].name' is missing" in _refused(arm, "PUT", version, put)
    put["properties"]["publishingProfile"] = {"storageAccountType": "StandardSSD_LRS"}
    assert "'StandardSSD_LRS' of parameter 'properties.publishingProfile.storageAccountType'" in _refused(
        arm, "PUT", version, put
    )


def test_an_api_version_the_resource_type_is_not_served_with_is_refused(arm: FakeArm) -> None:
    vm = f"{BASE}/Microsoft.Compute/virtualMachines/vm1"
    assert "NoRegisteredProviderFound" in _refused(arm, "GET", vm, None, version="2015-06-15")


def test_long_running_operations_answer_in_progress_before_they_end(arm: FakeArm) -> None:
    from airflow_provider_imagebuild.clouds.azure import AzureClients

    compute = AzureClients.from_connection(AZURE_CONN_ID).compute
    arm.in_progress_polls = 3
    poller = compute.virtual_machines.begin_create_or_update(AZURE_GROUP, "vm1", VM)
    poller.result()
    polls = [p for m, p in arm.requests if m == "GET" and "/operations/" in p]
    assert len(polls) == 4, "three InProgress answers, then Succeeded"
    arm.slow_operation_once("POST", r"/powerOff$", polls=10_000)
    running = compute.virtual_machines.begin_power_off(AZURE_GROUP, "vm1")
    assert running.result(timeout=0.3) is None and not running.done(), "result(timeout) returns while it runs"


def test_a_nic_is_kept_for_the_vm_just_deleted(arm: FakeArm) -> None:
    vm = f"{BASE}/Microsoft.Compute/virtualMachines/vm1"
    assert _request(arm, "PUT", vm, VM)[0] == 201
    arm.nic_reservation_s = 0.5
    arm.delete_keeping_nic(vm)
    other = f"{BASE}/Microsoft.Compute/virtualMachines/vm2"
    refused = _refused(arm, "PUT", other, _changed(VM, "properties.osProfile.computerName", "vm2"))
    assert refused.startswith("NicReservedForAnotherVm: Nic(s) in request is reserved for another Virtual Machine")
    assert "NicReservedForAnotherVm" in _refused(arm, "PUT", vm, VM), "the same name as well"
    assert "NicReservedForAnotherVm" in _refused(arm, "DELETE", NIC, None), "and the NIC's deletion"
    time.sleep(0.6)
    assert _request(arm, "PUT", other, _changed(VM, "properties.osProfile.computerName", "vm2"))[0] == 201


def test_throttling_answers_429_with_retry_after_and_the_sdk_waits(arm: FakeArm) -> None:
    from airflow_provider_imagebuild.clouds.azure import AzureClients

    compute = AzureClients.from_connection(AZURE_CONN_ID).compute
    arm.fail_next(Fault("GET", r"/images/base$", status=429, retry_after="0.4", times=1))
    started = time.monotonic()
    assert compute.images.get(AZURE_GROUP, "base").name == "base"
    assert time.monotonic() - started >= 0.4, "the SDK waited as Retry-After said"
    assert [p for m, p in arm.requests if p.endswith("/images/base")] == [IMAGE, IMAGE]


def test_boot_diagnostics_are_checked_and_their_log_is_read_with_its_sas_only(arm: FakeArm, tmp_path: Any) -> None:
    """DiagnosticsProfile.bootDiagnostics (ComputeRP: ``enabled`` a boolean, ``storageUri`` a string,
    no other member); RetrieveBootDiagnosticsData only for a VM with them on; the log blob is read
    with the SAS URI it gave (a wrong signature: 403), without the Resource Manager token."""
    vm = f"{BASE}/Microsoft.Compute/virtualMachines/vm1"
    version = API_VERSIONS["microsoft.compute/virtualmachines"]
    assert _request(arm, "PUT", vm, VM)[0] == 201
    status, answer = _request(arm, "POST", f"{vm}/retrieveBootDiagnosticsData", version=version)
    assert (status, answer["error"]["code"]) == (409, "OperationNotAllowed"), "boot diagnostics are off"
    diagnostics = "properties.diagnosticsProfile"
    assert "Error converting value 'yes'" in _refused(
        arm, "PUT", vm, _changed(VM, diagnostics, {"bootDiagnostics": {"enabled": "yes"}})
    )
    assert "Could not find member 'enable'" in _refused(
        arm, "PUT", vm, _changed(VM, diagnostics, {"bootDiagnostics": {"enable": True}})
    )
    assert _request(arm, "PUT", vm, _changed(VM, diagnostics, {"bootDiagnostics": {"enabled": True}}))[0] == 200
    arm.guest_console = tmp_path / "console.log"
    arm.guest_console.write_bytes(b"web login: ")
    status, answer = _request(arm, "POST", f"{vm}/retrieveBootDiagnosticsData", version=version)
    assert status == 200 and set(answer) == {"consoleScreenshotBlobUri", "serialConsoleLogBlobUri"}
    blob = answer["serialConsoleLogBlobUri"].removeprefix(arm.url)
    assert arm.handle("GET", blob, {}, b"")[2] == b"web login: "
    forged = blob.rsplit("sig=", 1)[0] + "sig=forged"
    assert arm.handle("GET", forged, {}, b"")[0] == 403
