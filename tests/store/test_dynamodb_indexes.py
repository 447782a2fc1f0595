"""The DynamoDB backend's listing indexes: a table made before them is migrated by ``store init``,
and a listing by pipeline then reads that pipeline's items instead of the whole table. Real:
moto_server through boto3 (migration and queries) and dynalite (queries on a table made with the
indexes: dynalite accepts adding an index to an existing table but ignores it, which ``init``
detects and says)."""

from __future__ import annotations

from typing import Any

from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.store.dynamodb import INDEXES, DynamoDBStore
from tests.conftest import unique


def legacy_table(store: DynamoDBStore) -> None:
    """The table as the backend made it before the indexes existed."""
    store.client.create_table(TableName=store.table, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": "build_id", "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": "build_id", "KeyType": "HASH"}])  # fmt: skip
    store._wait_active()


def test_init_adds_the_indexes_and_listing_uses_them(moto_url: str) -> None:
    endpoint = moto_url
    table = unique("legacy")
    store = open_store(f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}")
    assert isinstance(store, DynamoDBStore)
    legacy_table(store)
    for pipeline, count in (("web", 3), ("db", 12)):
        for i in range(count):
            store.create_build(f"{pipeline}-{i}", pipeline=pipeline, cloud="aws", image_type="base", plan=[0, 5, 100])

    def listed(**filters: Any) -> tuple[list[str], int]:
        store.items_read = 0
        return sorted(r.build_id for r in store.list_builds(**filters)), store.items_read

    before, read_before = listed(pipeline="web")
    assert before == ["web-0", "web-1", "web-2"] and read_before == 15  # a scan reads every item

    said = store.init()
    assert "indexes added: " + ", ".join(INDEXES) in said
    assert "ready" in store.init()  # again: nothing to add
    fresh = open_store(f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}")
    assert isinstance(fresh, DynamoDBStore)
    store = fresh
    after, read_after = listed(pipeline="web")
    assert after == before and read_after == 3  # the index: web's items only
    in_progress, _ = listed(status="completed")
    assert len(in_progress) == 15
    newest, _ = listed(pipeline="db", updated_after="2000-01-01T00:00:00Z")
    assert len(newest) == 12


def test_a_table_made_with_the_indexes_lists_from_them_on_dynalite(dynalite_url: str) -> None:
    table = unique("fresh")
    store = open_store(f"dynamodb://{table}?region=us-east-1&endpoint_url={dynalite_url}")
    assert isinstance(store, DynamoDBStore)
    assert "indexes pipeline-updated, status-updated" in store.init()
    for i in range(10):
        store.create_build(f"b-{i}", pipeline="web" if i < 2 else "db", cloud="aws", image_type="base", plan=[0, 100])
    store.items_read = 0
    assert sorted(r.build_id for r in store.list_builds(pipeline="web")) == ["b-0", "b-1"]
    assert store.items_read == 2


def test_a_server_that_ignores_new_indexes_is_reported(dynalite_url: str) -> None:
    table = unique("old")
    store = open_store(f"dynamodb://{table}?region=us-east-1&endpoint_url={dynalite_url}")
    assert isinstance(store, DynamoDBStore)
    legacy_table(store)
    store.create_build("b-1", pipeline="web", cloud="aws", image_type="base", plan=[0, 100])
    assert "did not add the indexes" in store.init()
    assert [r.build_id for r in store.list_builds(pipeline="web")] == ["b-1"]  # by scanning, still right
