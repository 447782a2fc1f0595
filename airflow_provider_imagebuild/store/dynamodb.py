"""DynamoDB backend: for many workers on many machines (Celery or Kubernetes executors).

One item per build. Reads are strongly consistent; every write is a ``PutItem`` with a
``ConditionExpression`` on the ``version`` attribute (or ``attribute_not_exists`` on create), so
concurrent writers cannot lose each other's updates. The table is created by ``init`` only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from airflow_provider_imagebuild.clouds.aws import aws_errors, client_error_code
from airflow_provider_imagebuild.errors import CorruptRecord, InvalidInput, StoreUnavailable
from airflow_provider_imagebuild.store import codec
from airflow_provider_imagebuild.store.base import BuildStore, CasFailed, ClientFactory, Doc, ListFilter

INIT_WAIT_S = 60


class DynamoDBStore(BuildStore):
    def __init__(self, table: str, client_factory: ClientFactory, url: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self._client_factory = client_factory
        self.url = url or f"dynamodb://{table}"

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
                    AttributeDefinitions=[{"AttributeName": "build_id", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "build_id", "KeyType": "HASH"}],
                    BillingMode="PAY_PER_REQUEST",
                )
                created = True
            except Exception as exc:
                if client_error_code(exc) != "ResourceInUseException":
                    raise
                created = False
            deadline = time.monotonic() + INIT_WAIT_S
            while True:
                status = self.client.describe_table(TableName=self.table)["Table"]["TableStatus"]
                if status == "ACTIVE":
                    break
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"{self.describe()} is still {status} after {INIT_WAIT_S}s")
                time.sleep(0.2)
        return f"{self.describe()} {'created (on-demand billing)' if created else 'ready'}"

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
        for attr, value in (("status", flt.status), ("cloud", flt.cloud), ("pipeline", flt.pipeline)):
            if value:
                names[f"#{attr}"] = attr
                values[f":{attr}"] = {"S": value}
                clauses.append(f"#{attr} = :{attr}")
        if flt.updated_before:
            names["#u"] = "updated_at"
            values[":before"] = {"S": flt.updated_before}
            clauses.append("#u < :before")
        if flt.updated_after:
            names["#u"] = "updated_at"
            values[":after"] = {"S": flt.updated_after}
            clauses.append("#u > :after")
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        if clauses:
            kwargs.update(
                FilterExpression=" AND ".join(clauses),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        with aws_errors(self.describe(), transient=StoreUnavailable):
            while True:
                page = self.client.scan(**kwargs)
                for item in page.get("Items", []):
                    build_id = item["build_id"]["S"]
                    try:
                        yield build_id, _decode(build_id, item)
                    except CorruptRecord as exc:
                        yield build_id, exc
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _decode(build_id: str, item: dict[str, Any]) -> Doc:
    text = item.get("doc", {}).get("S")
    if text is None:
        raise CorruptRecord(f"build {build_id}: DynamoDB item has no 'doc' attribute")
    return codec.loads(text, f"build {build_id}: DynamoDB item 'doc'")
