"""The state resource type at its edge: what a pipeline's params, a step's files and a broken
request can make it do.

Real: the resource's ``check``/``in``/``out`` executables in a subprocess with protocol JSON on
stdin, SQLite, real files and symlinks. Every refusal is one line on stderr naming the field,
exit status 1, and nothing written to the store.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.concourse.runner import RESOURCE, search_path
from tests.targets.test_resume_after_delivery import delivered

SECRET = "TOP-SECRET-CONTENT 0123456789abcdef"


def resource(command: str, request: Any, folder: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The resource's executable with ``request`` on stdin (a str or bytes is sent as it is)."""
    argv = [str(RESOURCE / command)] + ([str(folder)] if folder else [])
    data = request if isinstance(request, (str, bytes)) else json.dumps(request)
    got = subprocess.run(
        argv,
        input=data.encode() if isinstance(data, str) else data,
        capture_output=True,
        timeout=60,
        env={"PATH": search_path(), "HOME": "/tmp"},
    )
    return subprocess.CompletedProcess(got.args, got.returncode, got.stdout.decode(), got.stderr.decode())


def refused(got: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 1 with one line on stderr holding every word, and no traceback."""
    assert got.returncode == 1, (got.returncode, got.stderr)
    assert "Traceback" not in got.stderr and len(got.stderr.strip().splitlines()) == 1, got.stderr
    for word in words:
        assert word in got.stderr, (word, got.stderr)


@pytest.fixture
def sqlite(tmp_path: Path) -> tuple[str, BuildStore]:
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    store.init()
    store.create_build("b-1", pipeline="web", cloud="local", image_type="t", plan=[0, 5, 10, 100])
    return url, store


# -- item 6: a reset through Concourse meets the guard the CLI and API apply --------------------


def test_a_concourse_reset_of_a_delivered_build_is_refused_like_the_cli(tmp_path: Path) -> None:
    """Host released and checkpoints deleted: a reset to 90 would be recorded, then fail at the
    relaunch. The resource refuses it (the store does), naming what to do; a reset to 5 works."""
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    store.init()
    delivered(store, "d-1")
    version = store.get("d-1").version
    params = {"action": "reset", "build_id": "d-1", "to": 90, "reason": "again"}
    got = resource("out", {"source": {"store": url}, "params": params}, tmp_path)
    refused(got, "cannot run again from milestone 90", "Redo from 5")
    assert store.get("d-1").version == version and store.get("d-1").delivered
    got = resource("out", {"source": {"store": url}, "params": {**params, "to": "5"}}, tmp_path)
    assert got.returncode == 0, got.stderr
    assert store.get("d-1").next_state == 5


# -- item 7: file params stay inside the put's sources folder, their content never echoed ------


def _outside(tmp_path: Path) -> Path:
    secret = tmp_path / "elsewhere/secret.txt"
    secret.parent.mkdir()
    secret.write_text(SECRET + "\n")
    return secret


def test_file_params_do_not_follow_symlinks_out_of_the_sources(tmp_path: Path, sqlite: tuple[str, BuildStore]) -> None:
    url, store = sqlite
    secret = _outside(tmp_path)
    (tmp_path / "elsewhere/outputs.json").write_text(json.dumps({"stolen": SECRET}))
    lease = store.begin("b-1", 5, owner="w")
    (tmp_path / "elsewhere/token").write_text(lease.token)
    sources = tmp_path / "sources"
    (sources / "lease").mkdir(parents=True)
    (sources / "lease/build_id").symlink_to(secret)
    (sources / "lease/token").symlink_to(tmp_path / "elsewhere/token")
    (sources / "lease/outputs.json").symlink_to(tmp_path / "elsewhere/outputs.json")
    (sources / "linked").symlink_to(tmp_path / "elsewhere")  # a folder link leading out
    version = store.get("b-1").version
    base = {"action": "complete", "build_id": "b-1", "state": 5, "token": lease.token}
    for params, field in [
        ({**base, "build_id_file": "lease/build_id"}, "params.build_id_file"),
        ({**base, "build_id_file": "linked/secret.txt"}, "params.build_id_file"),
        ({**base, "token": None, "token_file": "lease/token"}, "params.token_file"),
        ({**base, "token": None, "token_file": "linked/token"}, "params.token_file"),
        ({**base, "outputs_file": "lease/outputs.json"}, "params.outputs_file"),
        ({**base, "outputs_file": "linked/outputs.json"}, "params.outputs_file"),
        ({**base, "build_id_file": str(secret)}, "params.build_id_file"),
        ({**base, "build_id_file": "lease/../../elsewhere/secret.txt"}, "params.build_id_file"),
    ]:
        got = resource("out", {"source": {"store": url}, "params": params}, sources)
        refused(got, field, "sources")
        assert SECRET not in got.stderr + got.stdout
    rec = store.get("b-1")
    assert rec.version == version and 5 not in rec.completed and "stolen" not in json.dumps(rec.to_public())


def test_a_link_inside_the_sources_is_followed(tmp_path: Path, sqlite: tuple[str, BuildStore]) -> None:
    url, store = sqlite
    lease = store.begin("b-1", 5, owner="w")
    sources = tmp_path / "sources"
    (sources / "step").mkdir(parents=True)
    (sources / "step/token").write_text(lease.token + "\n")
    (sources / "step/build_id").write_text("b-1\n")
    (sources / "step/outputs.json").write_text('{"image_id": "img-1"}')
    (sources / "lease").symlink_to(sources / "step")  # how an input can appear: a link to a sibling
    params = {
        "action": "complete",
        "build_id_file": "lease/build_id",
        "state": 5,
        "token_file": "lease/token",
        "outputs_file": "lease/outputs.json",
    }
    got = resource("out", {"source": {"store": url}, "params": params}, sources)
    assert got.returncode == 0, got.stderr
    assert store.get("b-1").milestones[5].outputs == {"image_id": "img-1"}


def test_a_files_content_is_never_quoted_in_an_error(tmp_path: Path, sqlite: tuple[str, BuildStore]) -> None:
    url, store = sqlite
    lease = store.begin("b-1", 5, owner="w")
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "id").write_text(SECRET + "\n")
    (sources / "token").write_text(SECRET + "\n")
    (sources / "outputs.json").write_text('{"' + SECRET + '": 1}')
    (sources / "broken.json").write_text('{"a": ' + SECRET)
    (sources / "binary").write_bytes(b"\xff\xfe" + SECRET.encode())
    version = store.get("b-1").version
    base = {"action": "complete", "build_id": "b-1", "state": 5, "token": lease.token}
    for params, words in [
        ({**base, "build_id_file": "id"}, ["params.build_id_file: its content is not a valid build id"]),
        ({**base, "build_id_file": "binary"}, ["params.build_id_file", "UTF-8"]),
        ({**base, "token": None, "token_file": "token"}, ["params.token_file"]),
        ({**base, "outputs_file": "outputs.json"}, ["params.outputs_file"]),
        ({**base, "outputs_file": "broken.json"}, ["params.outputs_file", "JSON"]),
        ({**base, "outputs_file": "binary"}, ["params.outputs_file"]),
    ]:
        got = resource("out", {"source": {"store": url}, "params": params}, sources)
        refused(got, *words)
        assert SECRET not in got.stderr + got.stdout and "TOP-SECRET" not in got.stderr
    assert store.get("b-1").version == version


def test_get_does_not_write_through_a_link_in_its_destination(tmp_path: Path, sqlite: tuple[str, BuildStore]) -> None:
    url, _store = sqlite
    secret = _outside(tmp_path)
    destination = tmp_path / "get"
    destination.mkdir()
    (destination / "build.json").symlink_to(secret)
    got = resource("in", {"source": {"store": url}, "version": {"build_id": "b-1", "version": "1"}}, destination)
    refused(got, "build.json")
    assert secret.read_text() == SECRET + "\n"


# -- item 15: every param parses strictly; a malformed request is one line ---------------------


@pytest.mark.parametrize(
    "value",
    ["abc", 1e400, 2.9, True, "1e3", -5, 0, 10**30, "", " 60", [60], {"s": 60}, 7 * 24 * 3600 + 1, "٣"],
    ids=repr,
)
def test_lease_seconds_is_an_integer_or_refused(value: Any, tmp_path: Path, sqlite: tuple[str, BuildStore]) -> None:
    url, store = sqlite
    version = store.get("b-1").version
    params = {"action": "begin", "build_id": "b-1", "state": 5, "lease_seconds": value}
    got = resource("out", {"source": {"store": url}, "params": params}, tmp_path)
    refused(got, "params.lease_seconds")
    assert store.get("b-1").version == version and store.get("b-1").lease is None


@pytest.mark.parametrize("value", [600, "600", 600.0])
def test_lease_seconds_as_concourse_gives_it(value: Any, tmp_path: Path, sqlite: tuple[str, BuildStore]) -> None:
    url, store = sqlite
    params = {"action": "begin", "build_id": "b-1", "state": 5, "lease_seconds": value}
    got = resource("out", {"source": {"store": url}, "params": params}, tmp_path)
    assert got.returncode == 0, got.stderr
    assert store.get("b-1").lease.seconds == 600  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 100_000,
        '{"source": ' * 50_000,
        '{"source": {"store": "sqlite:///x.db", "env": {"A": ' + "[" * 40 + "]" * 40 + "}}}",
        '{"version": ' + "9" * 5000 + "}",
        b'{"source": {"store": "\xff"}}',
        "",
        "[]",
        "null",
    ],
    ids=lambda r: repr(r[:20]),
)
def test_a_malformed_request_is_one_line(raw: str | bytes, tmp_path: Path) -> None:
    for command, folder in (("check", None), ("in", tmp_path / "get"), ("out", tmp_path)):
        refused(resource(command, raw, folder), "request")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('"lease_seconds": 1e400', "params.lease_seconds"),
        ('"lease_seconds": NaN', "params.lease_seconds"),
        ('"lease_seconds": -Infinity', "params.lease_seconds"),
        ('"owner": NaN', "params.owner"),
        ('"lease_seconds": 300, "outputs": {"x": 1e400}', "params.outputs: unknown key"),  # not a begin's
    ],
)
def test_numbers_json_cannot_carry_name_their_field(
    raw: str, field: str, tmp_path: Path, sqlite: tuple[str, BuildStore]
) -> None:
    """``1e400``, ``NaN`` and ``Infinity`` as written in the request's text, not as Python sends them."""
    url, store = sqlite
    version = store.get("b-1").version
    text = '{"source": {"store": "%s"}, "params": {"action": "begin", "build_id": "b-1", "state": 5, %s}}'
    got = resource("out", text % (url, raw), tmp_path)
    refused(got, field)
    assert store.get("b-1").version == version


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"action": "begin", "build_id": "b-1", "state": 5.5}, "params.state"),
        ({"action": "begin", "build_id": "b-1", "state": True}, "params.state"),
        ({"action": "begin", "build_id": "b-1", "state": 1e400}, "params.state"),
        ({"action": "begin", "build_id": "b-1", "state": 5, "owner": {"a": 1}}, "params.owner"),
        ({"action": "begin", "build_id": ["b-1"], "state": 5}, "params.build_id"),
        ({"action": "begin", "build_id": "../x", "state": 5}, "params.build_id"),
        ({"action": "begin", "build_id_file": 5, "state": 5}, "params.build_id_file"),
        ({"action": "complete", "build_id": "b-1", "state": 5, "token": 12345678}, "params.token"),
        ({"action": "complete", "build_id": "b-1", "state": 5, "token": "ab" * 8, "outputs": [1]}, "params.outputs"),
        ({"action": "reset", "build_id": "b-1", "to": 5.5, "reason": "x"}, "params.to"),
        ({"action": "reset", "build_id": "b-1", "to": 5, "reason": {"x": 1}}, "params.reason"),
        ({"action": "fail", "build_id": "b-1", "state": 5, "token": "ab" * 8, "error": 3.5}, "params.error"),
        ({"action": ["begin"]}, "params.action"),
        ({"action": "begin", "build_id": "b-1", "state": 5, "bogus": 1}, "params.bogus"),
    ],
    ids=lambda v: json.dumps(v)[:60] if isinstance(v, dict) else v,
)
def test_a_bad_param_is_one_line_naming_it(
    params: dict[str, Any], field: str, tmp_path: Path, sqlite: tuple[str, BuildStore]
) -> None:
    url, store = sqlite
    version = store.get("b-1").version
    refused(resource("out", {"source": {"store": url}, "params": params}, tmp_path), field)
    assert store.get("b-1").version == version


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"env": {"": "x"}}, "source.env"),
        ({"env": {"A=B": "x"}}, "source.env"),
        ({"env": {"X": "a\u0000b"}}, "source.env.X"),
        ({"env": {"X": {"y": 1}}}, "source.env.X"),
        ({"env": ["X=1"]}, "source.env"),
        ({"pipeline": ["web"]}, "source.pipeline"),
        ({"cloud": 5}, "source.cloud"),
        ({"build_id": "../x"}, "source.build_id"),
        ({"store": 5}, "source.store"),
    ],
    ids=lambda v: json.dumps(v)[:40] if isinstance(v, dict) else v,
)
def test_a_bad_source_is_one_line_naming_it(
    source: dict[str, Any], field: str, tmp_path: Path, sqlite: tuple[str, BuildStore]
) -> None:
    url, _store = sqlite
    request = {"source": {"store": url, **source}, "version": {"build_id": "b-1", "version": "1"}}
    for command, folder in (("check", None), ("in", tmp_path / "get")):
        refused(resource(command, request, folder), field)


