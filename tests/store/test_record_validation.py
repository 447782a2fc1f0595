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
