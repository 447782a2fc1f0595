"""The shipped Google Cloud sample pipeline pointed at loopback: Compute Engine faked, Ansible over chroot.

Used by the end-to-end test and by ``benchmarks/gcp_bench.py``: the shipped spec and playbooks,
with the connection changed and milestones 5 and 10 running the stand-in template
(tests/servers/gcp_packer) with real Packer, because Packer's googlecompute builder cannot reach a
loopback Compute Engine.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.servers.process import ROOT
from tests.servers.samples import launch_tested, localised

SHIPPED = ROOT / "dags/pipelines/gcp-rhel8-webserver.yaml"
STANDIN = ROOT / "tests/servers/gcp_packer/standin.pkr.hcl"
DAG_ID = "imagebuild_gcp_rhel8_webserver"


def sample_spec(
    store_url: str, build_host_root: Path, compute_endpoint: str, conn_id: str, project: str, guest: Any | None = None
) -> str:
    """The shipped spec with the store, the fake's connection and project, the stand-in Packer
    template and the chroot build host. The launch test (97) reaches ``guest``
    (tests/servers/guest.py), or is left out without one."""
    target = {
        "gcp_conn_id": conn_id,
        "project": project,
        "service_account": f"image-builder@{project}.iam.gserviceaccount.com",
    }
    packer = {"vars": {"compute_endpoint": compute_endpoint}}
    return launch_tested(localised(SHIPPED, store_url, build_host_root, target, packer, STANDIN), guest)


def packer_operator(
    store_url: str,
    pipeline: str,
    milestone: int,
    template: Path,
    variables: dict[str, str] | None = None,
    **target: Any,
) -> Any:
    """The Packer milestone operator of a Google Cloud pipeline, as the DAG factory makes it (the
    stand-in's ``null`` sources for :data:`STANDIN`, with ``variables`` as the spec's ``vars``)."""
    from airflow_provider_imagebuild.build.identity import BuildIdentity
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator
    from airflow_provider_imagebuild.spec.pipeline import GcpTargetSpec

    return PackerMilestoneOperator(
        task_id=f"s{milestone:03d}",
        identity=BuildIdentity(pipeline, "gcp", "webserver", plan=(0, 5, 10, 95, 100)),
        state=milestone,
        store=store_url,
        template=str(template),
        only=[("null." if template == STANDIN else "googlecompute.") + ("kickstart" if milestone == 5 else "green")],
        variables=variables or {},
        target=GcpTargetSpec(**target),
    )


def packer_values(operator: Any, build: Any, manifest: Path) -> dict[str, str]:
    """The variables the operator writes into Packer's var file for ``build``: the values it
    computes, limited to those the template declares (as ``run_milestone`` does)."""
    from airflow_provider_imagebuild.operators.packer import declared_variables

    declared = declared_variables(Path(operator.template))
    return {k: v for k, v in operator.standard_values(build, manifest).items() if k in declared}


def packer_validate(template: Path, values: dict[str, str], only: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``packer validate`` of ``template`` with ``values`` in a var file, as the operator runs it."""
    from tests.helpers import packer, packer_env

    var_file = tmp / "vars.json"
    var_file.write_text(json.dumps(values))
    env = packer_env(str(tmp))
    argv = [packer(), "validate", f"-var-file={var_file}", f"-only={only}", str(template)]
    return subprocess.run(argv, cwd=template.parent, capture_output=True, text=True, timeout=60, env=env)


def packer_console(template: Path, values: dict[str, str], expression: str, tmp: Path) -> Any:
    """What Packer's HCL2 makes of ``expression`` (``local.labels``) in ``template`` with
    ``values``: ``packer console`` evaluates it as Packer would for a build."""
    from tests.helpers import packer, packer_env

    var_file = tmp / "console-vars.json"
    var_file.write_text(json.dumps(values))
    env = packer_env(str(tmp))
    argv = [packer(), "console", f"-var-file={var_file}", str(template)]
    got = subprocess.run(
        argv, input=f"jsonencode({expression})\n", cwd=template.parent, capture_output=True, text=True, timeout=60,
        env=env,
    )  # fmt: skip
    assert got.returncode == 0, got.stdout + got.stderr
    return json.loads(got.stdout.strip().splitlines()[-1])
