"""Recovery on the Azure sample pipeline: clean build, resume after a failure at 55, monolithic rerun.

The shipped ``azure-rhel8-webserver`` pipeline through ``dag.test()`` as
``tests/operators/test_azure_pipeline.py`` runs it: the real Azure SDKs and
``DefaultAzureCredential`` against the loopback fake of Resource Manager (which answers each
long-running operation after one 1 s poll), real Packer on the stand-in template for 5 and 10,
and the real playbooks over chroot into a Debian root filesystem. Measured the way
``aws_bench.py`` measures the AWS sample. Prints the figures and writes the "Azure sample
pipeline" section of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from report import replace_section
from sample_runs import airflow_home, four_runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## Azure sample pipeline (Packer stand-in + Ansible, Resource Manager faked)"
FAIL_AT = 55
CONN_ID, GROUP = "azure_bench", "rg-imagebuild"
POLLING_NOTE = (
    "Every long-running Azure operation costs one 1 s poll here (Azure's own take seconds to hours: "
    "a real build's share of waiting is larger, and so is what a resume saves)."
)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="imagebuild-azurebench-"))
    airflow_home(work, ROOT / "dags")

    from airflow_provider_imagebuild.store import open_store
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive
    from tests.servers.azure_arm import IDENTITY_HEADER, SUBSCRIPTION, FakeArm, serving
    from tests.servers.azure_sample import DAG_ID, plant_waagent, sample_spec

    archive = bootstrapped_archive()
    root = work / "buildhost"
    log = work / "airflow-output.log"
    with serving(FakeArm()) as fake:
        fake.seed(GROUP)
        extra = {"subscriptionId": SUBSCRIPTION, "resource_manager_endpoint": fake.url}
        os.environ.update(
            IDENTITY_ENDPOINT=f"{fake.url}/msi/token",
            IDENTITY_HEADER=IDENTITY_HEADER,
            **{f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps({"conn_type": "azure", "extra": extra})},
        )
        store_url = f"sqlite:///{work}/state.db"
        (work / "pipelines").mkdir()
        (work / "pipelines/azure.yaml").write_text(sample_spec(store_url, root, fake.url, CONN_ID, GROUP))
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(ROOT / "dags")).dags[DAG_ID]
        store = open_store(store_url)

        figures = four_runs(dag, store, root, archive, log, FAIL_AT, fresh=plant_waagent)
        calls = len(fake.requests)
    figures.print()
    replace_section(
        ROOT / "docs/benchmarks.md",
        SECTION,
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores with "
            "`.venv/bin/python benchmarks/azure_bench.py` (part of `make bench`): the shipped "
            "`azure-rhel8-webserver` pipeline (15 milestones: Packer 5/10 on the stand-in template, ten Ansible "
            "playbooks, seal with the Azure agent's deprovision, publish to a gallery in two regions) through "
            "`dag.test()`, the real Azure SDKs against the loopback fake of Resource Manager, playbooks over "
            f"chroot into a Debian root filesystem. {calls} Resource Manager calls in the four runs.",
            "",
            *figures.table(FAIL_AT)[:-1],
            figures.table(FAIL_AT)[-1] + ". " + POLLING_NOTE,
        ],
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
