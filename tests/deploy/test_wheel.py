"""Installed, not cloned: the wheel carries what ``imagebuild init`` and the samples need.

Real: the wheel built by uv from this repository, a fresh virtual environment holding it and its
locked dependencies (versions from uv.lock, nothing from the checkout), ``imagebuild init`` run
there outside the repository, the project's ``make check`` (``imagebuild spec check``) and ``make
doctor`` as docs/getting-started.md has a new user run them, and Airflow's DagBag loading the new
project's DAG file with the installed package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers.process import ROOT


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    got = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)
    assert got.returncode == 0, f"{argv}: {got.stdout[-2000:]}{got.stderr[-2000:]}"
    return got.stdout


@pytest.mark.slow
def test_an_installed_provider_scaffolds_a_project_whose_dag_loads(tmp_path: Path) -> None:
    uv = ["python3", "-m", "uv"]  # as the Makefile runs it (uv is installed for the system Python)
    _run([*uv, "build", "--wheel", "-q", "-o", str(tmp_path / "dist")], ROOT)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    locked = _run(
        [*uv, "export", "--frozen", "--no-hashes", "--no-dev", "--extra", "ansible", "--no-emit-project"], ROOT
    )
    (tmp_path / "constraints.txt").write_text(locked)
    venv = tmp_path / "venv"
    _run([*uv, "venv", "-q", "-p", sys.executable, str(venv)], tmp_path)
    _run([*uv, "pip", "install", "-q", "--python", str(venv / "bin/python"), "-c", str(tmp_path / "constraints.txt"),
          f"{wheel}[ansible]"], tmp_path)  # fmt: skip

    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}  # fmt: skip
    said = _run(
        ["imagebuild", "init", "golden", "--cloud", "local", "--os", "debian-12", "--image-type", "base"], work, env
    )
    assert "pipeline local-debian-12-base" in said
    # As the getting-started page goes on: the project's Makefile with the installed command (make
    # run's build itself is tests/operators/test_local_pipeline.py's, its first run test_first_run's).
    assert "1 ok, 0 invalid" in _run(["make", "-s", "-C", "golden", "check"], work, env)
    assert _run(["make", "-s", "-n", "-C", "golden", "doctor"], work, env).strip() == "imagebuild doctor"
    probe = (
        "import airflow_provider_imagebuild as p; from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag(dag_folder='golden/dags')\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print('=', p.__file__); print('=', sorted(bag.dags))\n"
        "print('=', len(bag.dags['imagebuild_local_debian_12_base'].tasks))"
    )
    said = _run([str(venv / "bin/python"), "-c", probe], work, env)
    out = [line[2:] for line in said.splitlines() if line.startswith("= ")]  # Airflow logs to stdout too
    assert out[0].startswith(str(venv)) and str(ROOT) not in out[0]  # the installed package, not the checkout
    from airflow_provider_imagebuild.dag_factory import build_dag
    from airflow_provider_imagebuild.spec.pipeline import load_spec

    sample = build_dag(load_spec(ROOT / "dags/pipelines/local-debian-base.yaml"), ROOT / "dags/pipelines")
    assert out[1] == "['imagebuild_local_debian_12_base']" and int(out[2]) == len(sample.tasks)  # the sample's tasks
    assert os.path.isfile(work / "golden/dags/ansible/95-seal.yml")
    assert (work / "golden/dags/ansible/group_vars/all.yml").is_file() and (work / "golden/Makefile").is_file()
