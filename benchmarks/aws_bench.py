"""Recovery on the AWS sample pipeline: clean build, resume after a failure at 55, monolithic rerun.

The shipped ``aws-rhel8-webserver`` pipeline through ``dag.test()`` with real Packer and EC2/SSM
calls on a loopback moto server and the real playbooks over chroot into a Debian root filesystem
(the set-up of ``tests/operators/test_aws_pipeline.py``). A monolithic rerun is what a plain
Packer + Ansible build does after a failure: everything again (a new build, from a fresh host).
Prints the figures and writes the "AWS sample pipeline" section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import replace_section
from sample_runs import four_runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## AWS sample pipeline (Packer + Ansible, EC2 on moto)"
FAIL_AT = 55


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="imagebuild-awsbench-"))
    os.environ.update(
        AIRFLOW_HOME=str(work / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        IMAGEBUILD_PIPELINES_DIR=str(work / "pipelines"),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)

    import boto3

    from airflow_provider_imagebuild.store import open_store
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive
    from tests.servers.aws_sample import DAG_ID, moto_connection, sample_spec
    from tests.servers.process import free_port, running

    archive = bootstrapped_archive()
    root = work / "buildhost"
    log = work / "airflow-output.log"
    port = free_port()
    moto = [sys.executable, str(ROOT / "tests/servers/moto_serial.py"), str(port)]
    with running(moto, port, work / "moto.log") as moto_url:
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_url)
        base_ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        store_url = f"sqlite:///{work}/state.db"
        (work / "pipelines").mkdir()
        (work / "pipelines/aws.yaml").write_text(sample_spec(store_url, base_ami, root))
        os.environ["AIRFLOW_CONN_AWS_MOTO"] = moto_connection(moto_url)
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(ROOT / "dags")).dags[DAG_ID]
        store = open_store(store_url)

        figures = four_runs(dag, store, root, archive, log, FAIL_AT, fresh=lambda tree: None)
    figures.print()
    replace_section(
        ROOT / "docs/benchmarks.md",
        SECTION,
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores with "
            "`.venv/bin/python benchmarks/aws_bench.py` (part of `make bench`): the shipped "
            "`aws-rhel8-webserver` pipeline (15 milestones: Packer 5/10, ten Ansible playbooks, seal, publish "
            "to two regions) through `dag.test()`, real Packer and EC2/SSM calls on moto, playbooks over "
            "chroot into a Debian root filesystem.",
            "",
            *figures.table(FAIL_AT)[:-1],
            figures.table(FAIL_AT)[-1] + ", so the resume costs what is left to do and nothing already achieved "
            "is redone. Wall times include Airflow's per-task cost in `dag.test()` (about 1 s per task, skipped "
            "ones included).",
        ],
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
