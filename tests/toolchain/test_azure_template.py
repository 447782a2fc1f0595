"""The shipped Azure template handles every source form the spec accepts, with the variables the
Azure target gives it: ``packer validate`` of both sources for each form, and Packer's own evaluation
of the template's locals (a probe build beside the template) proving which of azure-arm's source
fields each form sets. azure-arm itself cannot run here (it logs in to Azure AD over https)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.clouds.azure_login import MODERN_PACKER, version_tuple
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.operators.packer import declared_variables
from airflow_provider_imagebuild.spec.pipeline import AzureTargetSpec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.azure import AzureTarget
from tests.conftest import AZURE_CONN_ID, AZURE_GROUP
from tests.helpers import packer
from tests.servers.azure_arm import SUBSCRIPTION
from tests.servers.process import ROOT

TEMPLATE = ROOT / "dags/packer/rhel8-azure.pkr.hcl"
OTHER_SUBSCRIPTION = "99999999-8888-7777-6666-555555555555"
BASE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-base/providers/Microsoft.Compute"
EMPTY_URN = ["", "", "", ""]
NO_IMAGE = {"name": "", "group": ""}
FORMS: dict[str, tuple[str, dict[str, Any]]] = {
    "marketplace URN": (
        "RedHat:RHEL:8-lvm-gen2:latest",
        {"urn": ["RedHat", "RHEL", "8-lvm-gen2", "latest"], "custom_image": NO_IMAGE, "gallery": []},
    ),
    "managed image id": (
        f"{BASE}/images/rhel8-base",
        {"urn": EMPTY_URN, "custom_image": {"name": "rhel8-base", "group": "rg-base"}, "gallery": []},
    ),
    "gallery image version id": (
        f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-shared/providers/Microsoft.Compute/galleries/"
        "corp/images/rhel8-cis/versions/2026.1103.23000",
        {
            "urn": EMPTY_URN,
            "custom_image": NO_IMAGE,
            "gallery": [
                {
                    "subscription": OTHER_SUBSCRIPTION,
                    "resource_group": "rg-shared",
                    "gallery_name": "corp",
                    "image_name": "rhel8-cis",
                    "image_version": "2026.1103.23000",
                }
            ],
        },
    ),
}
PROBE = """source "null" "probe" {
  communicator = "none"
}
locals {
  probe = {
    urn = local.urn, custom_image = local.custom_image, gallery = local.gallery, login = local.login,
    network = local.network,
  }
}
build {
  sources = ["source.null.probe"]
  provisioner "shell-local" {
    inline = ["echo PROBE=${base64encode(jsonencode(local.probe))}"]
  }
}
"""


def _packer(
    args: list[str], cwd: Path, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": "/usr/bin:/bin", "CHECKPOINT_DISABLE": "1", "HOME": str(home), **(env or {})}
    plugins = Path(packer()).resolve().parent / "plugins"  # as a Packer milestone gives them (toolchain/packer.py)
    if plugins.is_dir():
        environ["PACKER_PLUGIN_PATH"] = str(plugins)
    return subprocess.run([packer(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=environ)


def _probe(tmp_path: Path, var_file: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The template's locals as Packer itself evaluates them (a null build beside the template)."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir(exist_ok=True)
    shutil.copy(TEMPLATE, probe_dir)
    (probe_dir / "probe.pkr.hcl").write_text(PROBE)
    got = _packer(
        ["build", "-machine-readable", f"-var-file={var_file}", "-only=null.probe", "."], probe_dir, tmp_path, env
    )
    assert got.returncode == 0, got.stdout + got.stderr
    encoded = got.stdout.split("PROBE=", 1)[1].split()[0].split(",")[0]
    return dict(json.loads(base64.b64decode(encoded)))


def _values(tmp_path: Path, source: str, network: str = "vnet-build/builders") -> dict[str, str]:
    """What the milestone operator writes in Packer's var file for this source (PackerMilestoneOperator.
    standard_values with the Azure target's own methods), limited to what the template declares."""
    spec = AzureTargetSpec(
        azure_conn_id=AZURE_CONN_ID, resource_group=AZURE_GROUP, location="westeurope", network=network
    )
    target = AzureTarget.from_settings(spec, pipeline="azure-rhel8-webserver", image_type="webserver")
    build = open_store(f"sqlite:///{tmp_path}/s.db").create_build(
        "az-forms-1", pipeline="azure-rhel8-webserver", cloud="azure", image_type="webserver", plan=[0, 5, 10, 100]
    )
    values = {
        "build_id": build.build_id,
        "milestone": "5",
        "pipeline": "azure-rhel8-webserver",
        "image_type": "webserver",
        "image_name": target.packer_image_name(build, "azure-rhel8-webserver", 5),
        "source_image": target.packer_source_image(source),
        "packer_manifest": str(tmp_path / "manifest.json"),
        **target.packer_vars(),
    }
    return {k: v for k, v in values.items() if k in declared_variables(TEMPLATE)}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_source_form_validates_and_sets_only_its_own_fields(form: str, fake_arm: Any, tmp_path: Path) -> None:
    source, expected = FORMS[form]
    var_file = tmp_path / "vars.json"
    var_file.write_text(json.dumps(_values(tmp_path, source)))
    for only in ("azure-arm.kickstart", "azure-arm.green"):
        got = _packer(["validate", f"-var-file={var_file}", f"-only={only}", TEMPLATE.name], TEMPLATE.parent, tmp_path)
        assert got.returncode == 0, f"{form} / {only}: {got.stdout}{got.stderr}"

    found = _probe(tmp_path, var_file)
    assert {k: found[k] for k in expected} == expected


