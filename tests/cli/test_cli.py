"""The ``imagebuild`` CLI as shell jobs use it: a real process, its stdout, stderr and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from tests.conftest import unique

EXE = str(Path(sys.executable).with_name("imagebuild"))
CREATE_C = ["build", "create", "c", "--pipeline", "p", "--cloud", "aws", "--image-type", "t"]


def run(*args: str, store: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Tables are as wide as COLUMNS says when output is a pipe; pytest-xdist workers inherit 80.
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    if store:
        full_env["IMAGEBUILD_STORE"] = store
    return subprocess.run([EXE, *args], capture_output=True, text=True, env=full_env, timeout=60)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/cli.db"


def test_walkthrough_with_exit_codes(sqlite_url: str) -> None:
    assert run("store", "init", store=sqlite_url).returncode == 0
    created = run(
        "build",
        "create",
        "web-1",
        "--pipeline",
        "rhel8-web",
        "--cloud",
        "aws",
        "--image-type",
        "webserver",
        "--os",
        "rhel-8.10",
        "--states",
        "0,5,10,42,100",
        "--meta",
        "team=platform",
        store=sqlite_url,
    )
    assert created.returncode == 0, created.stderr
    begun = run(
        "build", "begin", "web-1", "5", "--owner", "concourse/job/42", "--lease-seconds", "120", store=sqlite_url
    )
    assert begun.returncode == 0
    token = begun.stdout.strip()
    assert len(token) == 32
    assert run("build", "heartbeat", "web-1", "5", "--token", token, store=sqlite_url).returncode == 0
    other = run("build", "begin", "web-1", "5", "--owner", "someone-else", store=sqlite_url)
    assert other.returncode == 3 and "concourse/job/42" in other.stderr
    assert (
        run(
            "build", "complete", "web-1", "5", "--token", token, "--output", "ami=ami-0123", store=sqlite_url
        ).returncode
        == 0
    )
    early = run("build", "begin", "web-1", "42", "--owner", "x", store=sqlite_url)
    assert early.returncode == 3 and "cannot start before milestone 10" in early.stderr
    token = run("build", "begin", "web-1", "10", "--owner", "x", store=sqlite_url).stdout.strip()
    failed = run(
        "build", "fail", "web-1", "10", "--token", token, "--error", "ssh timeout password=hunter2", store=sqlite_url
    )
    assert failed.returncode == 0
    stale = run("build", "complete", "web-1", "10", "--token", token, store=sqlite_url)
    assert stale.returncode == 3

    shown = run("build", "show", "web-1", "--json", store=sqlite_url)
    data = json.loads(shown.stdout)
    assert {
        "build_id",
        "pipeline",
        "cloud",
        "image_type",
        "plan",
        "current_state",
        "status",
        "completed",
        "outputs",
        "attempts",
    } <= set(data)
    assert (data["current_state"], data["status"], data["completed"]) == (10, "failed", [0, 5])
    assert data["outputs"]["5"] == {"ami": "ami-0123"}
    assert {"state", "attempt", "status", "owner", "started_at", "finished_at", "error"} <= set(data["attempts"][-1])
    assert "hunter2" not in shown.stdout

    human = run("build", "show", "web-1", store=sqlite_url)
    assert human.returncode == 0
    assert "OS installation started" in human.stdout and "failed" in human.stdout
    assert "hunter2" not in human.stdout

    reset = run("build", "reset", "web-1", "--to", "5", "--reason", "new base image", store=sqlite_url)
    assert reset.returncode == 0 and "next milestone 5" in reset.stdout
    history = json.loads(run("build", "history", "web-1", "--json", store=sqlite_url).stdout)
    assert [r["kind"] for r in history if r["type"] == "event"] == ["create", "reset"]
    assert "reset" in run("build", "history", "web-1", store=sqlite_url).stdout

    listed = json.loads(run("build", "list", "--status", "registered", "--json", store=sqlite_url).stdout)
    assert [b["build_id"] for b in listed] == ["web-1"]
    assert json.loads(run("build", "list", "--cloud", "azure", "--json", store=sqlite_url).stdout) == []
    assert "web-1" in run("build", "list", "--pipeline", "rhel8-web", store=sqlite_url).stdout


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["build", "show", "../x"], 2, "build_id"),
        (["build", "show", "a/b"], 2, "build_id"),
        (["build", "show", "x" * 200], 2, "build_id"),
        (["build", "show", "ünï"], 2, "build_id"),
        (["build", "show", "nope"], 4, "not found"),
        (["build", "begin", "b", "True", "--owner", "o"], 2, "MILESTONE"),
        (["build", "begin", "b", "ten", "--owner", "o"], 2, "MILESTONE"),
        (["build", "begin", "b", "105", "--owner", "o"], 2, "between 0 and 100"),
        (["build", "begin", "b", "--owner", "o", "--", "-5"], 2, "between 0 and 100"),
        (["build", "begin", "b", "7", "--owner", "o"], 2, "not in the plan"),
        (["build", "list", "--status", "done"], 2, "status"),
        ([*CREATE_C[:-3], "mars", "--image-type", "t"], 2, "cloud"),
        ([*CREATE_C, "--states", "0,10,5,100"], 2, "ascending"),
        ([*CREATE_C, "--states", "5,100"], 2, "start at 0"),
        ([*CREATE_C, "--meta", "novalue"], 2, "key=value"),
        (["build", "complete", "b", "5", "--token", "t", "--output", "bad key=1"], 2, "output"),
        (["build", "begin", "b", "5"], 2, "--owner"),
        (["build", "show", "b\n"], 2, "build_id"),
        ([*CREATE_C[:4], "p\nq", *CREATE_C[5:]], 2, "pipeline"),
        (["build", "begin", "b", "\u0665", "--owner", "o"], 2, "MILESTONE"),  # an Arabic-Indic five
        ([*CREATE_C, "--meta", "host_id=/var/tmp/imagebuild/other/rootfs"], 2, "reserved for the build target"),
        ([*CREATE_C, "--meta", "db_password=x"], 2, "looks like a secret"),
        (["build", "reset", "b", "--to", "5", "--reason", "x\x1b[2Jy"], 2, "control characters"),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_is_written(
    sqlite_url: str, args: list[str], code: int, needle: str
) -> None:
    run(
        "build",
        "create",
        "b",
        "--pipeline",
        "p",
        "--cloud",
        "aws",
        "--image-type",
        "t",
        "--states",
        "0,5,100",
        store=sqlite_url,
    )
    before = run("build", "show", "b", "--json", store=sqlite_url).stdout
    result = run(*args, store=sqlite_url)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert needle in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert run("build", "show", "b", "--json", store=sqlite_url).stdout == before
    assert run("build", "show", "c", store=sqlite_url).returncode == 4


def test_store_urls_carry_no_credentials() -> None:
    shown = run("--store", "sqlite:////tmp/state.db", "store", "url")
    assert shown.returncode == 0 and shown.stdout.splitlines() == ["sqlite:////tmp/state.db", "chosen by --store"]
    leaky = "dynamodb://builds?region=us-east-1&endpoint_url=http://admin:hunter2@127.0.0.1:9"
    refused = run("--store", leaky, "store", "url")
    assert refused.returncode == 2 and "must not contain credentials" in refused.stderr
    assert "hunter2" not in refused.stdout + refused.stderr


PLANTED = "Pw-PLANTED-9x"
# A password typed into every part of a store URL an error can quote back (no scheme, the scheme,
# the port, a parameter's name, each parameter, the bucket, table, container, account, path, prefix).
LEAKY_STORE_URLS = [
    f"admin:{PLANTED}@host/x",
    f"s3:/admin:{PLANTED}@host",
    f"admin:{PLANTED}@s3://bkt/p",
    f"s3://admin:{PLANTED}",
    f"dynamodb://admin:{PLANTED}",
    f"s3://bkt/p?admin:{PLANTED}@host",
    f"s3://bkt/p?endpoint_url=admin:{PLANTED}@127.0.0.1:9",
    f"s3://bkt/p?region=admin:{PLANTED}@x",
    f"sqlite:///tmp/x.db?synchronous=admin:{PLANTED}@x",
    f"s3://bkt/admin:{PLANTED}@x",
    f"gs://bkt/p?project=admin:{PLANTED}@x",
    f"azblob://bkt/p?account=admin:{PLANTED}@x",
    f"sqlite+s3:////tmp/x.db?bucket=admin:{PLANTED}@x",
    f"sqlite+s3:////tmp/x.db?bucket=bkt&prefix=admin:{PLANTED}@x",
]


def test_no_store_url_error_quotes_its_password(tmp_path: Path) -> None:
    """A store or archive URL is refused naming the field and the reason, and the error quotes back
    only what holds no password: parse_store_url's own message (the hook and spec checks print it
    too), the CLI in-process and as a shell job runs it, and ``store prune --archive``."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli
    from airflow_provider_imagebuild.store import parse_store_url
    from airflow_provider_imagebuild.store.archive import open_archive

    for url in LEAKY_STORE_URLS:
        for parse in (parse_store_url, open_archive):
            with pytest.raises(InvalidInput) as refused:
                parse(url)
            assert PLANTED.lower() not in str(refused.value).lower(), (url, str(refused.value))
        typed = CliRunner().invoke(cli, ["--store", url, "store", "url"])
        assert typed.exit_code == 2 and "store" in typed.output, (url, typed.output)
        assert PLANTED.lower() not in typed.output.lower(), (url, typed.output)
    store = f"sqlite:///{tmp_path}/s.db"
    for url in LEAKY_STORE_URLS[:3]:
        archived = CliRunner().invoke(cli, ["--store", store, "store", "prune", "--older-than", "0h", "--archive", url])
        assert archived.exit_code == 2 and "--archive" in archived.output, (url, archived.output)
        assert PLANTED not in archived.output, (url, archived.output)
    shell = run("--store", LEAKY_STORE_URLS[0], "build", "list")
    assert shell.returncode == 2 and "must look like SCHEME://" in shell.stderr, shell.stderr
    assert PLANTED not in shell.stdout + shell.stderr and "Traceback" not in shell.stderr


