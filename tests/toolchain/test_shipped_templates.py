"""The Packer templates users copy pass ``packer validate`` with the variables the target gives,
and ``packer fmt -check``, on the Packer users run today: the release and plugins that
``make packer-tools`` builds from their Go modules (scripts/packer-tools.sh), found as the provider
finds them. Each template names the plugins of its builders in ``required_plugins`` (Packer 1.10
and later carry no builders) and the installed ones meet it. Only validation for azure-arm and
googlecompute: their builds need Azure and Google Cloud themselves (the openstack builder logs in
while validating: to the loopback fake of Keystone). The AWS, vSphere and OpenStack templates are
also built for real, against moto, the vCenter simulator and the OpenStack fake, by the target
contract suite."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import packer, packer_env
from tests.servers.process import ROOT

PACKER = ROOT / "dags/packer"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
IMAGE_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-imagebuild/providers/Microsoft.Compute/images/w-m005"
COMMON = {"build_id": "b-1", "milestone": "5", "pipeline": "web", "image_name": "web-b-1-m005"}
CASES = {
    "amazon-ebs.kickstart": ("rhel8.pkr.hcl", {"source_image": "ami-0583d8c7a9c35822c", "aws_region": "us-east-1"}),
    "amazon-ebs.green": ("rhel8.pkr.hcl", {"source_image": "ami-0583d8c7a9c35822c", "aws_region": "eu-west-1"}),
    "azure-arm.kickstart": ("rhel8-azure.pkr.hcl", {"source_image": "RedHat:RHEL:8-lvm-gen2:latest"}),
    "azure-arm.green": ("rhel8-azure.pkr.hcl", {"source_image": IMAGE_ID, "virtual_network": "vnet-build/builders"}),
    "googlecompute.kickstart": ("rhel8-gcp.pkr.hcl", {"source_image": ""}),
    "googlecompute.green": ("rhel8-gcp.pkr.hcl", {"source_image": "projects/imagebuild-test/global/images/w-m005"}),
    "vsphere-clone.kickstart": ("rhel8-vsphere.pkr.hcl", {"source_image": "", "vsphere_template": "rhel8-source"}),
    "vsphere-clone.green": ("rhel8-vsphere.pkr.hcl", {"source_image": "ib-0123456789-m005"}),
    "openstack.kickstart": ("rhel8-openstack.pkr.hcl", {"source_image": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}),
    "openstack.green": ("rhel8-openstack.pkr.hcl", {"source_image": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}),
}
GCP = {"gcp_project": "imagebuild-test", "gcp_zone": "europe-west1-b"}
VSPHERE = {
    "vsphere_server": "vcenter.example.com",
    "vsphere_user": "u",
    "vsphere_password": "p",
    "vsphere_datacenter": "DC0",
    "vsphere_cluster": "DC0_C0",
    "vsphere_datastore": "LocalDS_0",
}
OPENSTACK = {"openstack_flavor": "m1.small", "openstack_network": "3c1a2b4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"}
AZURE = {"azure_subscription_id": SUBSCRIPTION, "azure_resource_group": "rg-imagebuild", "azure_location": "westeurope"}


def packer_os_env(request: pytest.FixtureRequest, source: str) -> dict[str, str]:
    """Packer's openstack builder logs in to Keystone while validating: the loopback fake's."""
    if not source.startswith("openstack."):
        return {}
    from tests.servers.openstack import PASSWORD, PROJECT, USER

    fake = request.getfixturevalue("openstack_endpoint")
    return {
        "OS_AUTH_URL": f"{fake.url}/identity/v3",
        "OS_USERNAME": USER,
        "OS_PASSWORD": PASSWORD,
        "OS_PROJECT_NAME": PROJECT,
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
    }


@pytest.mark.parametrize("source", sorted(CASES))
def test_shipped_template_validates(source: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    template, values = CASES[source]
    cloud = {"azure-arm": AZURE, "googlecompute": GCP, "vsphere-clone": VSPHERE, "openstack": OPENSTACK}.get(
        source.partition(".")[0], {}
    )
    variables = {**COMMON, **values, **cloud}
    var_file = tmp_path / "vars.json"
    var_file.write_text(json.dumps(variables))
    got = subprocess.run(
        [packer(), "validate", f"-var-file={var_file}", f"-only={source}", template],
        cwd=PACKER,
        capture_output=True,
        text=True,
        timeout=60,
        env=packer_env(str(tmp_path), **packer_os_env(request, source)),
    )
    assert got.returncode == 0, got.stdout + got.stderr


def test_shipped_templates_are_formatted() -> None:
    templates = sorted(str(p) for p in [*PACKER.glob("*.pkr.hcl"), *ROOT.glob("tests/servers/*_packer/*.pkr.hcl")])
    assert len(templates) >= 5
    for template in templates:  # Packer 1.6's fmt takes one path
        got = subprocess.run([packer(), "fmt", "-check", template], capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, f"{template} is not formatted (run packer fmt): {got.stdout}{got.stderr}"


PINS = (ROOT / "scripts/packer-tools.sh").read_text()
PINNED_PACKER = re.search(r"^PACKER_MODULE=github\.com/hashicorp/packer@v(\S+)$", PINS, re.MULTILINE)
PINNED_PLUGINS = dict(re.findall(r"^  ([a-z]+)@v(\S+)$", PINS, re.MULTILINE))
SOURCE_RE = re.compile(r'^source "([a-z]+)(?:-[a-z]+)?" "', re.MULTILINE)
# `packer plugins required FILE`: one line per entry, `name source "constraint" installed-binary...`
REQUIRED_RE = re.compile(r'^(\S+) (\S+) "([^"]*)"(.*)$', re.MULTILINE)


def test_the_provider_runs_the_packer_that_make_packer_tools_builds(tmp_path: Path) -> None:
    """Not Debian's 1.6.6: the pinned release, with the pinned plugins installed beside it."""
    assert PINNED_PACKER and PINNED_PLUGINS, "scripts/packer-tools.sh pins Packer and its plugins"
    env = packer_env(str(tmp_path))
    version = subprocess.run([packer(), "version"], capture_output=True, text=True, timeout=60, env=env)
    assert version.stdout.startswith(f"Packer v{PINNED_PACKER[1]}\n"), version.stdout + version.stderr
    installed = subprocess.run([packer(), "plugins", "installed"], capture_output=True, text=True, timeout=60, env=env)
    found = dict(re.findall(r"/packer-plugin-([a-z]+)_v([0-9.]+)_x5\.[0-9]+_linux_amd64$", installed.stdout, re.M))
    assert found == PINNED_PLUGINS, installed.stdout + installed.stderr


