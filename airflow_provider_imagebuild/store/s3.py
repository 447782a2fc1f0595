"""S3 backend: one JSON object per build, written with S3 conditional writes.

Creating uses ``If-None-Match: *``; updating uses ``If-Match: <etag of what was read>``. S3 refuses
the write with 412 (or 409 while another conditional write is in flight) when somebody else
wrote first, and the store reads again. The bucket is created by ``init`` only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from airflow_provider_imagebuild.clouds.aws import aws_errors, client_error_code
from airflow_provider_imagebuild.errors import CorruptRecord, StoreUnavailable
from airflow_provider_imagebuild.store import codec, index
from airflow_provider_imagebuild.store.base import BuildStore, CasFailed, ClientFactory, Doc, ListFilter

log = logging.getLogger(__name__)

CAS_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def create_bucket(client: Any, bucket: str, region: str | None) -> bool:
    """Create ``bucket`` if missing; True when it was created. Shared with the SQLite mirror."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except Exception as exc:
        if client_error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except Exception as exc:
        if client_error_code(exc) not in ("BucketAlreadyOwnedByYou",):
            raise
        return False
    return True


class S3Store(BuildStore):
    def __init__(
        self,
        bucket: str,
        prefix: str,
        client_factory: ClientFactory,
        region: str | None = None,
        url: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self._client_factory = client_factory
        self.url = url or f"s3://{bucket}/{self.prefix}"
        self.items_read = 0  # records read by listings (the index spares the others)

    @property
    def client(self) -> Any:
        return self._client_factory("s3")

    def describe(self) -> str:
        return f"S3 bucket {self.bucket}" + (f" prefix {self.prefix}" if self.prefix else "")

    def _key(self, build_id: str) -> str:
        return f"{self.prefix}/builds/{build_id}.json" if self.prefix else f"builds/{build_id}.json"

    def init(self) -> str:
        with aws_errors(self.describe(), transient=StoreUnavailable):
            created = create_bucket(self.client, self.bucket, self.region)
        return f"{self.describe()} {'created' if created else 'ready'}"

    def _read(self, build_id: str) -> tuple[Doc, Any] | None:
        with aws_errors(self.describe(), transient=StoreUnavailable):
            try:
                obj = self.client.get_object(Bucket=self.bucket, Key=self._key(build_id))
            except Exception as exc:
                if client_error_code(exc) in ("NoSuchKey", "404"):
                    return None
                raise
            body = obj["Body"].read()
        return codec.loads(body, f"build {build_id}: S3 object"), obj["ETag"]

    def _write(self, build_id: str, doc: Doc, expected: Any | None) -> None:
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        body = codec.dumps(doc)
        with aws_errors(self.describe(), transient=StoreUnavailable):
            try:
                answer = self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._key(build_id),
                    Body=body,
                    ContentType="application/json",
                    **condition,
                )
            except Exception as exc:
                if client_error_code(exc) in CAS_CODES:
                    raise CasFailed() from exc
                raise
        self._index_update(build_id, index.entry(doc, str(answer["ETag"])))

    def _delete(self, build_id: str, expected: Any) -> None:
        with aws_errors(self.describe(), transient=StoreUnavailable):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(build_id), IfMatch=expected)
            except Exception as exc:
                if client_error_code(exc) in CAS_CODES:
                    raise CasFailed() from exc
                raise
        self._index_update(build_id, None)

    @property
    def index_key(self) -> str:
        return f"{self.prefix}/{index.INDEX_NAME}" if self.prefix else index.INDEX_NAME

    def _index_read(self) -> tuple[dict[str, Any], str | None]:
        """The index object and its ETag ({} and None when there is none or it is unreadable)."""
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.index_key)
            found = codec.loads(obj["Body"].read(), f"{self.index_key}")
        except Exception as exc:
            if client_error_code(exc) not in ("NoSuchKey", "404") and not isinstance(exc, CorruptRecord):
                log.warning("%s: index unreadable (%s); listing reads every record", self.describe(), exc)
            return {}, None
        return (found if isinstance(found, dict) else {}), str(obj["ETag"])

    def _index_update(self, build_id: str, found: dict[str, Any] | None) -> None:
        """Record (or drop) the build's entry with a conditional put, a few tries. Best effort: a
        lost race leaves the entry stale, which only makes listings read that record."""
        for _ in range(index.CAS_ATTEMPTS):
            current, etag = self._index_read()
            if found is None:
                current.pop(build_id, None)
            else:
                current[build_id] = found
            condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.index_key, Body=codec.dumps(current),
                                       ContentType="application/json", **condition)  # fmt: skip
                return
            except Exception as exc:
                if client_error_code(exc) not in CAS_CODES:
                    log.warning("%s: index not updated for %s: %s", self.describe(), build_id, exc)
                    return
        log.info("%s: index entry of %s left stale after %d contended tries", self.describe(), build_id,
                 index.CAS_ATTEMPTS)  # fmt: skip

    def _scan(self, flt: ListFilter) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        prefix = self._key("x")[: -len("x.json")]

        known = self._index_read()[0] if index.filtering(flt) else {}

        def names() -> Iterator[str]:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    if entry["Key"].endswith(".json"):
                        build_id = entry["Key"][len(prefix) : -len(".json")]
                        if not index.skippable(known.get(build_id), str(entry["ETag"]), flt):
                            self.items_read += 1
                            yield build_id

        with aws_errors(self.describe(), transient=StoreUnavailable):
            yield from self._read_each(names())
