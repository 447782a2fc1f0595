"""``imagebuild spec check|plan`` as a merge-request job runs them: a real process, its output and
exit code, and the same verdict on every spec as the DAG file gives."""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_imagebuild.dag_factory import build_dag, load_pipelines
from airflow_provider_imagebuild.spec.pipeline import load_spec
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
    assert len(checked.stdout.splitlines()) == len(shipped) + 1
    assert checked.stdout.splitlines()[-1] == f"{len(shipped)} ok, 0 invalid"
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
        "2 ok, 3 invalid",
    ]
    errors = checked.stderr.splitlines()
    assert len(errors) == 3, errors
    five = (folder / "d.yaml").read_text().splitlines()[6].index("five") + 1  # line 7: retries: five
    assert (
        errors[0]
        == f"{folder / 'c.yaml'}:1:11: pipeline: DAG id imagebuild_alpha is already used by {folder / 'a.yaml'}"
    )
    assert errors[1].startswith(f"{folder / 'd.yaml'}:7:{five}: milestones.42.retries: ")
    assert errors[2].startswith(f"{folder / 'e.yaml'}:2:1: is not valid YAML")
    assert "Traceback" not in checked.stderr

    as_json = json.loads(run("spec", "check", "--json", str(folder)).stdout)
    assert [v["dag_id"] for v in as_json["valid"]] == sorted(load_pipelines(folder))
    assert as_json["valid"][0]["milestones"] == [0, 42, 100]
    assert [(i["file"], i["line"], i["column"], i["key"]) for i in as_json["invalid"]] == [
        (str(folder / "c.yaml"), 1, 11, "pipeline"),
        (str(folder / "d.yaml"), 7, five, "milestones.42.retries"),
        (str(folder / "e.yaml"), 2, 1, ""),
    ]
    assert as_json["summary"] == {"ok": 2, "invalid": 3}

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


BROKEN = """\
pipeline: web
cloud: azure
image_type: base
shedule: "@daily"
defaults: {retry_delay: 5m, retries: many}
target:
  instance_type: Standard_D2s_v5
  locaton: westeurope
milestones:
  15: {action: ansble, playbook: site.yml}
"""


def _at(text: str, line: int, word: str) -> str:
    """``LINE:COLUMN`` of ``word`` on ``line`` (1-based) of ``text``."""
    return f"{line}:{text.splitlines()[line - 1].index(word) + 1}"


def test_check_reports_every_error_of_a_file_where_it_stands(tmp_path: Path) -> None:
    spec = write(tmp_path / "web.yaml", BROKEN)
    checked = run("spec", "check", str(spec))
    assert checked.returncode == 2
    assert checked.stderr.splitlines() == [
        f"{spec}:{_at(BROKEN, 4, 'shedule')}: shedule: unknown key; did you mean 'schedule'?",
        f"{spec}:{_at(BROKEN, 5, 'many')}: defaults.retries: Input should be a valid integer, unable to parse string "
        "as an integer",
        f"{spec}:{_at(BROKEN, 7, 'instance_type')}: target.instance_type: unknown key for cloud azure; azure calls it "
        "'vm_size'",
        f"{spec}:{_at(BROKEN, 8, 'locaton')}: target.locaton: unknown key; did you mean 'location'?",
        f"{spec}:{_at(BROKEN, 10, 'ansble')}: milestones.15.action: Input should be 'command', 'noop', 'packer', "
        "'bootstrap', 'ansible', 'seal', 'launch_test', 'approval' or 'publish'; did you mean 'ansible'?",
    ]
    assert checked.stdout == "0 ok, 1 invalid\n"

    missing = write(tmp_path / "short.yaml", "pipeline: web\ncloud: local\n")  # a required key: at its mapping
    assert run("spec", "check", str(missing)).stderr == f"{missing}:1:1: image_type: is required\n"


def test_check_and_plan_take_folders_below_and_end_with_a_summary(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    write(folder / "a.yaml", GOOD.format(name="alpha"))
    write(folder / "team" / "b.yml", GOOD.format(name="beta"))
    write(folder / "team" / "c.yaml", BROKEN)
    write(folder / ".hidden" / "d.yaml", BROKEN)  # an editor's or a tool's folder is not searched

    checked = run("spec", "check", str(folder))
    assert checked.returncode == 2
    assert checked.stdout.splitlines() == [
        f"ok {folder / 'a.yaml'}: DAG imagebuild_alpha, 3 milestones",
        f"ok {folder / 'team/b.yml'}: DAG imagebuild_beta, 3 milestones",
        "2 ok, 1 invalid",
    ]
    assert len(checked.stderr.splitlines()) == 5 and str(folder / ".hidden") not in checked.stderr

    planned = run("spec", "plan", str(folder))
    assert planned.returncode == 2
    lines = planned.stdout.splitlines()
    assert f"# {folder / 'a.yaml'}" in lines and f"# {folder / 'team/b.yml'}" in lines
    assert "s042_license_check" in planned.stdout and lines[-1] == "2 ok, 1 invalid"
    assert planned.stderr.splitlines()[0].startswith(f"{folder / 'team/c.yaml'}:4:1: shedule: unknown key")

    as_json = json.loads(run("spec", "plan", "--json", str(folder / "a.yaml"), str(folder / "team")).stdout)
    assert [p["dag_id"] for p in as_json["plans"]] == ["imagebuild_alpha", "imagebuild_beta"]
    assert as_json["summary"] == {"ok": 2, "invalid": 1} and len(as_json["invalid"]) == 5


def test_schema_prints_the_shipped_schema_and_one_clouds_variant() -> None:
    from airflow_provider_imagebuild.spec.schema import SCHEMA_FILE

    printed = run("spec", "schema")
    assert printed.returncode == 0 and printed.stdout == SCHEMA_FILE.read_text()
    azure = json.loads(run("spec", "schema", "--cloud", "azure").stdout)
    assert azure["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert azure["properties"]["cloud"]["const"] == "azure"
    assert azure["properties"]["target"]["$ref"] == "#/$defs/AzureTargetSpec"
    assert run("spec", "schema", "--cloud", "mars").returncode == 2
