"""``imagebuild init``: a project for every cloud whose spec passes ``spec check`` and whose DAG
loads in Airflow's DagBag (real CLI, real DagBag); refusals write nothing. The installed-wheel
case is ``tests/deploy/test_wheel.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.scaffold import SAMPLES


@pytest.mark.parametrize("cloud", sorted(SAMPLES))
def test_init_makes_a_project_whose_dag_loads(cloud: str, tmp_path: Path, airflow_home: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "golden"
    got = CliRunner().invoke(cli, ["init", str(folder), "--cloud", cloud, "--os", "rhel-9.4", "--image-type", "web"])
    assert got.exit_code == 0, got.output
    name = f"{cloud}-rhel-9-4-web"
    assert f"pipeline {name}" in got.output and "before the first run:" in got.output
    checked = CliRunner().invoke(cli, ["spec", "check", str(folder / "dags/pipelines")])
    assert checked.exit_code == 0 and f"ok {folder}/dags/pipelines/{name}.yaml" in checked.output
    bag = DagBag(dag_folder=str(folder / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[f"imagebuild_{name.replace('-', '_')}"]
    assert dag.tags and cloud in dag.tags
    uses_packer = cloud != "local"
    assert (folder / "dags/packer").is_dir() == uses_packer
    assert "make run BUILD_ID" in (folder / "README.md").read_text()
    assert "airflow dags test" in (folder / "Makefile").read_text()
    plays = (folder / "dags/ansible/15-base-config.yml").read_text()
    assert "tags: [m015, base_config]" in plays


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--cloud", "mars", "--os", "x", "--image-type", "y"], "--cloud: must be one of"),
        (["--cloud", "aws", "--os", "rhel 9", "--image-type", "y"], "--os: must be"),
        (["--cloud", "aws", "--os", "x", "--image-type", "y", "--name", "../up"], "--name: must be"),
    ],
)
def test_bad_requests_write_nothing(args: list[str], reason: str, tmp_path: Path) -> None:
    got = CliRunner().invoke(cli, ["init", str(tmp_path / "p"), *args])
    assert got.exit_code == 2 and reason in got.output
    assert not (tmp_path / "p").exists()


def test_a_folder_with_files_is_refused_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    args = ["init", str(tmp_path), "--cloud", "local", "--os", "debian-12", "--image-type", "base"]
    got = CliRunner().invoke(cli, args)
    assert got.exit_code == 2 and "is not empty (give --force" in got.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0
    assert (tmp_path / "keep.txt").read_text() == "mine" and (tmp_path / "dags/imagebuild_pipelines.py").is_file()
