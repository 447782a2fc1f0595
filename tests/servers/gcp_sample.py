"""The shipped Google Cloud sample pipeline pointed at loopback: Compute Engine faked, Ansible over chroot.

Used by the end-to-end test and by ``benchmarks/gcp_bench.py``: the shipped spec and playbooks,
with the connection changed and milestones 5 and 10 running the stand-in template
(tests/servers/gcp_packer) with real Packer, because Packer's googlecompute builder cannot reach a
loopback Compute Engine.
"""

from __future__ import annotations

from pathlib import Path

from tests.servers.process import ROOT
from tests.servers.samples import localised

SHIPPED = ROOT / "dags/pipelines/gcp-rhel8-webserver.yaml"
STANDIN = ROOT / "tests/servers/gcp_packer/standin.pkr.hcl"
DAG_ID = "imagebuild_gcp_rhel8_webserver"


def sample_spec(store_url: str, build_host_root: Path, compute_endpoint: str, conn_id: str, project: str) -> str:
    """The shipped spec with the store, the fake's connection and project, the stand-in Packer
    template and the chroot build host."""
    target = {
        "gcp_conn_id": conn_id,
        "project": project,
        "service_account": f"image-builder@{project}.iam.gserviceaccount.com",
    }
    packer = {"vars": {"compute_endpoint": compute_endpoint}}
    return localised(SHIPPED, store_url, build_host_root, target, packer, STANDIN)