def test_a_managed_image_of_another_subscription_is_refused_before_packer_runs(fake_arm: Any, tmp_path: Path) -> None:
    foreign = f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg-base/providers/Microsoft.Compute/images/x"
    with pytest.raises(InvalidInput, match=f"in subscription {OTHER_SUBSCRIPTION}") as info:
        _values(tmp_path, foreign)
    assert info.value.field == "target.source_image"


LOGINS = ["service principal secret", "certificate", "certificate assertion", "managed identity", "azure cli"]


@pytest.mark.parametrize("kind", LOGINS)
def test_packer_logs_in_as_the_identity_the_target_uses(
    kind: str, fake_arm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment the target gives Packer for each kind (the installed Packer's version decides
    what a managed identity gets), and what the template's azure-arm sources then receive: Packer
    validates it (its own check of which login a set of fields means) and evaluates the fields."""
    from airflow_provider_imagebuild.toolchain.versions import packer_version
    from tests.targets.test_azure_login import fake_jwt, self_signed_pem

    extra = {"subscriptionId": SUBSCRIPTION, "resource_manager_endpoint": fake_arm.url}
    conn: dict[str, Any] = {"conn_type": "azure", "extra": extra}
    spec_vars: dict[str, str] = {}
    if kind == "service principal secret":
        conn.update(login="app-id", password="s3cret-value", extra={**extra, "tenantId": "tenant-1"})
    elif kind == "certificate":
        monkeypatch.setenv("AZURE_CLIENT_ID", "app-id")
        monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
        monkeypatch.setenv("AZURE_CLIENT_CERTIFICATE_PATH", str(self_signed_pem(tmp_path / "sp.pem")))
    elif kind == "certificate assertion":
        (tmp_path / "token").write_text(fake_jwt(x5t=True))
        monkeypatch.setenv("AZURE_CLIENT_ID", "app-id")
        monkeypatch.setenv("AZURE_TENANT_ID", "tenant-1")
        monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(tmp_path / "token"))
    elif kind == "azure cli":
        spec_vars = {"azure_login": "azure_cli"}  # a spec's milestone vars
    monkeypatch.setenv(f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}", json.dumps(conn))
    values = _values(tmp_path, "RedHat:RHEL:8-lvm-gen2:latest")
    spec = AzureTargetSpec(azure_conn_id=AZURE_CONN_ID, resource_group=AZURE_GROUP, location="westeurope")
    env = AzureTarget.from_settings(spec, pipeline="p", image_type="webserver").packer_env()
    var_file = tmp_path / "vars.json"
    var_file.write_text(json.dumps({**values, **spec_vars}))
    assert not set(env.values()) & {str(v) for v in values.values()} - {"", SUBSCRIPTION}, "secrets in env only"

    got = _packer(["validate", f"-var-file={var_file}", "-only=azure-arm.kickstart", TEMPLATE.name], TEMPLATE.parent,
                  tmp_path, env)  # fmt: skip
    assert got.returncode == 0, got.stdout + got.stderr
    login = _probe(tmp_path, var_file, env)["login"]
    modern = version_tuple(packer_version()) >= MODERN_PACKER
    expected = {
        "service principal secret": (SUBSCRIPTION, "app-id", "", "tenant-1", False),
        "certificate": (SUBSCRIPTION, "app-id", str(tmp_path / "sp.pem"), "tenant-1", False),
        "certificate assertion": (SUBSCRIPTION, "app-id", "", "tenant-1", False),
        # Packer 1.6.6 takes a subscription without credentials for a device login: the VM's is used
        "managed identity": (SUBSCRIPTION if modern else "", "", "", "", False),
        "azure cli": ("", "", "", "", True),
    }[kind]
    assert (
        login["subscription_id"], login["client_id"], login["client_cert_path"], login["tenant_id"],
        login["use_azure_cli_auth"],
    ) == expected  # fmt: skip


def test_packer_builds_in_the_builds_subnet_and_deprovisions_the_agent_before_capture(
    fake_arm: Any, tmp_path: Path
) -> None:
    """Without virtual_network azure-arm makes a temporary network with a public IP (refused by
    common policies); without ``waagent -deprovision`` the captured image keeps Packer's user, the
    host keys and the agent's provisioned state (azure-arm's documented Linux steps)."""
    var_file = tmp_path / "vars.json"
    var_file.write_text(json.dumps(_values(tmp_path, "RedHat:RHEL:8-lvm-gen2:latest")))
    assert _probe(tmp_path, var_file)["network"] == {"name": "vnet-build", "subnet": "builders", "group": AZURE_GROUP}
    subnet = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/hub/subnets/b"
    )
    (tmp_path / "other").mkdir()
    var_file.write_text(json.dumps(_values(tmp_path / "other", "RedHat:RHEL:8-lvm-gen2:latest", network=subnet)))
    assert _probe(tmp_path, var_file)["network"] == {"name": "hub", "subnet": "b", "group": "rg-net"}

    got = _packer(["inspect", f"-var-file={var_file}", TEMPLATE.name], TEMPLATE.parent, tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    provisioners = got.stdout.split("provisioners:", 1)[1].split("post-processors:", 1)[0]
    assert provisioners.split() == ["shell"], provisioners
    assert '"/usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync"' in TEMPLATE.read_text()
