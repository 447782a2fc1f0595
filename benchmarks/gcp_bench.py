"""Recovery on the Google Cloud sample pipeline: clean build, resume after a failure at 55, monolithic rerun.

The shipped ``gcp-rhel8-webserver`` pipeline through ``dag.test()`` as
``tests/operators/test_gcp_pipeline.py`` runs it: the Google API client and service account
credentials against the loopback fake of Compute Engine (operations done at once), real Packer
on the stand-in template for 5 and 10, and the real playbooks over chroot into a Debian root
filesystem. Measured the way ``aws_bench.py`` measures the AWS sample. Prints the figures and
writes the "Google Cloud sample pipeline" section of docs/benchmarks.md.
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
SECTION = "## Google Cloud sample pipeline (Packer stand-in + Ansible, Compute Engine faked)"
FAIL_AT = 55
CONN_ID = "gcp_bench"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="imagebuild-azurebench-"))
    airflow_home(work, ROOT / "dags")

    from airflow_provider_imagebuild.store import open_store
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive
    from tests.servers.gce import PROJECT, FakeGce, service_account_key, serving
    from tests.servers.gcp_sample import DAG_ID, sample_spec

    archive = bootstrapped_archive()
    root = work / "buildhost"
    log = work / "airflow-output.log"
    with serving(FakeGce()) as fake:
        fake.add_image("rhel-8-v20261101", family="rhel-8")
        key = work / "key.json"
        key.write_text(json.dumps(service_account_key(f"{fake.url}/token")))
        key.chmod(0o600)
        endpoint = f"{fake.url}/compute/v1/"
        extra = {"key_path": str(key), "project": PROJECT, "compute_endpoint": endpoint}
        conn = {"conn_type": "google_cloud_platform", "extra": extra}
        os.environ.update(NO_GCE_CHECK="True", **{f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(conn)})
        store_url = f"sqlite:///{work}/state.db"
        (work / "pipelines").mkdir()
        (work / "pipelines/gcp.yaml").write_text(sample_spec(store_url, root, endpoint, CONN_ID, PROJECT))
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(ROOT / "dags")).dags[DAG_ID]
        store = open_store(store_url)

        figures = four_runs(dag, store, root, archive, log, FAIL_AT, fresh=lambda tree: None)
        calls = len(fake.calls)
    figures.print()
    replace_section(
        ROOT / "docs/benchmarks.md",
        SECTION,
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores with "
            "`.venv/bin/python benchmarks/gcp_bench.py` (part of `make bench`): the shipped "
            "`gcp-rhel8-webserver` pipeline (15 milestones: Packer 5/10 on the stand-in template, ten Ansible "
            "playbooks, seal into the image family, publish with sharing, a copy to another location and "
            "deprecation) through `dag.test()`, the Google API client against the loopback fake of Compute "
            f"Engine, playbooks over chroot into a Debian root filesystem. {calls} Compute Engine calls in the "
            "four runs.",
            "",
            *figures.table(FAIL_AT)[:-1],
            figures.table(FAIL_AT)[-1] + ". Compute Engine operations finish at once here (Google's take "
            "seconds to minutes: a real build's share of waiting is larger, and so is what a resume saves).",
        ],
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
