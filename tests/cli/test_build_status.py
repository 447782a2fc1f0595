"""Status words in the CLI: the build status (registered, running, waiting, failed, delivered) in
every JSON answer and in the list, ``build list --status`` taking build statuses only."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.store import open_store

PLAN = [0, 5, 10, 100]


class Clock:
    """Store writes an hour ago, so that a lease taken for 60 s has expired by now."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc) - timedelta(hours=1)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


@pytest.fixture
def url(tmp_path: Path) -> str:
    """One build of each status: registered, waiting, failed, delivered, running, and a dead worker's."""
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url, clock=Clock())
    store.init()
    for build_id in ("reg", "wait", "fail", "done", "run", "dead"):
        store.create_build(build_id, pipeline="web", cloud="local", image_type="base", plan=PLAN)
    for build_id, codes in (("wait", [5]), ("fail", [5]), ("done", [5, 10, 100])):
        for code in codes:
            store.complete(build_id, code, token=store.begin(build_id, code, owner="w/1").token)
    store.fail("fail", 10, token=store.begin("fail", 10, owner="w/1").token, error="ssh timeout")
    store.begin("dead", 5, owner="w/gone", lease_seconds=60)  # expired an hour ago
    open_store(url).begin("run", 5, owner="w/2", lease_seconds=3600)  # live
    return url


EXPECTED = {
    "reg": "registered",
    "wait": "waiting",
    "fail": "failed",
    "done": "delivered",
    "run": "running",
    "dead": "failed",
}


def invoke(url: str, *args: str) -> tuple[int, str, str]:
    got = CliRunner().invoke(cli, ["--store", url, *args])
    return got.exit_code, got.stdout, got.stderr


def test_json_answers_carry_the_build_status(url: str) -> None:
    code, out, _ = invoke(url, "build", "list", "--json")
    assert code == 0
    assert {b["build_id"]: b["build_status"] for b in json.loads(out)} == EXPECTED
    for build_id, word in EXPECTED.items():
        shown = json.loads(invoke(url, "build", "show", build_id, "--json")[1])
        assert shown["build_status"] == word
    assert json.loads(invoke(url, "build", "show", "reg", "--json")[1])["status"] == "completed"  # milestone's
    report = json.loads(invoke(url, "report", "--json")[1])
    assert report["build_status"] == {
        "registered": 1,
        "running": 1,
        "waiting": 1,
        "failed": 2,
        "delivered": 1,
        "abandoned": 0,
    }


@pytest.mark.parametrize("word", sorted(set(EXPECTED.values())))
def test_list_filters_by_build_status(url: str, word: str) -> None:
    code, out, err = invoke(url, "build", "list", "--status", word, "--json")
    assert code == 0, err
    assert sorted(b["build_id"] for b in json.loads(out)) == sorted(b for b, w in EXPECTED.items() if w == word)


@pytest.mark.parametrize("word", ["completed", "in_progress", "bogus"])
def test_list_refuses_other_words_naming_the_build_statuses(url: str, word: str) -> None:
    code, out, err = invoke(url, "build", "list", "--status", word)
    assert code == 2 and out == ""
    assert "--status" in err and "registered, running, waiting, failed, delivered, abandoned" in err
    assert len(err.strip().splitlines()) == 1


def test_the_list_and_show_read_the_build_status(url: str) -> None:
    _, out, _ = invoke(url, "build", "list")
    lines = [line.split("\t") for line in out.splitlines() if not line.startswith("# ")]
    assert lines[0][4] == "status"
    assert {cells[0]: cells[4] for cells in lines[1:]} == EXPECTED
    assert "(delivered)" not in out
    _, shown, _ = invoke(url, "build", "show", "reg")
    assert "build status registered" in shown
