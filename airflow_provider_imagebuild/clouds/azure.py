"""Azure: the client source and the translation of azure-core's errors, for the store and the target.

:class:`AzureClients` makes the Resource Manager clients (``azure-mgmt-compute``, ``-network``,
``-resource``) from one credential and subscription: from an Airflow Azure connection (the
Microsoft Azure provider's ``azure`` connection type, read through ``AzureBaseHook``: a service
principal from login, password and ``tenantId``; otherwise ``DefaultAzureCredential`` with the
connection's ``managed_identity_client_id`` / ``workload_identity_tenant_id``), or from the
environment's ``DefaultAzureCredential`` (the CLI, a Concourse task).

:func:`blob_service` gives the Blob Storage client of the state store: the provider's ``WasbHook``
inside Airflow, else ``AZURE_STORAGE_CONNECTION_STRING``, else ``DefaultAzureCredential``.

:func:`azure_errors` is the one translation of azure-core's failures into this project's errors:
401/403 and a credential that cannot get a token are :class:`InvalidInput` (not retried: an hour
of retries does not fix a wrong secret); 404 is :class:`NotFound` for the caller to decide;
429, 5xx, timeouts and unreachable endpoints are the layer's transient error (Airflow retries);
a long-running operation that ends ``Failed`` is transient too, naming Azure's code and message.

Bearer tokens travel over https only. The one exception is a loopback endpoint (an emulator, or
the tests' fake Resource Manager): a token is never sent in clear over a network.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_imagebuild.clouds import azure_login
from airflow_provider_imagebuild.clouds.azure_cloud import PUBLIC_CLOUD, AzureCloud, cloud_of
from airflow_provider_imagebuild.clouds.azure_login import AzureLogin
from airflow_provider_imagebuild.clouds.endpoint import is_loopback, require_tls_or_loopback
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, NotFound, StoreUnavailable, TargetError

# Azure location names as the API takes them (westeurope, eastus2, usgovvirginia): not the
# display names ("West Europe"), which ARM refuses.
AZURE_LOCATION_RE = re.compile(r"[a-z][a-z0-9]{2,39}", re.ASCII)
# Resource group names: letters, digits, '.', '_', '-', '(' and ')', not ending in '.'.
RESOURCE_GROUP_RE = re.compile(r"[A-Za-z0-9._()-]{0,89}[A-Za-z0-9_()-]", re.ASCII)
SUBSCRIPTION_RE = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", re.ASCII)
# Fail fast enough that an outage becomes a retryable error for Airflow (the SDK's defaults retry
# for minutes), and poll long-running operations at most this often unless Azure says otherwise.
CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 3,
    "retry_backoff_max": 20,
    "connection_timeout": 5,
    "read_timeout": 30,
}
POLLING_INTERVAL_S = 10
# 400s that pass by themselves: a NIC is kept 180 s for the VM just deleted (NicReservedForAnotherVm).
TRANSIENT_CODES = ("NicReservedForAnotherVm",)
CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"


def _loopback_policy(credential: Any, scope: str) -> Any:
    """ARM's bearer-token policy, letting plain http through to a loopback endpoint only."""
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    class LoopbackAware(ARMChallengeAuthenticationPolicy):
        def on_request(self, request: Any) -> None:
            if is_loopback(request.http_request.url):
                request.context["enforce_https"] = False
            super().on_request(request)

    return LoopbackAware(credential, scope)


