"""Azure Blob backend: one JSON blob per build, written with ETag conditions.

The S3 backend's contract on Blob Storage: creating sends ``If-None-Match: *`` (a lost race answers
409 ``BlobAlreadyExists``), updating sends ``If-Match: <etag of what was read>`` (a stale one
answers 412 ``ConditionNotMet``); either is a lost compare-and-swap and the store reads again.
The container is created by ``init`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_imagebuild.clouds.azure import azure_errors, error_code
from airflow_provider_imagebuild.errors import CorruptRecord, StoreUnavailable
from airflow_provider_imagebuild.store import codec
from airflow_provider_imagebuild.store.base import BuildStore, CasFailed, Doc, ListFilter

CAS_CODES = {"BlobAlreadyExists", "ConditionNotMet", "LeaseIdMissing"}


class AzureBlobStore(BuildStore):
    def __init__(
        self,
        account: str,
        container: str,
        prefix: str,
        service: Callable[[], Any],
        url: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.account = account
        self.container = container
        self.prefix = prefix.strip("/")
        self._service = service  # () -> BlobServiceClient, made on first use
        self._client: Any = None
        self.url = url or f"azblob://{container}/{self.prefix}?account={account}"

    @property
    def client(self) -> Any:
        """The container's client (made once: it holds the HTTP connection pool)."""
        if self._client is None:
            self._client = self._service().get_container_client(self.container)
        return self._client

    def describe(self) -> str:
        where = f"Azure Blob container {self.container} of account {self.account}"
        return where + (f" prefix {self.prefix}" if self.prefix else "")

    def _name(self, build_id: str) -> str:
        return f"{self.prefix}/builds/{build_id}.json" if self.prefix else f"builds/{build_id}.json"

    def _errors(self) -> Any:
        return azure_errors(self.describe(), transient=StoreUnavailable)

    def init(self) -> str:
        from azure.core.exceptions import ResourceExistsError

        with self._errors():
            try:
                self.client.create_container()
                created = True
            except ResourceExistsError:
                created = False
        return f"{self.describe()} {'created' if created else 'ready'}"

    def _read(self, build_id: str) -> tuple[Doc, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError

        with self._errors():
            try:
                downloaded = self.client.download_blob(self._name(build_id))
            except ResourceNotFoundError as exc:
                if error_code(exc) == "ContainerNotFound":
                    raise
                return None
            body = downloaded.readall()
            etag = downloaded.properties.etag
        return codec.loads(body, f"build {build_id}: blob"), etag

    def _write(self, build_id: str, doc: Doc, expected: Any | None) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError
        from azure.storage.blob import ContentSettings

        condition: dict[str, Any] = (
            {"overwrite": False}  # If-None-Match: *
            if expected is None
            else {"overwrite": True, "etag": expected, "match_condition": MatchConditions.IfNotModified}
        )
        with self._errors():
            try:
                self.client.upload_blob(
                    self._name(build_id),
                    codec.dumps(doc),
                    content_settings=ContentSettings(content_type="application/json"),
                    **condition,
                )
            except HttpResponseError as exc:
                if error_code(exc) in CAS_CODES or getattr(exc, "status_code", 0) == 412:
                    raise CasFailed() from exc
                raise

    def _delete(self, build_id: str, expected: Any) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        with self._errors():
            try:
                self.client.delete_blob(
                    self._name(build_id), etag=expected, match_condition=MatchConditions.IfNotModified
                )
            except HttpResponseError as exc:
                if error_code(exc) in CAS_CODES or getattr(exc, "status_code", 0) == 412:
                    raise CasFailed() from exc
                raise

    def _scan(self, flt: ListFilter) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        prefix = self._name("x")[: -len("x.json")]
        with self._errors():
            names = (str(e.name) for e in self.client.list_blobs(name_starts_with=prefix))
            yield from self._read_each(n[len(prefix) : -len(".json")] for n in names if n.endswith(".json"))
