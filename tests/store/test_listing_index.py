"""The S3 and JSON-file backends' listing index (``store/index.py``): a filtered listing reads
only the records that may match, and an index that is behind, wrong or gone never makes a listing
wrong. Real: moto_server's S3 through boto3, and the file system."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.conftest import unique


@pytest.fixture(params=["file", "s3"])
def indexed(request: pytest.FixtureRequest, tmp_path: Path) -> BuildStore:
    if request.param == "file":
        store = open_store(f"file://{tmp_path}/json")
    else:
        moto = request.getfixturevalue("moto_url")
        store = open_store(f"s3://{unique('ix')}/state?region=us-east-1&endpoint_url={moto}")
    store.init()
    for pipeline, count in (("web", 2), ("db", 8)):
        for i in range(count):
            store.create_build(f"{pipeline}-{i}", pipeline=pipeline, cloud="aws", image_type="base", plan=[0, 5, 100])
    return store


def listed(store: BuildStore, **filters: str) -> tuple[list[str], int]:
    store.items_read = 0  # type: ignore[attr-defined]
    return sorted(r.build_id for r in store.list_builds(**filters)), store.items_read  # type: ignore[attr-defined]


def test_a_filtered_listing_reads_only_what_may_match(indexed: BuildStore) -> None:
    assert listed(indexed, pipeline="web") == (["web-0", "web-1"], 2)
    lease = indexed.begin("db-3", 5, owner="w")
    indexed.complete("db-3", 5, token=lease.token)  # written again: its entry follows
    assert listed(indexed, pipeline="db")[1] == 8
    assert listed(indexed)[1] == 10  # no filter: every record
    for code in (5, 100):  # delivered: only a finished build's record may be pruned
        lease = indexed.begin("web-0", code, owner="w")
        indexed.complete("web-0", code, token=lease.token)
    assert indexed.prune("web-0", updated_before="2999-01-01T00:00:00Z")  # a delete drops its entry
    assert listed(indexed, pipeline="web") == (["web-1"], 1)


def test_a_wrong_or_missing_index_is_never_believed(indexed: BuildStore, tmp_path: Path) -> None:
    """Entries whose stamp is not the record's (a lost index update, an index edited by hand)
    are read; a deleted index only costs reads."""
    lie = {build_id: {"stamp": "not-this-version", "pipeline": "db", "cloud": "aws", "status": "completed",
                      "updated_at": "2026-01-01T00:00:00Z"} for build_id in ("web-0", "web-1")}  # fmt: skip
    write_index(indexed, lie)
    assert listed(indexed, pipeline="web") == (["web-0", "web-1"], 10)  # every stamp differs: all read
    drop_index(indexed)
    assert listed(indexed, pipeline="web") == (["web-0", "web-1"], 10)
    indexed.create_build("web-9", pipeline="web", cloud="aws", image_type="base", plan=[0, 5, 100])
    assert listed(indexed, pipeline="web")[0] == ["web-0", "web-1", "web-9"]


def write_index(store: BuildStore, entries: dict[str, object]) -> None:
    if hasattr(store, "index_path"):
        store.index_path.write_text(json.dumps(entries))
    else:
        store.client.put_object(Bucket=store.bucket, Key=store.index_key, Body=json.dumps(entries).encode())  # type: ignore[attr-defined]


def drop_index(store: BuildStore) -> None:
    if hasattr(store, "index_path"):
        store.index_path.unlink()
    else:
        store.client.delete_object(Bucket=store.bucket, Key=store.index_key)  # type: ignore[attr-defined]
