"""The shipped Azure sample pipeline pointed at loopback: Resource Manager faked, Ansible over chroot.

Used by the end-to-end test and by ``benchmarks/azure_bench.py`` so that both run the same
pipeline: the shipped spec and playbooks, with the target's connection changed and milestones 5
and 10 running the stand-in template (tests/servers/azure_packer) with real Packer, because
Packer's azure-arm builder cannot reach a loopback Resource Manager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.servers.process import ROOT
from tests.servers.samples import launch_tested, localised

SHIPPED = ROOT / "dags/pipelines/azure-rhel8-webserver.yaml"
STANDIN = ROOT / "tests/servers/azure_packer/standin.pkr.hcl"
DAG_ID = "imagebuild_azure_rhel8_webserver"
WAAGENT_ARGS = "var/lib/imagebuild-test-waagent-args"


def plant_waagent(root: Path) -> None:
    """A stand-in for the Azure agent in the build host's tree: records how seal called it."""
    agent = root / "usr/sbin/waagent"
    agent.parent.mkdir(parents=True, exist_ok=True)
    agent.write_text(f'#!/bin/sh\necho "$@" > /{WAAGENT_ARGS}\n')
    agent.chmod(0o755)


def sample_spec(
    store_url: str, build_host_root: Path, arm_url: str, conn_id: str, group: str, guest: Any | None = None
) -> str:
    """The shipped spec with the store, the fake's connection, the stand-in Packer template and
    the chroot build host; the fake's gallery image definition is ``golden/rhel8-web``. The launch
    test (97) reaches ``guest`` (tests/servers/guest.py), or is left out without one."""
    target = {"azure_conn_id": conn_id, "resource_group": group, "gallery_image": "rhel8-web"}
    spec = localised(SHIPPED, store_url, build_host_root, target, {"vars": {"arm_endpoint": arm_url}}, STANDIN)
    return launch_tested(spec, guest)