def test_make_packer_tools_again_only_links_the_cached_build(tmp_path: Path) -> None:
    """A second clone, or a second `make`, builds nothing: the pinned set is complete in the cache
    outside the clone, so the script only links to it, silently and well under a second."""
    started = time.monotonic()
    got = subprocess.run(["bash", str(ROOT / "scripts/packer-tools.sh"), str(tmp_path / "bin")], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    elapsed = time.monotonic() - started
    assert got.returncode == 0 and got.stdout == "" and got.stderr == "", got.stdout + got.stderr
    assert elapsed < 1.0
    assert (tmp_path / "bin/packer").resolve() == Path(packer()).resolve()


@pytest.mark.parametrize("template", sorted(p.name for p in PACKER.glob("*.pkr.hcl")))
def test_shipped_template_requires_the_plugins_of_its_builders(template: str, tmp_path: Path) -> None:
    """Every builder's plugin is in ``required_plugins`` (so `packer init`, and the doctor, know
    what the template needs), from github.com/hashicorp, and the installed build meets it."""
    builders = set(SOURCE_RE.findall((PACKER / template).read_text()))
    assert builders, f"{template} has no source"
    got = subprocess.run([packer(), "plugins", "required", template], cwd=PACKER, capture_output=True, text=True,
                         timeout=60, env=packer_env(str(tmp_path)))  # fmt: skip
    assert got.returncode == 0, got.stdout + got.stderr
    required = {
        name: (source, constraint, rest.split()) for name, source, constraint, rest in REQUIRED_RE.findall(got.stdout)
    }
    assert set(required) == builders, f"{template} requires {sorted(required)}, its sources use {sorted(builders)}"
    for name, (source, constraint, installed) in required.items():
        assert source == f"github.com/hashicorp/{name}", source
        assert installed, f"{template}: no installed {name} plugin meets {constraint!r}"
        assert f"packer-plugin-{name}_v{PINNED_PLUGINS[name]}_" in installed[0], installed
