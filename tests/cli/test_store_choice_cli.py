"""The CLI's store: ``--store URL`` or ``--conn-id ID`` (not both), else the order a task follows,
the ``imagebuild_default`` connection from ``AIRFLOW_CONN_IMAGEBUILD_DEFAULT`` included;
``imagebuild store url`` says which rule chose it. Real processes, real connections in the
environment (as Airflow reads them), real SQLite and JSON stores."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.cli.test_cli import EXE

ORDER_VARS = ("IMAGEBUILD_STORE", "IMAGEBUILD_STORE_CONN_ID", "AIRFLOW_CONN_IMAGEBUILD_DEFAULT")


def imagebuild(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A shell's ``imagebuild``: its own process, Airflow loaded (or not) as a user's would be."""
    clean = {k: v for k, v in os.environ.items() if k not in ORDER_VARS}
    full = {**clean, "COLUMNS": "200", **(env or {})}
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=full, timeout=120)


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The same command in this process (Airflow imported once for the test, not once per command)."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    unset: dict[str, str | None] = {name: None for name in (*ORDER_VARS, "AIRFLOW_CONN_BUILDS_EU")}
    done = CliRunner().invoke(cli, list(args), env={**unset, **(env or {})})
    return subprocess.CompletedProcess(list(args), done.exit_code, done.stdout, done.stderr)


def connection(url: str) -> str:
    return json.dumps({"conn_type": "imagebuild_state", "extra": {"store_url": url}})


def create(build_id: str, *flags: str, env: dict[str, str] | None = None) -> None:
    made = invoke(*flags, "build", "create", build_id, "--pipeline", "p", "--cloud", "local", "--image-type", "t",
                      env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr


def listed(*flags: str, env: dict[str, str] | None = None) -> list[str]:
    shown = invoke(*flags, "build", "list", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    return [b["build_id"] for b in json.loads(shown.stdout)]


def test_the_cli_finds_the_store_a_task_would_and_says_why(tmp_path: Path) -> None:
    home = {"AIRFLOW_HOME": str(tmp_path / "home")}
    default = {**home, "AIRFLOW_CONN_IMAGEBUILD_DEFAULT": connection(f"sqlite:///{tmp_path}/default.db")}
    create("in-default", env=default)  # no flag: the imagebuild_default connection, as a task
    assert listed(f"--store=sqlite:///{tmp_path}/default.db") == ["in-default"]
    said = imagebuild("store", "url", env=default)
    assert said.returncode == 0, said.stderr
    assert said.stdout.splitlines() == [
        f"sqlite:///{tmp_path}/default.db",
        "chosen by the imagebuild_default connection, which exists",
    ]
    assert not (tmp_path / "home/imagebuild/state.db").exists()  # never the machine's own file

    # --conn-id: any imagebuild_state connection, read from the environment as Airflow does.
    named = {**home, "AIRFLOW_CONN_BUILDS_EU": connection(f"file://{tmp_path}/eu")}
    assert invoke("--conn-id", "builds_eu", "store", "init", env=named).returncode == 0
    create("in-eu", "--conn-id", "builds_eu", env=named)
    assert listed("--conn-id", "builds_eu", env={**named, **default}) == ["in-eu"]  # the flag beats the default
    said = invoke("--conn-id", "builds_eu", "store", "url", "--json", env=named)
    assert json.loads(said.stdout) == {
        "url": f"file://{tmp_path}/eu",
        "conn_id": "builds_eu",
        "chosen_by": "--conn-id",
        "rule": "named_conn",
    }

    # The deployment's connection beats its store URL, as in a task (it was the other way round).
    both = {**named, "IMAGEBUILD_STORE_CONN_ID": "builds_eu", "IMAGEBUILD_STORE": f"sqlite:///{tmp_path}/default.db"}
    assert listed(env=both) == ["in-eu"]
    assert "chosen by $IMAGEBUILD_STORE_CONN_ID" in invoke("store", "url", env=both).stdout

    # Nothing named: the machine's own file, and the rule says so.
    said = invoke("store", "url", env=home)
    assert said.stdout.splitlines()[0] == f"sqlite:///{tmp_path}/home/imagebuild/state.db"
    assert "chosen by this machine's own SQLite file" in said.stdout


def test_store_and_conn_id_together_or_an_unknown_connection_are_refused(tmp_path: Path) -> None:
    both = imagebuild("--store", f"sqlite:///{tmp_path}/a.db", "--conn-id", "x", "build", "list")
    assert both.returncode == 2 and "--store and --conn-id: give one store, not both" in both.stderr
    unknown = invoke("--conn-id", "nowhere", "build", "list")
    assert unknown.returncode == 2, unknown.stderr
    assert "connection nowhere (--conn-id): is not defined" in unknown.stderr and "Traceback" not in unknown.stderr
    assert not (tmp_path / "a.db").exists()


def test_a_file_store_that_does_not_exist_is_an_error_for_readers_until_store_init(tmp_path: Path) -> None:
    store = f"--store=file://{tmp_path}/typo"
    for args in (["build", "list"], ["report"]):
        read = imagebuild(store, *args)
        assert read.returncode == 5, (args, read.stdout, read.stderr)
        assert f"the folder {tmp_path}/typo does not exist (imagebuild store init creates it)" in read.stderr
        assert "0 build" not in read.stdout
    shown = imagebuild(store, "build", "show", "b-1")
    assert shown.returncode == 4 and f"{tmp_path}/typo does not exist" in shown.stderr
    assert not (tmp_path / "typo").exists()
    assert imagebuild(store, "store", "init").returncode == 0
    assert listed(store) == []