@pytest.mark.parametrize(
    ("version", "field"),
    [
        ({"build_id": "../x", "version": "1"}, "version.build_id"),
        ({"build_id": "b-1", "version": 1.5}, "version.version"),
        ({"build_id": "b-1", "version": "1", "extra": 1}, "version.extra"),
    ],
)
def test_a_bad_version_is_one_line_naming_it(
    version: dict[str, Any], field: str, tmp_path: Path, sqlite: tuple[str, BuildStore]
) -> None:
    url, _store = sqlite
    for command, folder in (("check", None), ("in", tmp_path / "get")):
        refused(resource(command, {"source": {"store": url}, "version": version}, folder), field)


def test_a_credential_of_source_env_never_reaches_the_log(tmp_path: Path) -> None:
    """Concourse hands the resource credentials in ``source.env`` (from its credential manager), and
    botocore quotes a session token it cannot put in a header. The log is redacted as the CLI
    redacts what it prints: the shared patterns plus the secrets the process was given (its
    environment once ``source.env`` is applied, the request), so the token is not in the log."""
    secret = "Hunter2-concourse-session"
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE01", "AWS_SECRET_ACCESS_KEY": "x" * 40,
           "AWS_SESSION_TOKEN": f"x\n{secret}"}  # fmt: skip
    source = {"store": "s3://bkt/p?region=us-east-1&endpoint_url=http://127.0.0.1:9", "env": env}
    got = resource("check", {"source": source})
    refused(got, "Invalid header value")
    assert secret not in got.stderr + got.stdout, got.stderr