def test_unknown_store_scheme_and_unreachable_store() -> None:
    bad = run("--store", "ftp://x", "build", "list")
    assert bad.returncode == 2 and "unknown store scheme 'ftp'" in bad.stderr
    down = run("--store", "dynamodb://builds?region=us-east-1&endpoint_url=http://127.0.0.1:9", "build", "show", "b")
    assert down.returncode == 5 and "store unreachable" in down.stderr
    assert "Traceback" not in down.stderr


def test_default_store_lives_under_airflow_home(tmp_path: Path) -> None:
    env = {"AIRFLOW_HOME": str(tmp_path / "ah")}
    os.environ.pop("IMAGEBUILD_STORE", None)
    assert run("store", "url", env=env).stdout.splitlines()[0] == f"sqlite:///{tmp_path}/ah/imagebuild/state.db"
    assert (
        run("build", "create", "d1", "--pipeline", "p", "--cloud", "local", "--image-type", "t", env=env).returncode
        == 0
    )
    assert (tmp_path / "ah/imagebuild/state.db").exists()


def test_aws_backends_from_the_cli(moto_url: str, dynalite_url: str) -> None:
    for url in (
        f"dynamodb://{unique('cli')}?region=us-east-1&endpoint_url={dynalite_url}",
        f"s3://{unique('cli')}/x?region=us-east-1&endpoint_url={moto_url}",
    ):
        missing = run("build", "list", store=url)
        assert missing.returncode == 5 and "imagebuild store init" in missing.stderr
        assert run("store", "init", store=url).returncode == 0
        assert run("store", "init", store=url).returncode == 0
        assert (
            run("build", "create", "a1", "--pipeline", "p", "--cloud", "aws", "--image-type", "t", store=url).returncode
            == 0
        )
        token = run("build", "begin", "a1", "5", "--owner", "o", store=url).stdout.strip()
        assert run("build", "complete", "a1", "5", "--token", token, store=url).returncode == 0
        assert json.loads(run("build", "show", "a1", "--json", store=url).stdout)["completed"] == [0, 5]


