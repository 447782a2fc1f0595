"""The shipped AWS sample pipeline pointed at loopback: EC2/SSM on moto, Ansible over chroot.

Used by the end-to-end test and by ``benchmarks/aws_bench.py`` so that both run exactly the same
pipeline: the shipped spec, template and playbooks, with only the target's endpoints changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.servers.process import ROOT
from tests.servers.samples import launch_tested, localised

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


def sample_spec(store_url: str, base_ami: str, build_host_root: Path, guest: Any | None = None) -> str:
    """The shipped spec with the store, the moto connection, a moto AMI and a chroot build host; the
    launch test (97) reaches ``guest`` (tests/servers/guest.py), or is left out without one."""
    target = {"aws_conn_id": CONN_ID, "source_image": base_ami}
    # moto's instances run nothing to connect to
    spec = localised(SHIPPED, store_url, build_host_root, target, {"vars": {"communicator": "none"}})
    return launch_tested(spec, guest)
