"""The shipped AWS sample pipeline pointed at loopback: EC2/SSM on moto, Ansible over chroot.

Used by the end-to-end test and by ``benchmarks/aws_bench.py`` so that both run exactly the same
pipeline: the shipped spec, template and playbooks, with only the target's endpoints changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_imagebuild.toolchain.ansible import chroot_host_vars
from tests.servers.process import ROOT

SHIPPED = ROOT / "dags/pipelines/aws-rhel8-webserver.yaml"
DAG_ID = "imagebuild_aws_rhel8_webserver"
CONN_ID = "aws_moto"


def moto_connection(moto_url: str) -> str:
    """``AIRFLOW_CONN_AWS_MOTO``: an Airflow AWS connection whose endpoint is the moto server."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": moto_url, "region_name": "us-east-1"},
        }
    )


def sample_spec(store_url: str, base_ami: str, build_host_root: Path) -> str:
    """The shipped spec with the store, the moto connection, a moto AMI and a chroot build host."""
    spec: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    spec.update(store=store_url, schedule=None, defaults={"retries": 0, "lease_seconds": 60})
    spec["target"].update(
        aws_conn_id=CONN_ID,
        source_image=base_ami,
        connection=chroot_host_vars(build_host_root),
    )
    for ms in spec["milestones"].values():
        for key in ("template", "playbook"):
            if key in ms:
                ms[key] = str((SHIPPED.parent / ms[key]).resolve())
        if ms.get("action") == "packer":
            ms["vars"] = {"communicator": "none"}  # moto's instances run nothing to connect to
        ms.pop("retries", None)
        ms.pop("retry_delay", None)
    return yaml.safe_dump(spec)
