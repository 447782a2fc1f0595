"""``imagebuild spec check|plan`` as a merge-request job runs them: a real process, its output and
exit code, and the same verdict on every spec as the DAG file gives."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_imagebuild.dag_factory import build_dag, load_pipelines
from airflow_provider_imagebuild.spec import load_spec
from tests.cli.test_cli import run
from tests.dags.conftest import ROOT, write

GOOD = """pipeline: {name}
cloud: local
image_type: base
schedule: null
defaults: {{retries: 2, retry_delay: 60, execution_timeout: 900}}
milestones:
  42: {{action: command, key: license_check, title: License check, command: "echo ok", retries: 5}}
"""


def test_shipped_specs_check_clean() -> None:
    checked = run("spec", "check", str(ROOT / "dags/pipelines"))
    assert checked.returncode == 0, checked.stderr
    shipped = sorted((ROOT / "dags/pipelines").glob("*.yaml"))
    assert len(checked.stdout.splitlines()) == len(shipped)
    for path in shipped:
        assert f"ok {path}: DAG {load_spec(path).effective_dag_id}" in checked.stdout


def test_check_names_every_bad_spec_and_agrees_with_the_dag_file(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder / "a.yaml", GOOD.format(name="alpha"))
    write(folder / "b.yml", GOOD.format(name="beta"))
    write(folder / "c.yaml", GOOD.format(name="alpha"))  # DAG id of a.yaml again
    write(folder / "d.yaml", GOOD.format(name="delta").replace("retries: 5", "retries: five"))
    write(folder / "e.yaml", "pipeline: [unclosed\n")
    write(folder / "notes.txt", "not a spec")

    checked = run("spec", "check", str(folder))
    assert checked.returncode == 2
    assert checked.stdout.splitlines() == [
        f"ok {folder / 'a.yaml'}: DAG imagebuild_alpha, 3 milestones",
        f"ok {folder / 'b.yml'}: DAG imagebuild_beta, 3 milestones",
    ]
    errors = checked.stderr.splitlines()
    assert len(errors) == 3 and all(line.startswith("imagebuild: error: ") for line in errors), errors
    assert f"{folder / 'c.yaml'}: pipeline: DAG id imagebuild_alpha is already used by {folder / 'a.yaml'}" in errors[0]
    assert f"{folder / 'd.yaml'}: milestones.42.retries:" in errors[1]
    assert f"{folder / 'e.yaml'}: line 2: is not valid YAML" in errors[2]
    assert "Traceback" not in checked.stderr

    as_json = json.loads(run("spec", "check", "--json", str(folder)).stdout)
    assert [v["dag_id"] for v in as_json["valid"]] == sorted(load_pipelines(folder))
    assert as_json["valid"][0]["milestones"] == [0, 42, 100]
    assert [(i["file"], i["key"]) for i in as_json["invalid"]] == [
        (str(folder / "c.yaml"), "pipeline"),
        (str(folder / "d.yaml"), "milestones.42.retries"),
        (str(folder / "e.yaml"), "line 2"),
    ]

    one = run("spec", "check", str(folder / "b.yml"))  # a file may be named on its own
    assert one.returncode == 0 and one.stdout.startswith(f"ok {folder / 'b.yml'}")


def test_check_defaults_to_the_dag_files_folder_and_refuses_missing_paths(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    write(folder / "a.yaml", GOOD.format(name="alpha"))
    by_env = run("spec", "check", env={"IMAGEBUILD_PIPELINES_DIR": str(folder)})
    assert by_env.returncode == 0 and "imagebuild_alpha" in by_env.stdout

    missing = run("spec", "check", str(tmp_path / "nowhere"))
    assert missing.returncode == 4
    assert missing.stderr.strip() == f"imagebuild: error: {tmp_path / 'nowhere'}: no such file or folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("spec", "check", str(empty)).returncode == 4


def test_plan_shows_the_tasks_the_dag_will_have() -> None:
    path = ROOT / "dags/pipelines/aws-rhel8-webserver.yaml"
    spec = load_spec(path)
    dag = build_dag(spec, path.parent)

    planned = run("spec", "plan", "--json", str(path))
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)
    assert data["dag_id"] == dag.dag_id
    assert [s["task_id"] for s in data["steps"]] == [t.task_id for t in dag.topological_sort()]
    for step in data["steps"]:
        task = dag.get_task(step["task_id"])
        assert task.retries == step.get("retries", task.retries)
        if "execution_timeout" in step:
            assert task.execution_timeout.total_seconds() == step["execution_timeout"]
    assert {s["action"] for s in data["steps"]} >= {"register", "packer", "ansible", "seal", "publish"}

    table = run("spec", "plan", str(path))
    assert table.returncode == 0
    assert all(task_id in table.stdout for task_id in dag.task_ids)


def test_plan_of_a_bad_spec_is_one_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", GOOD.format(name="x").replace("cloud: local", "cloud: mars"))
    planned = run("spec", "plan", str(bad))
    assert planned.returncode == 2
    assert planned.stderr.startswith(f"imagebuild: error: {bad}: cloud:") and len(planned.stderr.splitlines()) == 1
    assert planned.stdout == ""
