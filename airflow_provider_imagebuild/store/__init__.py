"""The build state store: one contract (:class:`BuildStore`), seven backends chosen by URL."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.values import DEFAULT_LEASE_SECONDS
from airflow_provider_imagebuild.clouds.aws import AwsClients
from airflow_provider_imagebuild.redact.patterns import Redactor
from airflow_provider_imagebuild.store.base import BuildStore, ClientFactory, Clock, ListFilter
from airflow_provider_imagebuild.store.url import StoreURL, parse_store_url


def worker_store_url(env: Mapping[str, str] | None = None) -> str:
    """This machine's own SQLite file: under ``$AIRFLOW_HOME/imagebuild``, else ``~/.imagebuild``.
    The last rule of the store order (:mod:`airflow_provider_imagebuild.hooks.store_choice`): the
    store used when nothing names one, right for one machine only."""
    env = os.environ if env is None else env
    home = env.get("AIRFLOW_HOME")
    base = Path(home) / "imagebuild" if home else Path.home() / ".imagebuild"
    return f"sqlite:///{base.resolve() / 'state.db'}"  # /abs path -> sqlite:////abs (SQLAlchemy style)


def open_store(
    url: str | StoreURL,
    *,
    client_factory: ClientFactory | None = None,
    redactor: Redactor | None = None,
    clock: Clock | None = None,
    blob_service: Callable[[], Any] | None = None,
    gcs_client: Callable[[], Any] | None = None,
) -> BuildStore:
    """Open the store a URL names. AWS backends use ``client_factory`` (default: clients from the
    environment's credential chain; from Airflow the state hook passes its connection's); the
    Azure Blob backend ``blob_service`` (default: :func:`clouds.azure.blob_service` without an
    Airflow connection); the Cloud Storage backend ``gcs_client`` (default:
    :func:`clouds.gcp.storage_client` without an Airflow connection)."""
    parsed = url if isinstance(url, StoreURL) else parse_store_url(url)
    common: dict[str, Any] = {"redactor": redactor, "clock": clock}
    factory = client_factory or AwsClients.from_environment(parsed.region, parsed.endpoint_url)
    if parsed.scheme == "sqlite":
        from airflow_provider_imagebuild.store.sqlite import SQLiteStore

        return SQLiteStore(parsed.path, parsed.synchronous, **common)
    if parsed.scheme == "file":
        from airflow_provider_imagebuild.store.jsonfile import JsonFileStore

        return JsonFileStore(parsed.path, **common)
    if parsed.scheme == "dynamodb":
        from airflow_provider_imagebuild.store.dynamodb import DynamoDBStore

        return DynamoDBStore(parsed.table, factory, url=parsed.raw, **common)
    if parsed.scheme == "azblob":
        from airflow_provider_imagebuild.clouds.azure import blob_service as service_for
        from airflow_provider_imagebuild.store.azblob import AzureBlobStore

        account, endpoint = parsed.account, parsed.endpoint_url
        return AzureBlobStore(
            account,
            parsed.bucket,
            parsed.prefix,
            blob_service or (lambda: service_for(account, endpoint)),
            url=parsed.raw,
            **common,
        )
    if parsed.scheme == "gs":
        from airflow_provider_imagebuild.clouds.gcp import storage_client
        from airflow_provider_imagebuild.store.gcs import GcsStore

        project, gs_endpoint = parsed.project, parsed.endpoint_url
        return GcsStore(
            parsed.bucket,
            parsed.prefix,
            gcs_client or (lambda: storage_client(project, gs_endpoint)),
            project,
            url=parsed.raw,
            **common,
        )
    if parsed.scheme == "s3":
        from airflow_provider_imagebuild.store.s3 import S3Store

        return S3Store(parsed.bucket, parsed.prefix, factory, parsed.region, url=parsed.raw, **common)
    from airflow_provider_imagebuild.store.sqlite_s3 import SQLiteS3Store

    return SQLiteS3Store(
        parsed.path,
        parsed.bucket,
        parsed.prefix,
        factory,
        parsed.region,
        url=parsed.raw,
        synchronous=parsed.synchronous,
        **common,
    )


__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "BuildStore",
    "ListFilter",
    "StoreURL",
    "open_store",
    "parse_store_url",
    "worker_store_url",
]
