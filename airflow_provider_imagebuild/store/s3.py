"""S3 backend: one JSON object per build, written with S3 conditional writes.

Creating uses ``If-None-Match: *``; updating uses ``If-Match: <etag of what was read>``. S3 refuses
the write with 412 (or 409 while another conditional write is in flight) when somebody else
wrote first, and the store reads again. The bucket is created by ``init`` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from airflow_provider_imagebuild.clouds.aws import aws_errors, client_error_code
from airflow_provider_imagebuild.errors import CorruptRecord, StoreUnavailable
from airflow_provider_imagebuild.store import codec
from airflow_provider_imagebuild.store.base import BuildStore, CasFailed, ClientFactory, Doc, ListFilter

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
                self.client.put_object(
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

    def _delete(self, build_id: str, expected: Any) -> None:
        with aws_errors(self.describe(), transient=StoreUnavailable):
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._key(build_id), IfMatch=expected)
            except Exception as exc:
                if client_error_code(exc) in CAS_CODES:
                    raise CasFailed() from exc
                raise

    def _scan(self, flt: ListFilter) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        prefix = self._key("x")[: -len("x.json")]

        def names() -> Iterator[str]:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in page.get("Contents", []):
                    if entry["Key"].endswith(".json"):
                        yield entry["Key"][len(prefix) : -len(".json")]

        with aws_errors(self.describe(), transient=StoreUnavailable):
            yield from self._read_each(names())
