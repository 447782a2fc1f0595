"""The same builds from Concourse: rendered pipelines, the state resource type, and a build that
moves between Concourse and Airflow.

Real: ``imagebuild concourse render``, ``imagebuild build should-run``, ``imagebuild milestone
run`` (the Airflow task's own code, outside Airflow), the resource type's ``check``/``in``/``out``
executables with protocol JSON on stdin, SQLite, and Airflow's ``dag.test()``. Concourse itself
cannot run here: a rendered job runs through ``tests/concourse/runner.py``, which executes its
steps in order as Concourse would (task scripts with their params as the environment, ``put``
through the resource's real ``out``), and the pipeline is checked against
``tests/concourse/pipeline.schema.json``, a schema of Concourse's pipeline configuration written
from its documentation.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from airflow_provider_imagebuild.concourse.render import render_pipeline, render_yaml
from airflow_provider_imagebuild.spec.pipeline import load_spec
from airflow_provider_imagebuild.store import open_store
from tests.concourse.runner import RESOURCE, Runner, search_path
from tests.dags.conftest import ROOT, write

SCHEMA = json.loads((Path(__file__).parent / "pipeline.schema.json").read_text())
BUILTIN_TYPES = {"git", "time", "registry-image"}
DOCUMENTED_VARS = {
    "build_id",
    "imagebuild_image",
    "imagebuild_tag",
    "source_uri",
    "source_branch",
    "source_key",
    "imagebuild_store",
}


def _walk_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for step in steps:
        found.append(step)
        found += _walk_steps([step[h] for h in ("on_failure", "on_error", "on_abort", "ensure") if h in step])
    return found


@pytest.mark.parametrize("shipped", sorted((ROOT / "dags/pipelines").glob("*.yaml")), ids=lambda p: p.stem)
def test_rendered_pipelines_follow_concourse_schema(shipped: Path) -> None:
    spec = load_spec(shipped)
    text = render_yaml(spec, shipped, ROOT)
    config = yaml.safe_load(text)
    jsonschema.validate(config, SCHEMA)
    declared = {r["name"] for r in config["resources"]}
    types = {t["name"] for t in config["resource_types"]} | BUILTIN_TYPES
    assert all(r["type"] in types for r in config["resources"])
    [job] = config["jobs"]
    steps = _walk_steps(job["plan"])
    assert all(s.get("get", s.get("put", "source")) in declared for s in steps)
    tasks = [s for s in job["plan"] if "task" in s]
    assert [int(t["task"][1:4]) for t in tasks] == [s for s in sorted({0, 100, *spec.milestones})]
    # Credentials only as ((vars)): the documented ones and one per connection the spec names.
    used = set(__import__("re").findall(r"\(\(([a-z0-9_.-]+)\)\)", text))
    assert used - DOCUMENTED_VARS <= {v for v in used if v.startswith("connection_")}
    for task in tasks:
        code = int(task["task"][1:4])
        policy = spec.milestones[code].merged(spec.defaults) if code in spec.milestones else spec.defaults
        assert task.get("attempts", 1) == (policy.retries or 0) + 1
        if code in spec.milestones and spec.milestones[code].action == "approval":  # a person's wait
            approval = spec.milestones[code].timeout
            assert task.get("timeout") == (f"{int(approval) + 60}s" if approval else None)
        elif policy.execution_timeout:
            assert task["timeout"] == f"{int(policy.execution_timeout)}s"
        assert {h["params"]["action"] for h in (task["on_failure"], task["on_error"], task["on_abort"])} == {"fail"}


def test_notification_connections_reach_the_steps(tmp_path: Path) -> None:
    spec_path = write(
        tmp_path / "repo/pipelines/n.yaml",
        """pipeline: n
