"""A stored record is checked when it is read (``BuildRecord.from_doc``), not only when it is
written: the fields that become paths, keys or names (pipeline, cloud, image type, OS, build id)
keep the patterns the store writes them with, and every timestamp is one the store writes. A
record that does not is a :class:`CorruptRecord` naming the field without echoing the value, so
one hand-edited or hostile record is reported instead of steering a path or crashing a reader
(``imagebuild store prune --archive``, the watchdog)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import CorruptRecord
from airflow_provider_imagebuild.store import open_store
from tests.conftest import FakeClock


@pytest.fixture
def doc(tmp_path: Path) -> dict[str, Any]:
    """A record written by the store itself: a lease, completed, failed and running attempts, events."""
    store = open_store(f"sqlite:///{tmp_path}/s.db", clock=FakeClock())
    store.create_build("b-1", pipeline="web", cloud="aws", image_type="base", os="rhel-8.10", plan=[0, 5, 10, 100])
    lease = store.begin("b-1", 5, owner="w")
    store.complete("b-1", 5, token=lease.token, outputs={"image_id": "ami-1"})
    lease = store.begin("b-1", 10, owner="w")
    store.fail("b-1", 10, token=lease.token, error="broke")
    store.begin("b-1", 10, owner="w")
    with sqlite3.connect(tmp_path / "s.db") as conn:
        [(text,)] = conn.execute("SELECT doc FROM builds WHERE build_id = 'b-1'")
    import json

    found: dict[str, Any] = json.loads(text)
    return found


def test_a_record_the_store_wrote_reads_back(doc: dict[str, Any]) -> None:
    rec = BuildRecord.from_doc(doc, "b-1")
    assert rec.to_doc() == doc


BAD = [
    (("build_id",), "../b-1"),
    (("pipeline",), "../../escaped"),
    (("pipeline",), "/srv/elsewhere"),
    (("pipeline",), ""),
    (("pipeline",), 7),
    (("cloud",), "../cloud"),
    (("image_type",), "a/b"),
    (("image_type",), "web\nserver"),
    (("os",), ".."),
    (("os",), "rhel/8"),
    (("version",), -1),
    (("version",), True),
    (("version",), "3"),
    (("created_at",), "soon"),
    (("updated_at",), "2026-13-01T00:00:00.000000Z"),
    (("updated_at",), "2026-01-01T00:00:00Z"),  # another width: string order would not be time order
    (("delivered_at",), "yesterday"),
    (("lease", "expires_at"), "soon"),
    (("lease", "acquired_at"), None),
    (("lease", "heartbeat_at"), "2026-01-01 00:00:00.000000"),
    (("attempts", 1, "started_at"), "later"),
    (("attempts", 2, "finished_at"), "2026-01-01T00:00:00.000000+01:00"),
    (("events", 0, "at"), 1767225600),
    (("milestones", "5", "completed_at"), "then"),
    (("milestones", "5", "started_at"), "x"),
    (("milestones", "5", "duration_s"), "long"),
    (("attempts", 1, "fingerprint"), "not-a-sha256"),  # what a milestone was made from (#32)
    (("attempts", 1, "inputs"), ["file:a"]),
    (("attempts", 1, "inputs"), {"file:<img src=x onerror=alert(1)>": "x"}),
]


@pytest.mark.parametrize(("path", "value"), BAD, ids=[".".join(map(str, p)) + f"={v!r}" for p, v in BAD])
def test_a_field_the_store_would_never_write_is_a_corrupt_record(
    doc: dict[str, Any], path: tuple[str | int, ...], value: object
) -> None:
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    with pytest.raises(CorruptRecord) as caught:
        BuildRecord.from_doc(doc)
    message = str(caught.value)
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    assert field in message, message
    if isinstance(value, str) and len(value) > 2 and path != ("build_id",):
        words = [w for w in value.split("/") if len(w) > 2 and w not in field]
        assert value not in message and not any(w in message for w in words), message  # the field, never the value


CRAFTED_USAGE = [
    ["host_hours", 1],
    {"host_hours": 1e308},
    {"transfer_gb": float("nan")},
    {"checkpoint_gb": -3},
    {"host_size": "m5." + "x" * 100_000},
    {"<img src=x onerror=alert(1)>": 1},
]


@pytest.mark.parametrize("usage", CRAFTED_USAGE, ids=[str(u)[:30] for u in CRAFTED_USAGE])
def test_a_crafted_usage_is_a_corrupt_record_naming_the_field(doc: dict[str, Any], usage: object) -> None:
    """An attempt's usage is what every cost is computed from: a list broke the report and the
    API (500), and huge, negative or non-finite figures made costs absurd or non-finite."""
    doc["attempts"][1]["usage"] = usage
    with pytest.raises(CorruptRecord, match=r"attempts\[1\]\.usage") as caught:
        BuildRecord.from_doc(doc)
    assert "xxxx" not in str(caught.value) and "onerror" not in str(caught.value), caught.value


def test_a_crafted_usage_leaves_the_report_and_the_list_working(tmp_path: Path) -> None:
    """The record with a crafted usage is reported as unreadable (naming the field), the others are
    reported and priced; the report was an AttributeError for every build before."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    url = f"sqlite:///{tmp_path}/r.db"
    store = open_store(url)
    for build_id in ("fine-1", "crafted-1"):
        store.create_build(build_id, pipeline="web", cloud="aws", image_type="base", plan=[0, 5, 100])
        lease = store.begin(build_id, 5, owner="w")
        store.complete(build_id, 5, token=lease.token, usage={"host_size": "t3.micro", "host_hours": 1})
    with sqlite3.connect(tmp_path / "r.db") as conn:
        [(text,)] = conn.execute("SELECT doc FROM builds WHERE build_id = 'crafted-1'")
        import json

        crafted = json.loads(text)
        crafted["attempts"][-1]["usage"] = ["host_hours", 1e308]
        conn.execute("UPDATE builds SET doc = ? WHERE build_id = 'crafted-1'", (json.dumps(crafted),))
    got = CliRunner().invoke(cli, ["--store", url, "report", "--json"])
    assert got.exit_code == 0, got.output
    answer = json.loads(got.stdout, parse_constant=lambda bad: pytest.fail(f"non-finite JSON: {bad}"))
    assert answer["cost"]["per_build"] == {"fine-1": pytest.approx(0.0104)}, answer["cost"]
    assert "crafted-1" in got.stderr and "].usage: must be a mapping" in got.stderr, got.stderr
    listed = CliRunner().invoke(cli, ["--store", url, "build", "list", "--json"])
    assert listed.exit_code == 0 and [b["build_id"] for b in json.loads(listed.stdout)] == ["fine-1"], listed.output
