"""A build that reused an earlier build's work (#32), as ``imagebuild build show``, ``history`` and
``diff`` tell it: a reused milestone says whose result it holds, a build delivered unchanged says
nothing changed since its source, and a diff says "reused" where one build copied the other's
fingerprint rather than "same". The records are made through the store as the first milestone
makes them (build/reuse.py chooses, ``store.reuse`` records)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.build.reuse import checkpoint_sources, taken, unchanged_source
from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.build_domain.test_reuse import PLAN, build, chain


def reused_builds(store: BuildStore) -> None:
    """night-1 delivered; night-2 reused 5..15 from it (15's checkpoint copied) and ran 20 for real,
    then waits; night-3 found nothing changed and delivered night-1's image again."""
    build(store, "night-1")
    store.create_build("night-2", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    [choice, *_] = checkpoint_sources(store.scan_builds()[0], store.get("night-2"), chain(changed_at=20))
    lease = store.begin("night-2", 5, owner="w")
    items = taken(choice, PLAN, 5, {"checkpoint_image": "night-2/copy-15"})
    store.reuse("night-2", 5, token=lease.token, source="night-1", taken=items)
    lease = store.begin("night-2", 20, owner="w")
    store.complete("night-2", 20, token=lease.token, fingerprint="20" + "2" * 62, inputs={"previous": "x"})
    store.create_build("night-3", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    whole = unchanged_source(store.scan_builds()[0], store.get("night-3"), chain())
    assert whole is not None and whole.source.build_id == "night-1"
    lease = store.begin("night-3", 5, owner="w")
    store.reuse("night-3", 5, token=lease.token, source="night-1", taken=taken(whole, PLAN, 5))


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/s.db"
    reused_builds(open_store(url))
    return url


def invoke(url: str, *args: str) -> str:
    got = CliRunner().invoke(cli, ["--store", url, *args], env={"COLUMNS": "300"})
    assert got.exit_code == 0, (got.stdout, got.stderr)
    return got.stdout


def rows(text: str) -> dict[str, list[str]]:
    """A table's TSV rows by their first cell."""
    return {line.split("\t")[0]: line.split("\t")[1:] for line in text.splitlines() if not line.startswith("#")}


def test_show_says_which_milestones_were_reused_and_from_which_build(url: str) -> None:
    partial = invoke(url, "build", "show", "night-2")
    found = rows(partial)
    for code in ("5", "10"):
        assert found[code][1] == "reused" and found[code][-1] == f"reused from build night-1 (milestone {code})"
    assert found["15"][1] == "reused"
    assert found["15"][-1] == "reused from build night-1 (milestone 15); checkpoint_image=night-2/copy-15"
    assert found["20"][1] == "completed" and "reused" not in found["20"][-1]  # it ran for real
    assert "# build status waiting" in partial and "· milestones 5..15 reused from build night-1" in partial

    whole = invoke(url, "build", "show", "night-3")
    assert "· nothing changed since build night-1: its image delivered again" in whole
    assert all(found[1] == "reused" for code, found in rows(whole).items() if code in map(str, PLAN[1:]))

    shown = json.loads(invoke(url, "build", "show", "night-3", "--json"))
    assert shown["reuse"]["headline"] == "nothing changed since build night-1: its image delivered again"
    assert shown["reuse"]["delivered_unchanged"] == "night-1" and shown["build_status"] == "delivered"
    assert shown["reuse"]["milestones"]["95"] == {
        "build_id": "night-1",
        "state": 95,
        "text": "reused from build night-1 (milestone 95)",
    }
    assert [a["reused_from"] for a in shown["attempts"] if a["state"] == 100] == [{"build_id": "night-1", "state": 100}]
    partial_json = json.loads(invoke(url, "build", "show", "night-2", "--json"))
    assert partial_json["reuse"]["delivered_unchanged"] is None and set(partial_json["reuse"]["milestones"]) == {
        "5",
        "10",
        "15",
    }
    assert json.loads(invoke(url, "build", "show", "night-1", "--json"))["reuse"] is None


def test_history_says_where_each_reused_attempt_came_from(url: str) -> None:
    text = invoke(url, "build", "history", "night-3")
    attempts = [line.split("\t") for line in text.splitlines() if "\treused\t" in line]
    assert [(row[2], row[-1]) for row in attempts] == [
        (str(c), f"reused from build night-1 (milestone {c})") for c in PLAN[1:]
    ]
    assert "# nothing changed since build night-1: its image delivered again" in text
    assert "# " not in invoke(url, "build", "history", "night-1").splitlines()[-1]  # nothing reused: no caption


def test_diff_says_reused_where_a_build_took_the_others_fingerprint(url: str) -> None:
    found = rows(invoke(url, "build", "diff", "night-1", "night-2"))
    by_code = {label.split(" · ")[0]: cells for label, cells in found.items() if " · " in label}
    for code in (5, 10, 15):
        assert by_code[str(code)] == ["reused", f"build night-2 reused it from build night-1 (milestone {code})"]
    assert by_code["20"][0] == "changed"  # run for real on other inputs
    assert by_code["95"][0] == "unknown"

    reverse = json.loads(invoke(url, "build", "diff", "night-3", "night-1", "--json"))
    for milestone in reverse["milestones"]:
        assert milestone["same"] and milestone["reused"] == [
            {"build_id": "night-3", "from": "night-1", "state": milestone["code"]}
        ]
    # Two builds that ran the same milestone for real on the same inputs are the "same", as before.
    twin = rows(invoke(url, "build", "diff", "night-2", "night-2"))
    assert [cells[0] for label, cells in twin.items() if label.startswith("20 ")] == ["same"]