@dataclass
class AzureClients:
    """Resource Manager clients from one credential, subscription and endpoint."""

    credential: Any
    subscription_id: str
    base_url: str = PUBLIC_CLOUD
    # The identity logged in as, for a child tool (Packer) to log in as the same (azure_login.py).
    login: AzureLogin | None = None
    # The token audience of a Resource Manager that is not a known cloud's (azure_cloud.py).
    audience: str = ""

    def __post_init__(self) -> None:
        self._cache: dict[str, Any] = {}
        quiet_sdk_logs()
        if not SUBSCRIPTION_RE.fullmatch(self.subscription_id or ""):
            raise InvalidInput(
                "target.subscription_id",
                f"{self.subscription_id!r} is not a subscription id (a GUID); set it in the spec or in the "
                "connection's extra subscriptionId",
            )
        require_tls_or_loopback(self.base_url, "resource_manager_endpoint")
        self.cloud: AzureCloud = cloud_of(self.base_url, self.audience)

    @classmethod
    def from_connection(cls, azure_conn_id: str, subscription_id: str | None = None) -> AzureClients:
        """The credential of an Airflow Azure connection, as the Azure provider's hooks read it."""
        from airflow.providers.microsoft.azure.hooks.base_azure import AzureBaseHook

        conn = AzureBaseHook(conn_id=azure_conn_id).get_connection(azure_conn_id)
        extra = conn.extra_dejson or {}
        endpoint = require_tls_or_loopback(
            str(extra.get("resource_manager_endpoint") or PUBLIC_CLOUD).rstrip("/"), "resource_manager_endpoint"
        )
        audience = str(extra.get("resource_manager_audience") or "")
        # The cloud's own Entra authority (a sovereign cloud's tokens come from its own); else
        # azure-identity's default, which AZURE_AUTHORITY_HOST sets for another cloud.
        cloud = cloud_of(endpoint, audience)
        authority = {"authority": cloud.authority} if cloud.authority else {}
        login = azure_login.from_connection(conn.login, conn.password, extra)
        if login is not None:
            from azure.identity import ClientSecretCredential

            credential: Any = ClientSecretCredential(
                tenant_id=login.tenant_id, client_id=login.client_id, client_secret=login.secret, **authority
            )
        else:
            from azure.identity import DefaultAzureCredential

            # The connection's managed_identity_client_id and workload_identity_tenant_id, each on its own
            # (the Azure provider's helper drops the first unless the second is given too).
            tenant = str(extra.get("workload_identity_tenant_id") or "")
            options: dict[str, Any] = {"additionally_allowed_tenants": [tenant]} if tenant else {}
            if extra.get("managed_identity_client_id"):
                options["managed_identity_client_id"] = str(extra["managed_identity_client_id"])
            if tenant:
                options["workload_identity_tenant_id"] = tenant
            try:  # azure-identity reads a certificate file here, and says what is wrong with it
                credential = DefaultAzureCredential(**options, **authority)
            except (ValueError, TypeError) as exc:
                raise InvalidInput("credentials", f"DefaultAzureCredential: {_message(exc)}") from None
            login = azure_login.default_credential(extra, os.environ)
        return cls(
            credential,
            subscription_id or str(extra.get("subscriptionId") or ""),
            endpoint,
            login,
            audience,
        )

    @classmethod
    def from_environment(cls, subscription_id: str | None = None, base_url: str | None = None) -> AzureClients:
        """``DefaultAzureCredential`` (environment, workload identity, managed identity, CLI login)."""
        from azure.identity import DefaultAzureCredential

        return cls(
            DefaultAzureCredential(),
            subscription_id or os.environ.get("AZURE_SUBSCRIPTION_ID", ""),
            (base_url or PUBLIC_CLOUD).rstrip("/"),
            azure_login.default_credential({}, os.environ),
        )

    def _client(self, name: str, factory: Any) -> Any:
        if name not in self._cache:
            self._cache[name] = factory(
                self.credential,
                self.subscription_id,
                base_url=self.base_url,
                authentication_policy=_loopback_policy(self.credential, self.cloud.scope),
                polling_interval=POLLING_INTERVAL_S,
                **CLIENT_OPTIONS,
            )
        return self._cache[name]

    @property
    def compute(self) -> Any:
        from azure.mgmt.compute import ComputeManagementClient

        return self._client("compute", ComputeManagementClient)

    @property
    def network(self) -> Any:
        from azure.mgmt.network import NetworkManagementClient

        return self._client("network", NetworkManagementClient)

    @property
    def resources(self) -> Any:
        from azure.mgmt.resource import ResourceManagementClient

        return self._client("resources", ResourceManagementClient)

    def packer_env(self, packer_version: str | None) -> dict[str, str]:
        """Packer's azure-arm login as the same identity, as environment variables: never on a
        command line, never logged; refused naming the setting where azure-arm has no equivalent."""
        login = self.login or azure_login.AzureLogin("managed_identity")
        return azure_login.packer_env(login, self.subscription_id, packer_version)


def quiet_sdk_logs() -> None:
    """The SDKs log every request and response at INFO: a task log would drown in them (the
    Azure provider's hooks quieten the same logger)."""
    import logging

    for name in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
        logging.getLogger(name).setLevel(logging.WARNING)


