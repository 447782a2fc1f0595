"""The first ``make run`` of a generated project, as a new user runs it: real make, real Airflow in
the project's own AIRFLOW_HOME (migrated by the Makefile), no connection created yet. The run stops
at the first milestone that needs the cloud with one line naming the connection to create, before
the advice on resuming, and no chained traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli

FILLED = {
    "the vSphere datacenter to build in": "DC0",
    "the cluster the build VMs run on": "DC0_C0",
    "the datastore of the build VMs and templates": "LocalDS_0",
    "the VM template to start from: RHEL 9 with cloud-init, its guest on DHCP": "rhel-9-source",
}


def test_the_first_make_run_names_the_missing_connection_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "golden"
    got = CliRunner().invoke(cli, ["init", str(folder), "--cloud", "vsphere", "--os", "rhel-9", "--image-type", "web"])
    assert got.exit_code == 0, got.output
    [spec] = (folder / "dags/pipelines").glob("*.yaml")
    text = spec.read_text()
    for what, value in FILLED.items():
        text = text.replace(json.dumps(f"<REPLACE: {what}>"), value)
    spec.write_text(text)
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "IMAGEBUILD"))}
    env.update(PATH=f"{venv_bin}:{env.get('PATH', '/usr/bin:/bin')}", HOME=str(tmp_path))

    run = subprocess.run(["make", "run", "BUILD_ID=first-try"], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip

    log = run.stdout + run.stderr
    assert run.returncode != 0, log[-3000:]
    assert (folder / ".airflow/airflow.db").is_file(), "make run migrates the project's own AIRFLOW_HOME"
    assert "registered" in log, log[-3000:]  # milestone 0 ran: the project's first run got that far
    cause = "the Airflow connection 'vsphere_default' does not exist: create it"
    lines = log.splitlines()
    first_cause = next(i for i, line in enumerate(lines) if cause in line)
    advice = next(i for i, line in enumerate(lines) if "clear this task to resume" in line)
    assert first_cause < advice, "the cause comes before the advice"
    assert "The above exception was the direct cause" not in log and log.count("Traceback") <= 1
    assert not re.search(r"clouds/vsphere\.py|targets/vsphere\.py", log), "no traceback of the provider's code"
    assert f"target.vsphere_conn_id: {cause}" in lines[first_cause]
