"""Where ``imagebuild store prune --archive URL`` keeps the records it removes: one JSON document
per build, ``<pipeline>/<build id>.json`` below a folder (``file:///srv/imagebuild-archive``) or an
S3 prefix (``s3://bucket/prefix``, AWS credentials from the environment; ``?region=`` and
``?endpoint_url=`` as in store URLs). A record is archived before it is deleted, so a prune that
stops half-way loses nothing."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput, StoreUnavailable


@dataclass(frozen=True)
class Archive:
    url: str
    folder: Path | None = None
    bucket: str = ""
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None

    def put(self, rec: BuildRecord) -> str:
        """Keep ``rec``; where it went."""
        name = f"{rec.pipeline}/{rec.build_id}.json"
        body = json.dumps(rec.to_doc(), indent=2, sort_keys=True).encode()
        if self.folder is not None:
            target = self.folder / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
                with os.fdopen(fd, "wb") as handle:
                    handle.write(body)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, target)
            except OSError as exc:
                raise StoreUnavailable(f"archive {self.url}: cannot write {target}: {exc.strerror or exc}") from exc
            return str(target)
        from airflow_provider_imagebuild.clouds.aws import AwsClients, aws_errors

        key = f"{self.prefix}/{name}" if self.prefix else name
        client: Any = AwsClients.from_environment(self.region, self.endpoint_url)("s3")
        with aws_errors(f"archive {self.url}", transient=StoreUnavailable):
            client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return f"s3://{self.bucket}/{key}"


def open_archive(url: str) -> Archive:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "file" and parts.path:
        return Archive(url, folder=Path(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        return Archive(url, bucket=parts.netloc, prefix=parts.path.strip("/"), region=query.get("region"),
                       endpoint_url=query.get("endpoint_url"))  # fmt: skip
    raise InvalidInput("--archive", f"{url!r} is neither file:///FOLDER nor s3://BUCKET[/PREFIX]")
