"""The shipped Google Cloud sample pipeline pointed at loopback: Compute Engine faked, Ansible over chroot.

Used by the end-to-end test and by ``benchmarks/gcp_bench.py``: the shipped spec and playbooks,
with the connection changed and milestones 5 and 10 running the stand-in template
(tests/servers/gcp_packer) with real Packer, because Packer's googlecompute builder cannot reach a
loopback Compute Engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars
from tests.servers.process import ROOT

SHIPPED = ROOT / "dags/pipelines/gcp-rhel8-webserver.yaml"
STANDIN = ROOT / "tests/servers/gcp_packer/standin.pkr.hcl"
DAG_ID = "imagebuild_gcp_rhel8_webserver"


def sample_spec(store_url: str, build_host_root: Path, compute_endpoint: str, conn_id: str, project: str) -> str:
    """The shipped spec with the store, the fake's connection and project, the stand-in Packer
    template and the chroot build host."""
    spec: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    spec.update(store=store_url, schedule=None, defaults={"retries": 0, "lease_seconds": 60})
    spec["target"].update(
        gcp_conn_id=conn_id,
        project=project,
        service_account=f"image-builder@{project}.iam.gserviceaccount.com",
        connection=chroot_host_vars(build_host_root),
    )
    for ms in spec["milestones"].values():
        for key in ("template", "playbook"):
            if key in ms:
                ms[key] = str((SHIPPED.parent / ms[key]).resolve())
        if ms.get("action") == "packer":
            ms["template"] = str(STANDIN)
            ms["only"] = [o.replace("googlecompute.", "null.") for o in ms["only"]]
            ms["vars"] = {"compute_endpoint": compute_endpoint}
        ms.pop("retries", None)
        ms.pop("retry_delay", None)
    return yaml.safe_dump(spec)
