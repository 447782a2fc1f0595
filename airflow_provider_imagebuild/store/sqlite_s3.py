"""SQLite mirrored to S3: SQLite's speed on one orchestrator host, S3's durability beyond it.

Every change uploads a consistent image of the database to ``s3://bucket/prefix/<file name>``
*before* it is committed locally, and the upload is conditional: ``If-Match`` on the ETag this
host last wrote or restored (``If-None-Match: *`` while the mirror is empty). When the local
file is missing (a new host, a wiped disk) it is restored from the mirror before first use.

What is guaranteed: one writer at a time. A second host writing the same mirror, or a host whose
copy is older than the mirror, is refused (:class:`Conflict`, exit 3) naming the host that wrote
the mirror last, and nothing is written on either side; no change that was reported as saved is
ever lost from the mirror. What is not: reads on a host show that host's copy (what it wrote or
restored), not another host's newer writes. For many concurrent hosts use the DynamoDB or S3
backends. The ETag last seen is kept beside the database (``.<file>.mirror.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.clouds.aws import aws_errors, client_error_code
from airflow_provider_imagebuild.errors import Conflict, StoreUnavailable
from airflow_provider_imagebuild.store.base import ClientFactory
from airflow_provider_imagebuild.store.s3 import CAS_CODES, create_bucket
from airflow_provider_imagebuild.store.sqlite import SQLiteStore

WRITER_META = "imagebuild-writer"


def _fingerprint(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """What a database holds, for telling whether two copies are the same store state."""
    try:
        return [tuple(r) for r in conn.execute("SELECT build_id, version FROM builds ORDER BY build_id")]
    except sqlite3.OperationalError:  # no table yet: an empty store
        return []


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
        self.sidecar = self.path.with_name(f".{self.path.name}.mirror.json")
        self._restored = False

    @property
    def client(self) -> Any:
        return self._client_factory("s3")

    @property
    def mirror(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def describe(self) -> str:
        return f"SQLite store {self.path} mirrored to {self.mirror}"

    # -- the ETag this host last wrote or restored -------------------------------------------------
    def _seen(self) -> str | None:
        try:
            state = json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return None
        if state.get("bucket") != self.bucket or state.get("key") != self.key:
            return None
        etag = state.get("etag")
        return str(etag) if etag else None

    def _remember(self, etag: str) -> None:
        tmp = self.sidecar.with_name(self.sidecar.name + ".tmp")
        tmp.write_text(json.dumps({"bucket": self.bucket, "key": self.key, "etag": etag}))
        os.replace(tmp, self.sidecar)

    # -- restore, adopt, upload ---------------------------------------------------------------------
    def init(self) -> str:
        with aws_errors(f"S3 bucket {self.bucket}", transient=StoreUnavailable):
            created = create_bucket(self.client, self.bucket, self.region)
        self._restore()
        local = super().init()
        if self._seen() is None:  # a new store, or one made before the mirror was conditional
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._after_begin(conn)
                if self._seen() is None:
                    self._sync(conn)
                conn.execute("COMMIT")
            finally:
                self._rollback(conn)
        return f"{local}; mirror {self.mirror} {'created' if created else 'ready'}"

    def _restore(self) -> bool:
        """Download the mirror when the local file is missing; True when something was restored."""
        if self._restored or self.path.exists():
            self._restored = True
            return False
        with aws_errors(f"S3 mirror {self.mirror}", transient=StoreUnavailable):
            try:
                obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
            except Exception as exc:
                if client_error_code(exc) in ("NoSuchKey", "404"):
                    self._restored = True
                    with contextlib.suppress(FileNotFoundError):
                        self.sidecar.unlink()
                    return False
                raise
            data = obj["Body"].read()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.restore")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        self._remember(obj["ETag"])
        self._restored = True
        return True

    def _head(self) -> dict[str, Any] | None:
        with aws_errors(f"S3 mirror {self.mirror}", transient=StoreUnavailable):
            try:
                return dict(self.client.head_object(Bucket=self.bucket, Key=self.key))
            except Exception as exc:
                if client_error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise

    def _adopt(self, conn: sqlite3.Connection) -> None:
        """This host has a database but no record of the mirror's version (a store made before
        the mirror was conditional, or a sidecar removed): adopt the mirror's ETag if the mirror
        holds the same builds at the same versions, else refuse."""
        head = self._head()
        if head is None:
            return
        with aws_errors(f"S3 mirror {self.mirror}", transient=StoreUnavailable):
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key, IfMatch=head["ETag"])
            data = obj["Body"].read()
        with tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".cmp") as tmp:
            tmp.write(data)
            tmp.flush()
            other = sqlite3.connect(f"file:{tmp.name}?mode=ro", uri=True)
            try:
                same = _fingerprint(other) == _fingerprint(conn)
            finally:
                other.close()
        if not same:
            raise self._conflict(head, "holds other builds than this host's copy")
        self._remember(obj["ETag"])

    def _conflict(self, head: dict[str, Any] | None, why: str) -> Conflict:
        writer = ""
        if head:
            meta = head.get("Metadata") or {}
            writer = f" (last written by {meta.get(WRITER_META, 'an unknown writer')} at {head.get('LastModified')})"
        return Conflict(
            f"the S3 mirror {self.mirror} {why}{writer}; nothing was written. One host writes a sqlite+s3 "
            f"store at a time: stop the other writer, then move {self.path} away so that this host restores "
            "the mirror (or use the dynamodb or s3 backend for many writers)",
            holder=(head or {}).get("Metadata", {}).get(WRITER_META),
        )

    def _sync(self, conn: sqlite3.Connection) -> None:
        """Upload the database as this connection sees it, if the mirror is still what this host
        last saw (inside the write transaction: the change is committed only once mirrored)."""
        expected = self._seen()
        condition = {"IfMatch": expected} if expected else {"IfNoneMatch": "*"}
        writer = f"{socket.gethostname()} pid {os.getpid()}"
        try:
            with aws_errors(f"S3 mirror {self.mirror}", transient=StoreUnavailable):
                try:
                    answer = self.client.put_object(
                        Bucket=self.bucket,
                        Key=self.key,
                        Body=conn.serialize(),
                        Metadata={WRITER_META: writer},
                        **condition,
                    )
                except Exception as exc:
                    if client_error_code(exc) in CAS_CODES:
                        why = "was changed by another writer since this host last synced it"
                        raise self._conflict(self._head(), why) from None
                    raise
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"change not saved: {exc}") from exc
        self._remember(answer["ETag"])

    # -- hooks of the SQLite store --------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self._restore()
        return super()._connect()

    def _reader(self) -> sqlite3.Connection | None:
        self._restore()
        return super()._reader()

    def _after_begin(self, conn: sqlite3.Connection) -> None:
        if self._seen() is None:
            self._adopt(conn)

    def _before_commit(self, conn: sqlite3.Connection) -> None:
        self._sync(conn)
