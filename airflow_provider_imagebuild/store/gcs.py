"""Cloud Storage backend: one JSON object per build, written with generation preconditions.

The S3 backend's contract on Cloud Storage: creating sends ``ifGenerationMatch=0`` (the object
must not exist), updating sends the generation that was read; Cloud Storage answers 412 when
somebody else wrote first, and the store reads again. The bucket is created by ``init`` only.

Credentials: the Google provider's ``gcp_conn_id`` from the ``imagebuild_state`` connection inside
Airflow; otherwise Application Default Credentials; with ``endpoint_url`` (or
``STORAGE_EMULATOR_HOST``) and no Google credentials configured, anonymous ones (emulators).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_imagebuild.clouds.gcp import STORAGE_TIMEOUT, gcp_errors, storage_retry
from airflow_provider_imagebuild.errors import CorruptRecord, NotFound, StoreUnavailable
from airflow_provider_imagebuild.store import codec
from airflow_provider_imagebuild.store.base import BuildStore, CasFailed, Doc, ListFilter


class GcsStore(BuildStore):
    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: Callable[[], Any],
        project: str | None = None,
        url: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.project = project
        self._client_source = client  # () -> google.cloud.storage.Client, made on first use
        self._client: Any = None
        self.url = url or f"gs://{bucket}/{self.prefix}"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_source()
        return self._client

    def describe(self) -> str:
        return f"Cloud Storage bucket {self.bucket_name}" + (f" prefix {self.prefix}" if self.prefix else "")

    def _name(self, build_id: str) -> str:
        return f"{self.prefix}/builds/{build_id}.json" if self.prefix else f"builds/{build_id}.json"

    def _errors(self) -> Any:
        return gcp_errors(self.describe(), transient=StoreUnavailable)

    def init(self) -> str:
        from google.api_core.exceptions import Conflict

        with self._errors():
            bucket = self.client.bucket(self.bucket_name)
            if bucket.exists(retry=storage_retry(), timeout=STORAGE_TIMEOUT):
                return f"{self.describe()} ready"
            try:
                self.client.create_bucket(bucket, project=self.project, retry=storage_retry(), timeout=STORAGE_TIMEOUT)
            except Conflict:
                return f"{self.describe()} ready"
        return f"{self.describe()} created"

    def _missing_bucket(self) -> StoreUnavailable:
        return StoreUnavailable(f"{self.describe()} does not exist; run `imagebuild store init` first")

    def _read(self, build_id: str) -> tuple[Doc, Any] | None:
        blob = self.client.bucket(self.bucket_name).blob(self._name(build_id))
        try:
            with self._errors():
                body = blob.download_as_bytes(retry=storage_retry(), timeout=STORAGE_TIMEOUT)
        except NotFound:
            with self._errors():
                exists = self.client.bucket(self.bucket_name).exists(retry=storage_retry(), timeout=STORAGE_TIMEOUT)
            if not exists:
                raise self._missing_bucket() from None
            return None
        return codec.loads(body, f"build {build_id}: object"), blob.generation

    def _write(self, build_id: str, doc: Doc, expected: Any | None) -> None:
        from google.api_core.exceptions import PreconditionFailed

        blob = self.client.bucket(self.bucket_name).blob(self._name(build_id))
        try:
            with self._errors():
                try:
                    blob.upload_from_string(
                        codec.dumps(doc),
                        content_type="application/json",
                        if_generation_match=expected or 0,
                        retry=storage_retry(),
                        timeout=STORAGE_TIMEOUT,
                    )
                except PreconditionFailed as exc:
                    raise CasFailed() from exc
        except NotFound:
            raise self._missing_bucket() from None

    def _delete(self, build_id: str, expected: Any) -> None:
        from google.api_core.exceptions import PreconditionFailed

        blob = self.client.bucket(self.bucket_name).blob(self._name(build_id))
        with self._errors():
            try:
                blob.delete(if_generation_match=expected, retry=storage_retry(), timeout=STORAGE_TIMEOUT)
            except PreconditionFailed as exc:
                raise CasFailed() from exc

    def _scan(self, flt: ListFilter) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        prefix = self._name("x")[: -len("x.json")]
        try:
            with self._errors():
                listing = self.client.list_blobs(
                    self.bucket_name, prefix=prefix, retry=storage_retry(), timeout=STORAGE_TIMEOUT
                )
                names = [str(b.name) for b in listing]
        except NotFound:
            raise self._missing_bucket() from None
        yield from self._read_each(n[len(prefix) : -len(".json")] for n in names if n.endswith(".json"))
