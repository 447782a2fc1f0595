"""Recovery on the AWS sample pipeline: clean build, resume after a failure at 55, monolithic rerun.

The shipped ``aws-rhel8-webserver`` pipeline through ``dag.test()`` with real Packer and EC2/SSM
calls on a loopback moto server and the real playbooks over chroot into a Debian root filesystem
(the set-up of ``tests/operators/test_aws_pipeline.py``). A monolithic rerun is what a plain
Packer + Ansible build does after a failure: everything again (a new build, from a fresh host).
Prints the figures and writes the "AWS sample pipeline" section of docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from report import replace_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## AWS sample pipeline (Packer + Ansible, EC2 on moto)"
FAIL_AT = 55


@contextlib.contextmanager
def quiet(log: Path) -> Iterator[None]:
    """Send Airflow's task output to a file (fd-level: the task runner writes to the real fds)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


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
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive, restore
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

        def build(build_id: str, fresh_host: bool, fail_at: str = "") -> tuple[float, str]:
            if fresh_host:
                shutil.rmtree(root, ignore_errors=True)
                restore(archive, root)
            os.environ["IMAGEBUILD_FAIL_AT"] = fail_at
            when = datetime.now(timezone.utc).replace(microsecond=0)
            started = time.perf_counter()
            with quiet(log):
                state = dag.test(logical_date=when, run_conf={"build_id": build_id}).state
            return time.perf_counter() - started, str(state)

        clean, state = build("bench-clean", True)
        assert state == "success", f"clean build {state}; see {log}"
        failed, state = build("bench-resume", True, str(FAIL_AT))
        assert state == "failed"
        resume, state = build("bench-resume", False)
        assert state == "success", f"resume {state}; see {log}"
        mono, state = build("bench-mono", True)
        assert state == "success"
        rec: Any = store.get("bench-clean")
        durations = {code: ms.duration_s or 0.0 for code, ms in rec.milestones.items()}
    total = sum(durations.values())
    remaining = sum(d for code, d in durations.items() if code >= FAIL_AT) / total
    figures = {
        "clean_s": clean,
        "failed_run_s": failed,
        "resume_s": resume,
        "monolithic_s": mono,
        "ratio": resume / mono,
        "remaining_share": remaining,
    }
    for key, value in figures.items():
        print(f"{key:>16}: {value:.3f}")
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
            "| run | wall time |",
            "|---|---:|",
            f"| clean build | {clean:.1f} s |",
            f"| run that fails at {FAIL_AT} | {failed:.1f} s |",
            f"| resume from {FAIL_AT} (same build id, as a clear does) | **{resume:.1f} s** |",
            f"| monolithic rerun (everything again, fresh host) | {mono:.1f} s |",
            "",
            f"Resume / monolithic = **{resume / mono:.2f}**; the milestones from {FAIL_AT} on are "
            f"{remaining:.0%} of the clean build's recorded milestone time, so the resume costs what is "
            "left to do and nothing already achieved is redone. Wall times include Airflow's per-task cost "
            "in `dag.test()` (about 1 s per task, skipped ones included).",
        ],
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
