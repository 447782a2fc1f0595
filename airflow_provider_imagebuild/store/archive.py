"""Where ``imagebuild store prune --archive URL`` keeps the records it removes.

``--archive`` is a folder (``file:///srv/imagebuild-archive``: three slashes, an absolute path)
or an S3 prefix (``s3://bucket/prefix``, AWS credentials from the environment; ``?region=`` and
``?endpoint_url=`` as in store URLs), checked by the store URL parser. The layout below it is one
JSON document per generation of a build's record::

    <pipeline>/<build id>/v<version>-<updated_at>.json    e.g. web/web-0/v7-20260131T235959.123456Z.json

so that the same build id archived twice (a record pruned, the id used again, or a record archived
by a prune whose delete found it changed and archived again later) keeps every generation. Every
part of the name comes from the record's validated fields (the pipeline and build id patterns,
an integer version, a stored UTC time), checked again here: a stored value never steers where a
document goes. A document is never overwritten: in a folder it is written to a temporary file,
flushed to disk and linked to its name (the link fails if the name exists), in S3 it is put with
``If-None-Match: *``. Finding the identical document already there (a prune that stopped after
archiving, before deleting) is fine; another document under that name is refused, and the record
is kept. A record is archived before it is deleted, so a prune that stops half-way loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.ids import check_build_id, check_name
from airflow_provider_imagebuild.build.record import BuildRecord, check_ts, parse_ts
from airflow_provider_imagebuild.errors import Conflict, InvalidInput, StoreUnavailable
from airflow_provider_imagebuild.store.url import parse_store_url

_SCHEME_NAME = re.compile(r"[a-z][a-z0-9+.-]{0,30}")


def archive_name(rec: BuildRecord) -> str:
    """``<pipeline>/<build id>/v<version>-<updated_at>.json``, from validated parts only."""
    pipeline = check_name(rec.pipeline, "pipeline")
    build_id = check_build_id(rec.build_id)
    if isinstance(rec.version, bool) or not isinstance(rec.version, int) or rec.version < 0:
        raise InvalidInput("version", "must be a non-negative integer")
    stamp = parse_ts(check_ts(rec.updated_at, "updated_at")).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{pipeline}/{build_id}/v{rec.version}-{stamp}.json"


@dataclass(frozen=True)
class Archive:
    url: str
    folder: Path | None = None
    bucket: str = ""
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None

    def put(self, rec: BuildRecord) -> str:
        """Keep ``rec`` (never replacing another document); where it went."""
        name = archive_name(rec)
        body = json.dumps(rec.to_doc(), indent=2, sort_keys=True).encode()
        if self.folder is not None:
            return self._put_file(name, body, rec)
        return self._put_s3(name, body, rec)

    def _put_file(self, name: str, body: bytes, rec: BuildRecord) -> str:
        assert self.folder is not None
        target = self.folder / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(body)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(tmp, target)  # atomic, and refused if the name exists: never overwrites
                except FileExistsError:
                    if target.read_bytes() != body:
                        raise self._taken(str(target), rec) from None
                    return str(target)
                _fsync_dir(target.parent)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as exc:
            raise StoreUnavailable(f"archive {self.url}: cannot write {target}: {exc.strerror or exc}") from exc
        return str(target)

    def _put_s3(self, name: str, body: bytes, rec: BuildRecord) -> str:
        from airflow_provider_imagebuild.clouds.aws import AwsClients, aws_errors, client_error_code
        from airflow_provider_imagebuild.store.s3 import CAS_CODES

        key = f"{self.prefix}/{name}" if self.prefix else name
        where = f"s3://{self.bucket}/{key}"
        client: Any = AwsClients.from_environment(self.region, self.endpoint_url)("s3")
        with aws_errors(f"archive {self.url}", transient=StoreUnavailable):
            try:
                client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", IfNoneMatch="*"
                )
            except Exception as exc:
                if client_error_code(exc) not in CAS_CODES:
                    raise
                if client.get_object(Bucket=self.bucket, Key=key)["Body"].read() != body:
                    raise self._taken(where, rec) from None
        return where

    def _taken(self, where: str, rec: BuildRecord) -> Conflict:
        return Conflict(
            f"archive {self.url}: {where} already holds another document; not overwritten, so build "
            f"{rec.build_id} (version {rec.version}) was not removed"
        )


def _fsync_dir(folder: Path) -> None:
    """Make the new name itself durable (a crash right after must not lose the link)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_archive(url: str) -> Archive:
    """The archive ``--archive URL`` names, parsed as store URLs are (a ``file://`` URL with a host,
    a relative path or ``..`` is refused), and only a folder or an S3 prefix."""
    scheme = url.partition(":")[0]
    if scheme == "file" and not url.startswith("file://"):
        raise InvalidInput("--archive", "file: takes an absolute path: file:///abs/path (three slashes)")
    if scheme not in ("file", "s3"):
        # only a scheme is named back: what precedes ':' may be a user name, or a password typed alone
        named = f"a {scheme!r} URL" if _SCHEME_NAME.fullmatch(scheme) and url.startswith(f"{scheme}://") else "that"
        raise InvalidInput("--archive", f"must be file:///FOLDER or s3://BUCKET[/PREFIX], not {named}")
    parsed = parse_store_url(url, "--archive")
    if parsed.scheme == "file":
        return Archive(url, folder=Path(parsed.path))
    return Archive(url, bucket=parsed.bucket, prefix=parsed.prefix, region=parsed.region,
                   endpoint_url=parsed.endpoint_url)  # fmt: skip
