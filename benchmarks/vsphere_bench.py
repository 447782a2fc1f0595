"""Recovery on the vSphere sample pipeline: clean build, resume after a failure at 55, monolithic rerun.

The shipped ``vsphere-rhel8-webserver`` pipeline through ``dag.test()`` as
``tests/operators/test_private_pipelines.py`` runs it: Packer's real vsphere-clone builder and
pyVmomi/vAPI against govmomi's vCenter simulator (started here, over https on loopback), and the
real playbooks over chroot into a Debian root filesystem. Measured the way ``aws_bench.py``
measures the AWS sample. Prints the figures and writes the "vSphere sample pipeline" section of
docs/benchmarks.md.
"""

from __future__ import annotations

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
SECTION = "## vSphere sample pipeline (Packer vsphere-clone + Ansible, govmomi's vCenter simulator)"
FAIL_AT = 55
CONN_ID = "vsphere_bench"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="imagebuild-vspherebench-"))
    airflow_home(work, ROOT / "dags")

    from airflow_provider_imagebuild.store import open_store
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive
    from tests.servers.private_samples import VSPHERE_DAG_ID, vsphere_spec
    from tests.servers.vcsim import connection, content_library, vcsim

    archive = bootstrapped_archive()
    root = work / "buildhost"
    log = work / "airflow-output.log"
    with vcsim(work / "vcsim.log") as (host, port):
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = connection(host, port)
        from airflow_provider_imagebuild.clouds.vsphere import VsphereClients
        from tests.servers.vcsim import DATACENTER, DATASTORE

        clients = VsphereClients.from_connection(CONN_ID)
        datacenter = clients.content.searchIndex.FindByInventoryPath(DATACENTER)
        content_library(host, port, next(d for d in datacenter.datastore if d.name == DATASTORE)._moId)
        store_url = f"sqlite:///{work}/state.db"
        (work / "pipelines").mkdir()
        (work / "pipelines/vsphere.yaml").write_text(vsphere_spec(store_url, root, CONN_ID))
        from airflow.dag_processing.dagbag import DagBag

        dag = DagBag(dag_folder=str(ROOT / "dags")).dags[VSPHERE_DAG_ID]
        store = open_store(store_url)
        figures = four_runs(dag, store, root, archive, log, FAIL_AT, fresh=lambda tree: None)
        rec = store.get("bench-clean")
        packer_s = sum(rec.milestones[code].duration_s or 0.0 for code in (5, 10))
    figures.print()
    print(f"{'packer_5_10_s':>16}: {packer_s:.3f}")
    replace_section(
        ROOT / "docs/benchmarks.md",
        SECTION,
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores with "
            "`.venv/bin/python benchmarks/vsphere_bench.py` (part of `make bench`): the shipped "
            "`vsphere-rhel8-webserver` pipeline (15 milestones: Packer's real vsphere-clone builder at 5 and 10, "
            "ten Ansible playbooks, seal into a VM template, publish into a content library with tags) through "
            "`dag.test()`, pyVmomi and the vAPI against govmomi's vCenter simulator (built from Debian's "
            "package), playbooks over chroot into a Debian root filesystem. The resume reconnects to the build "
            "VM the failed run left (a lost VM is relaunched from the checkpoint template: "
            "`tests/operators/test_private_pipelines.py`). "
            f"Packer's two milestones (5, 10) took {packer_s:.1f} s of the clean build.",
            "",
            *figures.table(FAIL_AT)[:-1],
            figures.table(FAIL_AT)[-1] + ". The simulator clones and powers VMs at once (a vCenter takes "
            "minutes to clone a template: a real build's share of waiting is larger, and so is what a resume saves).",
        ],
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