cloud: local
image_type: base
notify: {to: [{slack: {slack_webhook_conn_id: slack_images}}, {webhook: {http_conn_id: builds_hook}}]}
milestones: {5: {action: command, command: "true"}}
""",
    )
    config = render_pipeline(load_spec(spec_path), spec_path, tmp_path / "repo")
    params = config["jobs"][0]["plan"][1]["config"]["params"]
    assert params["AIRFLOW_CONN_SLACK_IMAGES"] == "((connection_slack_images))"
    assert params["AIRFLOW_CONN_BUILDS_HOOK"] == "((connection_builds_hook))"


def test_a_hostile_spec_file_name_stays_a_name(tmp_path: Path) -> None:
    """A spec file named ``$(touch pwned).yaml`` in the repository: the rendered step runs nothing of it."""
    spec_path = write(tmp_path / "repo/pipelines/$(touch pwned).yaml", "pipeline: p\ncloud: local\nimage_type: t\n")
    config = render_pipeline(load_spec(spec_path), spec_path, tmp_path / "repo")
    script = config["jobs"][0]["plan"][1]["config"]["run"]["args"][1]
    assert "'$(touch pwned).yaml'" in script
    got = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
    assert got.returncode == 0, got.stderr
    last = script.strip().splitlines()[-2].replace("exec imagebuild", "echo")  # the command, echoed
    echoed = subprocess.run(["sh", "-c", last.rstrip("\\")], capture_output=True, text=True, cwd=tmp_path)
    assert "$(touch pwned).yaml" in echoed.stdout and not (tmp_path / "pwned").exists()


def test_a_schema_error_is_caught() -> None:
    """The schema refuses what Concourse would (a step with two kinds, a timeout in minutes as a number)."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"jobs": [{"name": "j", "plan": [{"get": "a", "put": "b"}]}]}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"jobs": [{"name": "j", "plan": [{"task": "t", "file": "x", "timeout": 60}]}]}, SCHEMA)


CROSS = """pipeline: cross
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
defaults: {{retries: 0, lease_seconds: 30}}
milestones:
{milestones}
"""


def cross_spec(tmp_path: Path) -> Path:
    marks = tmp_path / "marks"
    lines = [f'  {code}: {{action: command, command: "echo {code} >> {marks}"}}' for code in (5, 10, 15, 20, 100)]
    return write(tmp_path / "repo/pipelines/cross.yaml", CROSS.format(tmp=tmp_path, milestones="\n".join(lines)))


def marks(tmp_path: Path) -> list[int]:
    path = tmp_path / "marks"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def concourse(spec_path: Path, tmp_path: Path, build_id: str, fail_at: str = "") -> tuple[bool, Runner]:
    config = render_pipeline(load_spec(spec_path), spec_path, tmp_path / "repo")
    jsonschema.validate(config, SCHEMA)
    variables = {
        "build_id": build_id,
        "imagebuild_image": "x",
        "imagebuild_tag": "y",
        "source_uri": "u",
        "source_branch": "main",
        "source_key": "k",
        "imagebuild_store": f"sqlite:///{tmp_path}/state.db",
    }
    runner = Runner(config, tmp_path / "repo", variables, env={"IMAGEBUILD_FAIL_AT": fail_at})
    return runner.run_job("build-cross"), runner


def airflow(spec_path: Path, build_id: str, monkeypatch: pytest.MonkeyPatch, fail_at: str = "") -> str:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(spec_path.parent))
    monkeypatch.setenv("IMAGEBUILD_FAIL_AT", fail_at)
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["imagebuild_cross"]
    when = datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc)
    return str(dag.test(logical_date=when, run_conf={"build_id": build_id}).state)


def owners(store: Any, build_id: str) -> dict[int, str]:
    return {a.state: a.owner.split("/")[0] for a in store.get(build_id).attempts if a.status == "completed"}


