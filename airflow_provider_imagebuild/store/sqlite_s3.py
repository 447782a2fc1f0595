"""SQLite mirrored to S3: SQLite's speed on one orchestrator host, S3's durability beyond it.

Every committed change uploads a consistent snapshot of the database (SQLite's online backup
API) to ``s3://bucket/prefix/<file name>``; when the local file is missing (a new host, a wiped
disk) it is restored from that object before first use. One host writes at a time; for many
concurrent hosts use the DynamoDB or S3 backends.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.errors import StoreUnavailable
from airflow_provider_imagebuild.store.aws import ClientFactory, client_error_code, translated
from airflow_provider_imagebuild.store.s3 import create_bucket
from airflow_provider_imagebuild.store.sqlite import SQLiteStore


class SQLiteS3Store(SQLiteStore):
    def __init__(
        self,
        path: str | Path,
        bucket: str,
        prefix: str,
        client_factory: ClientFactory,
        region: str | None = None,
        url: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(path, **kwargs)  # synchronous= passes through kwargs
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self._client_factory = client_factory
        self.key = f"{self.prefix}/{self.path.name}" if self.prefix else self.path.name
        self.url = url or f"sqlite+s3:///{self.path}?bucket={bucket}"
        self._restored = False

    @property
    def client(self) -> Any:
        return self._client_factory("s3")

    def describe(self) -> str:
        return f"SQLite store {self.path} mirrored to s3://{self.bucket}/{self.key}"

    def init(self) -> str:
        with translated(f"S3 bucket {self.bucket}"):
            created = create_bucket(self.client, self.bucket, self.region)
        self._restore()
        local = super().init()
        self._after_commit()
        return f"{local}; mirror bucket {self.bucket} {'created' if created else 'ready'}"

    def _restore(self) -> bool:
        """Download the mirror when the local file is missing; True when something was restored."""
        if self._restored or self.path.exists():
            self._restored = True
            return False
        with translated(f"S3 mirror s3://{self.bucket}/{self.key}"):
            try:
                obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
            except Exception as exc:
                if client_error_code(exc) in ("NoSuchKey", "404"):
                    self._restored = True
                    return False
                raise
            data = obj["Body"].read()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.restore")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        self._restored = True
        return True

    def _connect(self) -> sqlite3.Connection:
        self._restore()
        return super()._connect()

    def _reader(self) -> sqlite3.Connection | None:
        self._restore()
        return super()._reader()

    def _after_commit(self) -> None:
        conn = super()._connect()
        with tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".snap") as tmp:
            snapshot = sqlite3.connect(tmp.name)
            try:
                conn.backup(snapshot)
            finally:
                snapshot.close()
            try:
                with translated(f"S3 mirror s3://{self.bucket}/{self.key}"), open(tmp.name, "rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body)
            except StoreUnavailable as exc:
                raise StoreUnavailable(f"change saved in {self.path} but not mirrored to S3: {exc}") from exc