def test_set_meta_writes_under_the_lease_only(tmp_path: Path) -> None:
    """``build set-meta``: a shell step that launched its own build host records it under its lease;
    once the lease has ended or was taken over, the same write is a conflict (exit 3)."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    url = f"sqlite:///{tmp_path}/s.db"

    def imagebuild(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--store", url, "build", *args])

    assert imagebuild(*CREATE_C[1:], "--states", "0,5,100").exit_code == 0
    token = imagebuild("begin", "c", "5", "--owner", "concourse/job/1", "--lease-seconds", "60").output.strip()
    ok = imagebuild("set-meta", "c", "5", "--token", token, "host_id=i-0abc", "host_address=10.0.0.7")
    assert ok.exit_code == 0 and "host_address, host_id" in ok.output, ok.output
    assert imagebuild("set-meta", "c", "5", "--token", token, "bad key=x").exit_code == 2
    other = imagebuild("set-meta", "c", "100", "--token", token, "note=x")  # not the token's milestone
    assert other.exit_code == 2 and "the lease is for milestone 5" in other.output
    assert imagebuild("complete", "c", "5", "--token", token).exit_code == 0
    ended = imagebuild("set-meta", "c", "5", "--token", token, "host_id=i-other")
    assert ended.exit_code == 3 and "stale lease token" in ended.output
    shown = json.loads(imagebuild("show", "c", "--json").output)
    assert shown["metadata"]["host_id"] == "i-0abc" and shown["metadata"]["host_address"] == "10.0.0.7"


def test_build_show_gives_readers_a_lease_id_never_the_token(tmp_path: Path) -> None:
    """``build begin`` prints the lease token to its holder only. ``build show`` (table and JSON),
    ``build list``, ``build history`` and ``report`` show a lease id derived one-way from it, the
    same for the live lease and its attempt, that cannot complete, fail or heartbeat the milestone."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    url = f"sqlite:///{tmp_path}/s.db"

    def imagebuild(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--store", url, *args])

    assert imagebuild("build", *CREATE_C[1:], "--states", "0,5,100").exit_code == 0
    token = imagebuild("build", "begin", "c", "5", "--owner", "job/1", "--lease-seconds", "600").output.strip()
    assert len(token) == 32
    readers = [
        ("build", "show", "c", "--json"),
        ("build", "show", "c"),
        ("build", "list", "--json"),
        ("build", "history", "c", "--json"),
        ("report", "--json"),
    ]
    for args in readers:
        answer = imagebuild(*args)
        assert answer.exit_code == 0, (args, answer.output)
        assert token not in answer.output, args
    shown = json.loads(imagebuild("build", "show", "c", "--json").output)
    lease_id = shown["lease"]["lease_id"]
    assert "token" not in shown["lease"] and lease_id and lease_id not in token
    assert shown["attempts"][-1]["lease_id"] == lease_id  # the holder's attempt, as readers name it
    assert all(a["lease_id"] != token for a in shown["attempts"])
    for verb in (("complete", "c", "5"), ("heartbeat", "c", "5"), ("fail", "c", "5", "--error", "x")):
        refused = imagebuild("build", *verb, "--token", lease_id)
        assert refused.exit_code == 3 and "does not hold" in refused.output, refused.output
    assert imagebuild("build", "complete", "c", "5", "--token", token).exit_code == 0


ROOT = Path(__file__).resolve().parents[2]


def test_no_error_prints_a_secret_the_command_was_given(tmp_path: Path) -> None:
    """An error's text can quote a secret with nothing around it that says so: the password of a
    store URL inside the bucket name it refused, the session token boto could not send, the value
    typed after a secret-looking name in a path click refuses, a file name in the traceback
    IMAGEBUILD_DEBUG asks for. Every error the CLI prints goes through the tasks' redaction plus
    what the command was given (arguments, environment, store URL); none of these reaches stderr."""
    secret = "Hunter2-" + unique("pw")
    bad_bucket = run("--store", f"s3://admin:{secret}@bkt/p?region=us-east-1", "build", "list")
    assert bad_bucket.returncode == 2 and "must not contain credentials" in bad_bucket.stderr

    # botocore refuses a session token it cannot put in a header, quoting it (the request never leaves)
    env = {"AWS_SESSION_TOKEN": f"x\n{secret}", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE01"}
    no_header = run("build", "list", store="s3://bkt/p?region=us-east-1&endpoint_url=http://127.0.0.1:9", env=env)
    assert no_header.returncode == 5 and "Invalid header value" in no_header.stderr

    usage = run("concourse", "render", str(tmp_path / f"spec?aws_secret_access_key={secret}"))
    assert usage.returncode == 2 and "Invalid value for 'SPEC'" in usage.stderr

    spec = ROOT / "dags/pipelines/local-debian-base.yaml"
    out = tmp_path / "missing" / f"password={secret}" / "pipeline.yml"
    debug = run(
        "concourse", "render", str(spec), "--repo-root", str(ROOT), "-o", str(out), env={"IMAGEBUILD_DEBUG": "1"}
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr

    spec_file = tmp_path / "leaky.yaml"
    spec_file.write_text(f"pipeline: p\ncloud: local\nimage_type: t\nstore: s3://admin:{secret}@bkt/p\n")
    checked = run("spec", "check", str(spec_file))
    assert checked.returncode == 2 and "store" in checked.stderr

    for result in (bad_bucket, no_header, usage, debug, checked):
        assert secret not in result.stdout + result.stderr, result.stderr


def test_an_error_naming_what_was_given_never_carries_a_terminal_escape(tmp_path: Path) -> None:
    """An error message quotes what it was given (a path, a name): an OSC or CSI sequence in it
    (a file name in a shared pipelines folder, a pasted argument) reached the terminal as is,
    setting its title or colours; it is shown escaped, the rest of the line as it was."""
    given = f"{tmp_path}/spec\x1b]0;owned\x07\x1b[31m.yaml"
    got = run("retention", "--spec", given)
    assert got.returncode == 2
    assert "\x1b" not in got.stderr and "\x07" not in got.stderr
    assert got.stderr.startswith("imagebuild: error: --spec: ") and "spec\\x1b]0;owned\\x07\\x1b[31m.yaml" in got.stderr
