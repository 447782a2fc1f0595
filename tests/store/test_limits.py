"""Limits every backend keeps: bounded records, honest ``complete``, refused poison and secrets.

Run against every backend (``store`` is parametrised over them in conftest). DynamoDB is checked
on dynalite too, which enforces the real 400 KB item limit (moto does not).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.build.rules import KEEP_FULL_ERRORS, TRIM_MARK
from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.errors import Conflict, InvalidInput
from airflow_provider_imagebuild.store import BuildStore
from airflow_provider_imagebuild.store.base import MAX_RECORD_BYTES
from airflow_provider_imagebuild.store.codec import dumps

PLAN = [0, 5, 10, 100]


def _create(store: BuildStore, build_id: str = "b-1") -> None:
    store.create_build(build_id, pipeline="p", cloud="aws", image_type="t", plan=PLAN)


def test_complete_refuses_what_it_would_not_record(store: BuildStore) -> None:
    """After a reset, the old token's complete is a conflict (it used to print "completed" and
    record nothing); a repeat with other outputs is a conflict; an exact repeat stays a no-op."""
    _create(store)
    lease = store.begin("b-1", 5, owner="w")
    store.complete("b-1", 5, token=lease.token, outputs={"image": "ami-1"})
    store.complete("b-1", 5, token=lease.token, outputs={"image": "ami-1"})  # a lost response, retried
    with pytest.raises(Conflict, match="already completed by this attempt with other outputs"):
        store.complete("b-1", 5, token=lease.token, outputs={"image": "ami-2"})
    store.reset("b-1", to=5, reason="redo")
    with pytest.raises(Conflict, match="was reset since"):
        store.complete("b-1", 5, token=lease.token, outputs={"image": "ami-1"})
    rec = store.get("b-1")
    assert 5 not in rec.milestones and rec.next_state == 5


@pytest.mark.parametrize("backend", ["sqlite", "file", "dynalite", "s3", "sqlite+s3"])
def test_two_hundred_long_failures_keep_the_record_bounded(backend: str, make_store: Callable[..., BuildStore]) -> None:
    """Every backend, DynamoDB on dynalite with its real 400 KB item limit (moto has none): the
    build stays writable, the newest errors are whole, older ones trimmed with a marker, and
    attempt numbers go on counting."""
    store = make_store(backend)
    store.create_build("b-1", pipeline="p", cloud="aws", image_type="t", plan=PLAN, max_attempts=201)  # not capped
    error = "Traceback (most recent call last):\n" + "x" * 7900
    for _ in range(200):
        lease = store.begin("b-1", 5, owner="worker/run/s005/try")
        store.fail("b-1", 5, token=lease.token, error=error)
    lease = store.begin("b-1", 5, owner="worker")
    rec = store.complete("b-1", 5, token=lease.token, outputs={"image": "ami-1"})
    size = len(dumps(rec.to_doc()))
    assert size <= MAX_RECORD_BYTES
    attempts = rec.attempts_at(5)
    assert attempts[-1].attempt == 201 and attempts[-1].status == "completed"
    assert rec.trimmed["attempts"] + len(attempts) == 201
    failed = [a for a in attempts if a.status == "failed"]
    assert all(a.error == error for a in failed[-(KEEP_FULL_ERRORS - 1) :])
    assert failed[0].error is not None and failed[0].error.endswith(TRIM_MARK)


@pytest.mark.parametrize("value", ["a\x00b", "line\x1b[2J", "x\u202ey"])
def test_poisoned_output_values_are_refused_and_nothing_is_written(store: BuildStore, value: str) -> None:
    _create(store)
    lease = store.begin("b-1", 5, owner="w")
    before = store.get("b-1").version
    with pytest.raises(InvalidInput, match="control characters"):
        store.complete("b-1", 5, token=lease.token, outputs={"note": value})
    assert store.get("b-1").version == before


def test_secret_looking_keys_are_refused_and_free_text_is_redacted(store: BuildStore) -> None:
    _create(store)
    lease = store.begin("b-1", 5, owner="w password=hunter2owner")
    for outputs in ({"db_password": "x"}, {"conn": {"token": "x"}}):
        with pytest.raises(InvalidInput, match="looks like a secret"):
            store.complete("b-1", 5, token=lease.token, outputs=outputs)
    with pytest.raises(InvalidInput, match="looks like a secret"):
        store.set_metadata("b-1", {"api_key": "x"})
    store.fail("b-1", 5, token=lease.token, error="error: password=hunter2 \x00\x1b[31m")
    store.reset("b-1", to=5, reason="rotated; old token=abc123def was leaked", actor="ops token=abc123def")
    rec = store.get("b-1")
    text = dumps(rec.to_doc()).decode()
    assert "hunter2" not in text and "abc123def" not in text
    assert rec.attempts_at(5)[0].owner == "w password=***"
    assert "\\u0000" not in text and "\\x00" in text  # a NUL in tool output is shown, not stored


def test_outputs_that_outgrow_the_record_are_refused_by_name(store: BuildStore) -> None:
    plan = list(range(0, 101, 4))  # 26 milestones
    store.create_build("big", pipeline="p", cloud="aws", image_type="t", plan=plan)
    payload = {f"k{i}": "v" * 3900 for i in range(4)}  # ~16 KB per milestone, under the per-milestone cap
    with pytest.raises(InvalidInput, match="outputs: would make the record of build big"):
        for code in store.get("big").plan[1:]:
            lease = store.begin("big", code, owner="w")
            store.complete("big", code, token=lease.token, outputs=payload)
    rec = store.get("big")
    assert rec.lease is not None and rec.status == "in_progress"  # refused write: the attempt is unchanged


def test_cli_complete_conflicts_and_poison(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/s.db"

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--store", url, "build", *args])

    create = ["create", "c-1", "--pipeline", "p", "--cloud", "aws", "--image-type", "t", "--states", "0,5,100"]
    assert run(*create).exit_code == 0
    token = run("begin", "c-1", "5", "--owner", "me").output.strip()
    ok = run("complete", "c-1", "5", "--token", token, "--output", "a=1")
    assert ok.exit_code == 0, ok.output
    other = run("complete", "c-1", "5", "--token", token, "--output", "a=2")
    assert other.exit_code == 3 and "other outputs" in other.output
    run("reset", "c-1", "--to", "5", "--reason", "again")
    stale = run("complete", "c-1", "5", "--token", token, "--output", "a=1")
    assert stale.exit_code == 3 and "reset since" in stale.output
    token = run("begin", "c-1", "5", "--owner", "me").output.strip()
    poison = run("complete", "c-1", "5", "--token", token, "--output", "a=x\x00y")
    assert poison.exit_code == 2 and "control characters" in poison.output
    secret = run("create", "c-2", *create[2:8], "--meta", "password=hunter2")
    assert secret.exit_code == 2 and "looks like a secret" in secret.output and "hunter2" not in secret.output


def test_an_item_dynamodb_refuses_for_size_is_not_an_outage(make_store: Callable[..., BuildStore]) -> None:
    """Should a record still outgrow DynamoDB's item limit, the write is refused as bad input
    (Airflow does not retry it), not reported as "store unreachable"."""
    store = make_store("dynalite")
    _create(store)
    doc, version = store._read("b-1")  # type: ignore[misc]
    doc = {**doc, "metadata": {"pad": "x" * 420_000}, "version": version + 1}
    with pytest.raises(InvalidInput, match="too large for a DynamoDB item"):
        store._write("b-1", doc, version)  # type: ignore[attr-defined]


def test_lone_surrogates_in_any_text_are_one_line_refusals(
    make_store: Callable[..., BuildStore], tmp_path: Any
) -> None:
    """A lone surrogate (category Cs: what a shell makes of an argument's invalid UTF-8 bytes, or a
    JSON body's ``\\ud800``) in a reason, a title, metadata or an output is refused naming the field,
    nothing written; a tool's error text keeps it escaped. It was a TypeError from the store's JSON
    encoder once every check had passed. The rule is the build domain's, so one backend shows it."""
    store = make_store("sqlite")
    _create(store)
    lone = "x\ud800y"
    refused = {
        "titles[42]": lambda: store.create_build(
            "t-1", pipeline="p", cloud="aws", image_type="t", plan=[0, 42, 100], titles={42: lone}
        ),
        "metadata.k": lambda: store.create_build(
            "m-1", pipeline="p", cloud="aws", image_type="t", metadata={"k": lone}
        ),
        "reason": lambda: store.abandon("b-1", reason=lone),
    }
    for field, attempt in refused.items():
        with pytest.raises(InvalidInput, match=rf"^{re.escape(field)}: must not contain control characters"):
            attempt()
    lease = store.begin("b-1", 5, owner="w")
    for call in (
        lambda: store.complete("b-1", 5, token=lease.token, outputs={"k": lone}),
        lambda: store.allow("b-1", 10, attempts=1, reason="\udcff"),
        lambda: store.skip("b-1", 10, reason="\udcff"),
    ):
        with pytest.raises(InvalidInput):
            call()
    assert store.find("t-1") is None and store.find("m-1") is None and not store.get("b-1").abandoned
    assert (
        store.fail("b-1", 5, token=lease.token, error=f"tool said {lone}").attempts[-1].error == "tool said x\\ud800y"
    )
    url = f"sqlite:///{tmp_path}/cli.db"
    got = CliRunner().invoke(
        cli,
        [
            "--store",
            url,
            "build",
            "create",
            "c-1",
            "--pipeline",
            "p",
            "--cloud",
            "aws",
            "--image-type",
            "t",
            "--milestones",
            "0,42,100",
            "--title",
            "42=bad \udcff",
        ],
    )
    assert got.exit_code == 2 and got.output.count("\n") == 1 and "titles[42]" in got.output, got.output
