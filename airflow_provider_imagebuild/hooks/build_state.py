"""Airflow hook for the ``imagebuild_state`` connection: connection -> :class:`BuildStore`.

Which store a task opens (the spec's, the deployment's, the default) is :mod:`.store_choice`'s one
order (its ``store_for``): it opens a chosen connection through this hook, so this module knows
nothing of the order.

The connection holds the store URL (in ``extra.store_url`` or ``host``) and, for the AWS
backends, an ``aws_conn_id`` whose credentials the Amazon provider's ``AwsBaseHook`` resolves;
for the Azure Blob backend, a ``wasb_conn_id`` read by the Azure provider's ``WasbHook``; for
Cloud Storage, a ``gcp_conn_id`` read by the Google provider's ``GoogleBaseHook``.
Secrets Airflow masks are also redacted from what the store records.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from airflow_provider_imagebuild.clouds.aws import AwsClients
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.redact.patterns import Redactor, redactor_for
from airflow_provider_imagebuild.store import BuildStore, open_store, parse_store_url

__all__ = ["BuildStateHook", "airflow_redactor"]


def airflow_redactor() -> Redactor:
    """Patterns plus everything registered with Airflow's secrets masker."""
    from airflow.sdk.log import redact

    def _airflow(text: str) -> str:
        return str(redact(text))

    return redactor_for(extra=_airflow)


class BuildStateHook(BaseHook):
    """Returns the build state store configured by an ``imagebuild_state`` connection."""

    conn_name_attr = "imagebuild_conn_id"
    default_conn_name = "imagebuild_default"
    conn_type = "imagebuild_state"
    hook_name = "Image Build State Store"

    def __init__(self, imagebuild_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.imagebuild_conn_id = imagebuild_conn_id
        self._store: BuildStore | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden-fields": ["schema", "login", "password", "port"],
            "relabeling": {"host": "Store URL (or set it in the extra field)"},
            "placeholders": {"host": "dynamodb://imagebuild-state?region=eu-west-1"},
        }

    def store_settings(self) -> tuple[str, dict[str, Any]]:
        conn = self.get_connection(self.imagebuild_conn_id)
        extra = conn.extra_dejson or {}
        url = extra.get("store_url") or conn.host
        if not url:
            raise InvalidInput(
                f"connection {self.imagebuild_conn_id}.store_url", "is empty; set extra.store_url or host"
            )
        return str(url), extra

    def get_conn(self) -> BuildStore:
        if self._store is None:
            url, extra = self.store_settings()
            parsed = parse_store_url(url, f"connection {self.imagebuild_conn_id}.store_url")
            factory = service = None
            if parsed.scheme in ("dynamodb", "s3", "sqlite+s3"):
                factory = AwsClients.from_connection(extra.get("aws_conn_id"), parsed.region, parsed.endpoint_url)
            wasb_conn_id = extra.get("wasb_conn_id")
            if parsed.scheme == "azblob" and wasb_conn_id:
                from airflow_provider_imagebuild.clouds.azure import blob_service

                account, endpoint = parsed.account, parsed.endpoint_url
                service = lambda: blob_service(account, endpoint, str(wasb_conn_id))  # noqa: E731
            self._store = open_store(parsed, client_factory=factory, blob_service=service, redactor=airflow_redactor())
        return self._store

    get_store = get_conn

    def test_connection(self) -> tuple[bool, str]:
        try:
            store = self.get_conn()
            store.list_builds(updated_after="2100-01-01T00:00:00Z")
        except Exception as exc:
            return False, str(exc)
        return True, f"store {store.describe()} answers"
