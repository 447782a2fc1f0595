"""The CLI, consistently: one word (MILESTONE) and one form for a milestone, ``--json`` on every
command that prints something, tables without box drawing when piped, no escape sequences with
``NO_COLOR``, and times in the form the Image builds pages show them. Real processes where the
terminal matters (a pipe, a pseudo-terminal); click's runner elsewhere."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli

EXE = str(Path(sys.executable).with_name("imagebuild"))
BOXES = re.compile("[\u2500-\u257f]")  # rich's box drawing characters


def commands(group: click.Group, path: str = "imagebuild") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            found.extend(commands(command, f"{path} {name}"))
    return found


def help_of(path: str) -> str:
    got = CliRunner().invoke(cli, [*path.split()[1:], "--help"], terminal_width=200)
    assert got.exit_code == 0, got.output
    return got.output


def test_a_milestone_is_called_milestone_in_every_command_and_help() -> None:
    for path, command in commands(cli):
        names = [p.name for p in command.params if isinstance(p, click.Argument)]
        assert "state" not in names, path
        assert not re.search(r"\bSTATES?\b", help_of(path)), path
    assert "MILESTONE" in help_of("imagebuild build skip") and "MILESTONE" in help_of("imagebuild build reset")


def invoke(url: str, *args: str) -> tuple[int, str, str]:
    got = CliRunner().invoke(cli, ["--store", url, *args])
    return got.exit_code, got.stdout, got.stderr


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/s.db"
    code, _, err = invoke(url, "build", "create", "b-1", "--pipeline", "p", "--cloud", "aws", "--image-type", "t")
    assert code == 0, err
    return url


def test_reset_takes_the_milestone_as_skip_does_and_keeps_to(url: str) -> None:
    token = invoke(url, "build", "begin", "b-1", "5", "--owner", "w/1")[1].strip()
    assert invoke(url, "build", "complete", "b-1", "5", "--token", token)[0] == 0
    code, out, err = invoke(url, "build", "reset", "b-1", "5", "--reason", "new base")
    assert code == 0 and "next milestone 5 · OS installation started" in out, err
    assert invoke(url, "build", "reset", "b-1", "--to", "5", "--reason", "again")[0] == 0  # the older form
    assert invoke(url, "build", "reset", "b-1", "5", "--to", "5", "--reason", "same")[0] == 0
    code, _, err = invoke(url, "build", "reset", "b-1", "5", "--to", "10", "--reason", "which")
    assert code == 2 and err.count("\n") == 1 and "--to" in err
    code, _, err = invoke(url, "build", "reset", "b-1", "--reason", "none")
    assert code == 2 and err.count("\n") == 1 and "MILESTONE" in err


PRINTING = (
    "begin",
    "complete",
    "fail",
    "skip",
    "reset",
    "heartbeat",
    "set-meta",
    "should-run",
    "create",
    "show",
    "init",
)


def test_every_command_that_prints_takes_json_with_help(url: str) -> None:
    for path, command in commands(cli):
        option = next((p for p in command.params if "--json" in getattr(p, "opts", [])), None)
        if path.split()[-1] in PRINTING or path in ("imagebuild store init", "imagebuild build list"):
            assert option is not None, path
        if option is not None:
            assert (getattr(option, "help", "") or "").strip(), f"{path} --json has no help"

    def as_json(*args: str) -> dict:
        code, out, err = invoke(url, *args, "--json")
        assert code == 0, (args, err)
        return json.loads(out)

    assert as_json("store", "init")["initialized"] is True
    lease = as_json("build", "begin", "b-1", "5", "--owner", "w/1")
    assert lease["milestone"] == 5 and len(lease["token"]) == 32 and lease["attempt"] == 1
    assert as_json("build", "heartbeat", "b-1", "5", "--token", lease["token"])["expires_at"] >= lease["expires_at"]
    meta = as_json("build", "set-meta", "b-1", "5", "team=platform", "--token", lease["token"])
    assert meta["metadata"]["team"] == "platform"
    assert as_json("build", "complete", "b-1", "5", "--token", lease["token"])["completed"] == [0, 5]
    token = as_json("build", "begin", "b-1", "10", "--owner", "w/1")["token"]
    failed = as_json("build", "fail", "b-1", "10", "--token", token, "--error", "boom")
    assert (failed["status"], failed["build_status"]) == ("failed", "failed")
    assert as_json("build", "should-run", "b-1", "10")["verdict"] == "run"
    assert as_json("build", "skip", "b-1", "10", "--reason", "not today")["next_state"] == 15
    assert as_json("build", "reset", "b-1", "5", "--reason", "again")["next_state"] == 5
    project = Path(url.removeprefix("sqlite:///")).parent / "project"
    made = as_json("init", str(project), "--cloud", "local", "--os", "debian-12", "--image-type", "base")
    assert made["dag_id"] == "imagebuild_local_debian_12_base" and str(project / "Makefile") in made["written"]


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=60)


def in_a_terminal(*args: str, env: dict[str, str]) -> str:
    """What the command writes to a terminal (a pseudo-terminal, as a person's shell has)."""
    leader, follower = pty.openpty()
    subprocess.run([EXE, *args], stdout=follower, stderr=follower, env={**os.environ, **env}, timeout=60)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal is closed once everything is read
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return out.decode()


def test_piped_tables_are_tab_separated_and_a_terminal_gets_boxes_without_colour_on_no_color(url: str) -> None:
    env = {"IMAGEBUILD_STORE": url, "TZ": "UTC"}
    for args in (["build", "list"], ["build", "show", "b-1"], ["build", "history", "b-1"], ["report"]):
        piped = run(*args, env=env)
        assert piped.returncode == 0, piped.stderr
        assert not BOXES.search(piped.stdout) and "\x1b" not in piped.stdout, args
        rows = [line.split("\t") for line in piped.stdout.splitlines() if not line.startswith("# ")]
        assert len(rows[0]) > 3 and all(len(row) == len(rows[0]) for row in rows), args
    listed = run("build", "list", env=env).stdout.splitlines()
    assert listed[1].split("\t")[:2] == ["build", "pipeline"] and listed[2].startswith("b-1\tp\taws\tt\tregistered\t")

    for build_id in ("d-1", "r-1"):  # a delivered build gives a running one of its pipeline an ETA
        create = ["build", "create", build_id, "--pipeline", "q", "--cloud", "aws", "--image-type", "t"]
        assert invoke(url, *create, "--milestones", "0,5,100")[0] == 0
    for code in ("5", "100"):
        token = invoke(url, "build", "begin", "d-1", code, "--owner", "w/1")[1].strip()
        assert invoke(url, "build", "complete", "d-1", code, "--token", token)[0] == 0
    assert invoke(url, "build", "begin", "r-1", "5", "--owner", "w/2")[0] == 0
    running = run("build", "show", "r-1", env=env).stdout.splitlines()
    assert running[-1].startswith("# expected to be delivered at "), running

    drawn = in_a_terminal("build", "list", env={**env, "NO_COLOR": ""})
    assert BOXES.search(drawn) and "\x1b[" in drawn  # a person's terminal: boxes and styles
    plain = in_a_terminal("build", "list", env={**env, "NO_COLOR": "1"})
    assert BOXES.search(plain) and "\x1b[" not in plain and "registered" in plain


def test_times_are_shown_as_the_pages_show_them(url: str) -> None:
    created = json.loads(invoke(url, "build", "show", "b-1", "--json")[1])["created_at"]  # 2026-..T..:..:..Z
    from datetime import datetime
    from zoneinfo import ZoneInfo

    moment = datetime.strptime(created, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=ZoneInfo("UTC"))
    berlin = moment.astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S %Z")
    for args in (["build", "list"], ["build", "show", "b-1"], ["build", "history", "b-1"]):
        out = run(*args, env={"IMAGEBUILD_STORE": url, "TZ": "Europe/Berlin"}).stdout
        assert berlin in out and created not in out, (args, out)
