"""DynamoDB backend: for many workers on many machines (Celery or Kubernetes executors).

One item per build. Reads are strongly consistent; every write is a ``PutItem`` with a
``ConditionExpression`` on the ``version`` attribute (or ``attribute_not_exists`` on create), so
concurrent writers cannot lose each other's updates. The table is created by ``init`` only.

Listing by pipeline or by status queries a global secondary index (``pipeline-updated``,
``status-updated``: the attribute and ``updated_at``, every attribute projected) instead of
scanning the table, so a report on one pipeline reads that pipeline's items, not all of them.
``init`` adds the indexes to a table made before they existed (one at a time, as DynamoDB
allows), and until then listing scans as before. Index reads are eventually consistent: a
listing may miss a change of the last second, which a build's own reads (strongly consistent)
never do. ``items_read`` counts the items DynamoDB examined, for the benchmarks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from airflow_provider_imagebuild.clouds.aws import aws_errors, client_error_code
from airflow_provider_imagebuild.errors import CorruptRecord, InvalidInput, StoreUnavailable
from airflow_provider_imagebuild.store import codec
from airflow_provider_imagebuild.store.base import BuildStore, CasFailed, ClientFactory, Doc, ListFilter

log = logging.getLogger(__name__)

INIT_WAIT_S = 60
# name -> the attribute it is keyed by (sorted by updated_at)
INDEXES = {"pipeline-updated": "pipeline", "status-updated": "status"}


class DynamoDBStore(BuildStore):
    def __init__(self, table: str, client_factory: ClientFactory, url: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self._client_factory = client_factory
        self.url = url or f"dynamodb://{table}"
        self.items_read = 0
        self._indexed: bool | None = None  # whether the table has INDEXES (None: not looked yet)

    @property
    def client(self) -> Any:
        return self._client_factory("dynamodb")

    def describe(self) -> str:
        return f"DynamoDB table {self.table}"

    def init(self) -> str:
        with aws_errors(self.describe(), transient=StoreUnavailable):
            try:
                self.client.create_table(
                    TableName=self.table,
                    AttributeDefinitions=[
                        {"AttributeName": name, "AttributeType": "S"}
                        for name in ("build_id", "pipeline", "status", "updated_at")
                    ],
                    KeySchema=[{"AttributeName": "build_id", "KeyType": "HASH"}],
                    GlobalSecondaryIndexes=[_index(name, key) for name, key in INDEXES.items()],
                    BillingMode="PAY_PER_REQUEST",
                )
                created = True
            except Exception as exc:
                if client_error_code(exc) != "ResourceInUseException":
                    raise
                created = False
            table = self._wait_active()
            added: list[str] = []
            missing: list[str] = []
            present = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
            for name, key in INDEXES.items():
                if name in present:
                    continue
                self._add_index(name, key)
                table = self._wait_active()
                if name not in {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}:
                    # dynalite, for one, accepts the update and ignores it
                    missing.append(name)
                else:
                    added.append(name)
        self._indexed = not missing
        if created:
            return f"{self.describe()} created (on-demand billing, indexes {', '.join(INDEXES)})"
        if missing:
            return (f"{self.describe()} ready, but this server did not add the indexes {', '.join(missing)}: "
                    "listing scans the table")  # fmt: skip
        return f"{self.describe()} ready" + (f" (indexes added: {', '.join(added)})" if added else "")

    def _add_index(self, name: str, key: str) -> None:
        """Create one index on the existing table. DynamoDB-compatible servers that predate
        on-demand billing (dynalite, old DynamoDB Local) insist on a provisioned throughput, which
        DynamoDB itself refuses for an on-demand table: given only when they ask."""
        attributes = [{"AttributeName": a, "AttributeType": "S"} for a in (key, "updated_at")]
        create = _index(name, key)
        try:
            self.client.update_table(TableName=self.table, AttributeDefinitions=attributes,
                                     GlobalSecondaryIndexUpdates=[{"Create": create}])  # fmt: skip
        except Exception as exc:
            if client_error_code(exc) != "ValidationException" or "provisionedthroughput" not in str(exc).lower():
                raise
            create["ProvisionedThroughput"] = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            self.client.update_table(TableName=self.table, AttributeDefinitions=attributes,
                                     GlobalSecondaryIndexUpdates=[{"Create": create}])  # fmt: skip

    def _wait_active(self) -> dict[str, Any]:
        """The table's description once it and its indexes are ACTIVE (bounded)."""
        deadline = time.monotonic() + INIT_WAIT_S
        while True:
            table: dict[str, Any] = self.client.describe_table(TableName=self.table)["Table"]
            indexes = [i.get("IndexStatus", "ACTIVE") for i in table.get("GlobalSecondaryIndexes", [])]
            if table["TableStatus"] == "ACTIVE" and all(status == "ACTIVE" for status in indexes):
                return table
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"{self.describe()} is still {table['TableStatus']} after {INIT_WAIT_S}s")
            time.sleep(0.2)

    def indexed(self) -> bool:
        if self._indexed is None:
            with aws_errors(self.describe(), transient=StoreUnavailable):
                table = self.client.describe_table(TableName=self.table)["Table"]
            present = {
                i["IndexName"]
                for i in table.get("GlobalSecondaryIndexes", [])
                if i.get("IndexStatus", "ACTIVE") == "ACTIVE"
            }
            self._indexed = set(INDEXES) <= present
            if not self._indexed:
                log.warning("%s has no listing indexes yet: listing scans it (imagebuild store init adds them)",
                            self.describe())  # fmt: skip
        return self._indexed

    def _read(self, build_id: str) -> tuple[Doc, Any] | None:
        with aws_errors(self.describe(), transient=StoreUnavailable):
            item = self.client.get_item(
                TableName=self.table, Key={"build_id": {"S": build_id}}, ConsistentRead=True
            ).get("Item")
        if item is None:
            return None
        return _decode(build_id, item), int(item["version"]["N"])

    def _write(self, build_id: str, doc: Doc, expected: Any | None) -> None:
        item = {
            "build_id": {"S": build_id},
            "version": {"N": str(doc["version"])},
            "pipeline": {"S": doc["pipeline"]},
            "cloud": {"S": doc["cloud"]},
            "status": {"S": doc["status"]},
            "updated_at": {"S": doc["updated_at"]},
            "doc": {"S": codec.dumps(doc).decode()},
        }
        if expected is None:
            condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(build_id)"}
        else:
            condition = {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(expected)}},
            }
        with aws_errors(self.describe(), transient=StoreUnavailable):
            try:
                self.client.put_item(TableName=self.table, Item=item, **condition)
            except Exception as exc:
                code = client_error_code(exc)
                if code == "ConditionalCheckFailedException":
                    raise CasFailed() from exc
                if code == "ValidationException" and "size" in str(exc).lower():
                    # Not an outage: retrying would fail the same way (the record is over 400 KB).
                    raise InvalidInput("record", f"build {build_id} is too large for a DynamoDB item ({exc})") from None
                raise

    def _delete(self, build_id: str, expected: Any) -> None:
        with aws_errors(self.describe(), transient=StoreUnavailable):
            try:
                self.client.delete_item(
                    TableName=self.table,
                    Key={"build_id": {"S": build_id}},
                    ConditionExpression="version = :expected",
                    ExpressionAttributeValues={":expected": {"N": str(expected)}},
                )
            except Exception as exc:
                if client_error_code(exc) == "ConditionalCheckFailedException":
                    raise CasFailed() from exc
                raise

    def _scan(self, flt: ListFilter) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses = []
        keyed = "pipeline" if flt.pipeline else "status" if flt.status else None
        use_index = keyed is not None and self.indexed()
        for attr, value in (("status", flt.status), ("cloud", flt.cloud), ("pipeline", flt.pipeline)):
            if value:
                names[f"#{attr}"] = attr
                values[f":{attr}"] = {"S": value}
                if not (use_index and attr == keyed):
                    clauses.append(f"#{attr} = :{attr}")
        ranges = []
        if flt.updated_before:
            names["#u"] = "updated_at"
            values[":before"] = {"S": flt.updated_before}
            ranges.append("#u < :before")
        if flt.updated_after:
            names["#u"] = "updated_at"
            values[":after"] = {"S": flt.updated_after}
            ranges.append("#u > :after")
        kwargs: dict[str, Any] = {"TableName": self.table}
        if use_index:
            index = next(name for name, key in INDEXES.items() if key == keyed)
            key_condition = f"#{keyed} = :{keyed}"
            if len(ranges) == 2:
                key_condition += " AND #u BETWEEN :after AND :before"  # both exclusive: filtered again after
            elif ranges:
                key_condition += " AND " + ranges[0]
            kwargs.update(IndexName=index, KeyConditionExpression=key_condition, ScanIndexForward=False)
        else:
            clauses += ranges
            kwargs["ConsistentRead"] = True
        if clauses:
            kwargs["FilterExpression"] = " AND ".join(clauses)
        if names:
            kwargs.update(ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        call = self.client.query if use_index else self.client.scan
        with aws_errors(self.describe(), transient=StoreUnavailable):
            while True:
                page = call(**kwargs)
                self.items_read += int(page.get("ScannedCount", 0))
                for item in page.get("Items", []):
                    build_id = item["build_id"]["S"]
                    try:
                        yield build_id, _decode(build_id, item)
                    except CorruptRecord as exc:
                        yield build_id, exc
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _index(name: str, key: str) -> dict[str, Any]:
    return {
        "IndexName": name,
        "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}, {"AttributeName": "updated_at", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "ALL"},
    }


def _decode(build_id: str, item: dict[str, Any]) -> Doc:
    text = item.get("doc", {}).get("S")
    if text is None:
        raise CorruptRecord(f"build {build_id}: DynamoDB item has no 'doc' attribute")
    return codec.loads(text, f"build {build_id}: DynamoDB item 'doc'")