def account_url(account: str, endpoint_url: str | None) -> str:
    """The Blob service URL of ``account``: ``https://ACCOUNT.blob.core.windows.net``, or
    ``endpoint_url``; an endpoint without a path whose host is not the account's own (Azurite,
    Azure Stack) takes the account as its first path segment, as those services expect."""
    if not endpoint_url:
        return f"https://{account}.blob.core.windows.net"
    parts = urlsplit(endpoint_url.rstrip("/"))
    if parts.path or (parts.hostname or "").startswith(f"{account}."):
        return endpoint_url.rstrip("/")
    return f"{endpoint_url.rstrip('/')}/{account}"


def blob_service(account: str, endpoint_url: str | None = None, wasb_conn_id: str | None = None) -> Any:
    """A ``BlobServiceClient`` for the store (see the module's docstring for the credential order)."""
    from azure.storage.blob import BlobServiceClient

    quiet_sdk_logs()
    # The SDK's default retries back off 15 s, 18 s, 24 s... (a minute before an outage is said).
    options: dict[str, Any] = {
        "retry_total": 2,
        "initial_backoff": 0.5,
        "increment_base": 2,
        "random_jitter_range": 1,
        "connection_timeout": 5,
        "read_timeout": 30,
    }
    if wasb_conn_id:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        client = WasbHook(wasb_conn_id=wasb_conn_id).get_conn()
    elif os.environ.get(CONNECTION_STRING_ENV):
        client = BlobServiceClient.from_connection_string(os.environ[CONNECTION_STRING_ENV], **options)
    else:
        from azure.identity import DefaultAzureCredential

        url = require_tls_or_loopback(account_url(account, endpoint_url), "store.endpoint_url")
        client = BlobServiceClient(url, credential=DefaultAzureCredential(), **options)
    if client.account_name and client.account_name != account:
        raise InvalidInput(
            "store.account", f"the credentials are for storage account {client.account_name}, not {account}"
        )
    return client


def _status(exc: BaseException) -> int:
    return int(getattr(exc, "status_code", None) or 0)


def error_code(exc: BaseException) -> str:
    """Azure's error code of an ``HttpResponseError`` (``ResourceNotFound``, ``BlobAlreadyExists``)."""
    code = getattr(exc, "error_code", None) or getattr(getattr(exc, "error", None), "code", None)
    return str(code or "")


@contextlib.contextmanager
def azure_errors(
    what: str, *, transient: type[ImageBuildError] = TargetError, endpoint: str | None = None
) -> Iterator[None]:
    """Translate azure-core's failures inside the block (see the module's docstring)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    unreachable = "store unreachable: " if issubclass(transient, StoreUnavailable) else ""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise InvalidInput("credentials", f"{what}: {_message(exc)}") from exc
    except ResourceNotFoundError as exc:
        if issubclass(transient, StoreUnavailable) and error_code(exc) == "ContainerNotFound":
            raise transient(f"{what} does not exist; run `imagebuild store init` first") from exc
        raise NotFound(f"{what}: {error_code(exc) or 'not found'}: {_message(exc)}") from exc
    except HttpResponseError as exc:
        status, code = _status(exc), error_code(exc)
        if status in (401, 403):
            raise InvalidInput("credentials", f"{what}: {code or status}: {_message(exc)}") from exc
        if status in (400, 409) and code and not code.startswith(("Conflict", "OperationNotAllowed", *TRANSIENT_CODES)):
            raise InvalidInput("request", f"{what}: {code}: {_message(exc)}") from exc
        if status == 429 or status >= 500:
            raise transient(f"{what}: {code or status} (transient, retried): {_message(exc)}") from exc
        raise transient(f"{what}: {code or status or 'failed'}: {_message(exc)}") from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        where = endpoint or "the Azure endpoint"
        raise transient(f"{unreachable}{what}: cannot reach {where} ({type(exc).__name__})") from exc


def _message(exc: BaseException) -> str:
    """The first line of Azure's message (the SDK appends the whole response)."""
    message = getattr(getattr(exc, "error", None), "message", None) or getattr(exc, "message", None) or str(exc)
    return str(message).strip().splitlines()[0][:500] if str(message).strip() else type(exc).__name__