@pytest.mark.slow
def test_a_build_started_in_concourse_resumes_in_airflow_and_the_other_way_round(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_path = cross_spec(tmp_path)
    store = open_store(f"sqlite:///{tmp_path}/state.db")

    # Concourse first: the job fails at 15 (the step records it; the on_failure put finds the
    # attempt over and records nothing more); Airflow resumes at 15 and delivers.
    ok, runner = concourse(spec_path, tmp_path, "from-concourse", fail_at="15")
    assert not ok
    rec = store.get("from-concourse")
    assert (rec.current_state, rec.status, rec.completed) == (15, "failed", [0, 5, 10])
    assert "failure injected at milestone 15" in str(rec.attempts_at(15)[-1].error)
    assert runner.results[-1].name == "put build-state" and runner.results[-1].status == "succeeded"
    assert "the attempt is already over" in runner.results[-1].output
    assert airflow(spec_path, "from-concourse", monkeypatch) == "success"
    assert store.get("from-concourse").delivered and marks(tmp_path) == [5, 10, 15, 20, 100]
    assert owners(store, "from-concourse") == {
        0: "concourse",
        5: "concourse",
        10: "concourse",
        15: "imagebuild_cross",
        20: "imagebuild_cross",
        100: "imagebuild_cross",
    }
    (tmp_path / "marks").unlink()

    # Airflow first: the run fails at 20; the Concourse job skips 0..15 (should-run: 10) and delivers.
    assert airflow(spec_path, "from-airflow", monkeypatch, fail_at="20") == "failed"
    ok, runner = concourse(spec_path, tmp_path, "from-airflow")
    assert ok, [(r.name, r.status, r.output[-300:]) for r in runner.results]
    assert store.get("from-airflow").delivered and marks(tmp_path) == [5, 10, 15, 20, 100]
    assert all("already completed" in r.output for r in runner.results[:4])
    assert owners(store, "from-airflow")[20] == "concourse" and owners(store, "from-airflow")[15] == "imagebuild_cross"


def _resource(command: str, request: dict[str, Any], folder: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [str(RESOURCE / command)] + ([str(folder)] if folder else [])
    return subprocess.run(
        argv,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": search_path(), "HOME": "/tmp"},
    )


def test_the_resource_speaks_concourse_protocol(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    store.init()
    for build_id in ("nightly-1", "nightly-2"):
        store.create_build(build_id, pipeline="web", cloud="aws", image_type="base", plan=[0, 5, 100])
    store.create_build("other-1", pipeline="db", cloud="aws", image_type="base", plan=[0, 5, 100])
    source = {"store": url, "pipeline": "web"}

    got = _resource("check", {"source": source, "version": None})
    assert got.returncode == 0, got.stderr
    [latest] = json.loads(got.stdout)
    assert latest == {"build_id": "nightly-2", "version": str(store.get("nightly-2").version)}

    # out: begin and complete milestone 5 of nightly-1 (the token from a file of the put's sources)
    got = _resource(
        "out",
        {
            "source": source,
            "params": {"action": "begin", "build_id": "nightly-1", "state": 5, "owner": "concourse/web"},
        },
        tmp_path,
    )
    assert got.returncode == 0, got.stderr
    token = store.get("nightly-1").lease.token  # type: ignore[union-attr]
    write(tmp_path / "lease/token", token + "\n")
    got = _resource(
        "out",
        {
            "source": source,
            "params": {
                "action": "complete",
                "build_id": "nightly-1",
                "state": "5",
                "token_file": "lease/token",
                "outputs": {"ami": "ami-1"},
            },
        },
        tmp_path,
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["version"] == {
        "build_id": "nightly-1",
        "version": str(store.get("nightly-1").version),
    }
    assert store.get("nightly-1").milestones[5].outputs == {"ami": "ami-1"}

    # check from the latest known version: the build that changed since comes after it
    got = _resource("check", {"source": source, "version": latest})
    assert [v["build_id"] for v in json.loads(got.stdout)] == ["nightly-2", "nightly-1"]

    # in: the record (no lease token), the state and status
    got = _resource(
        "in", {"source": source, "version": {"build_id": "nightly-1", "version": "3"}, "params": {}}, tmp_path / "get"
    )
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "get/current_state").read_text().strip() == "5"
    assert json.loads((tmp_path / "get/build.json").read_text())["milestones"]["5"]["outputs"] == {"ami": "ami-1"}
    assert token not in (tmp_path / "get/build.json").read_text()  # the attempts name lease ids, not tokens
    assert {"name": "pipeline", "value": "web"} in json.loads(got.stdout)["metadata"]

    # fail without a token file (the step died before it began): nothing recorded, success
    got = _resource(
        "out",
        {
            "source": source,
            "params": {
                "action": "fail",
                "build_id": "nightly-1",
                "state": 100,
                "token_file": "lease/missing",
                "error": "x",
            },
        },
        tmp_path,
    )
    assert got.returncode == 0 and "nothing to record" in got.stderr

    # Bad requests: exit 1, one line naming the field, nothing written.
    before = store.get("nightly-1").version
    for params, reason in [
        ({"action": "explode"}, "params.action: must be one of"),
        ({"action": "complete", "build_id": "nightly-1"}, "params.state: is required"),
        ({"action": "reset", "build_id": "nightly-1", "to": "5"}, "params.reason: is required"),
        (
            {"action": "fail", "build_id": "nightly-1", "state": 5, "token_file": "../../etc/passwd", "error": "x"},
            "params.token_file: must be a relative path",
        ),
    ]:
        got = _resource("out", {"source": source, "params": params}, tmp_path)
        assert got.returncode == 1 and reason in got.stderr, (params, got.stderr)
    got = _resource("check", {"source": {"store": url, "bucket": "x"}})
    assert got.returncode == 1 and "source.bucket: unknown key" in got.stderr
    got = _resource("check", {"source": source}, None)
    assert got.returncode == 0
    assert subprocess.run([str(RESOURCE / "in")], input="{", capture_output=True, text=True).returncode == 1
    assert store.get("nightly-1").version == before


def test_should_run_answers_with_its_exit_codes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    store.init()
    store.create_build("b1", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 10, 100])

    def should_run(*args: str) -> tuple[int, str]:
        got = subprocess.run(
            ["imagebuild", "--store", url, "build", "should-run", *args],
            capture_output=True,
            text=True,
            env={"PATH": search_path(), "HOME": str(tmp_path)},
        )
        return got.returncode, got.stdout + got.stderr

    assert should_run("b1", "5")[0] == 0
    assert should_run("b1", "0")[0] == 10
    assert (
        should_run("b1", "10") == (3, should_run("b1", "10")[1]) and "cannot start before" in should_run("b1", "10")[1]
    )
    store.begin("b1", 5, owner="someone/else")
    code, text = should_run("b1", "5")
    assert code == 3 and "leased by 'someone/else'" in text
    assert should_run("b1", "5", "--owner", "someone/else")[0] == 0  # its own lease: it resumes
    assert should_run("b1", "7")[0] == 2
    assert should_run("nope", "5")[0] == 4


@pytest.mark.parametrize("tried", ["abc", "2.5", "0"])
def test_a_bad_try_number_is_one_line_naming_it(tried: str, tmp_path: Path) -> None:
    """``IMAGEBUILD_TRY`` comes from the step's params: refused before anything runs or is written."""
    spec_path = cross_spec(tmp_path)
    got = subprocess.run(
        ["imagebuild", "milestone", "run", str(spec_path), "5", "--build-id", "t-1"],
        capture_output=True,
        text=True,
        env={"PATH": search_path(), "HOME": str(tmp_path), "IMAGEBUILD_TRY": tried},
    )
    assert got.returncode == 2 and "env.IMAGEBUILD_TRY: must be" in got.stderr, got.stderr
    assert len(got.stderr.strip().splitlines()) == 1 and not (tmp_path / "state.db").exists()
