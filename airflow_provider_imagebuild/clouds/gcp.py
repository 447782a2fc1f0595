"""Google Cloud: the client source and the translation of Google API errors, for the store and the target.

:class:`GcpClients` holds one credential and project: from an Airflow Google connection through the
Google provider's ``GoogleBaseHook`` (service account key file or JSON, workload identity /
Application Default Credentials, an impersonation chain), or from Application Default Credentials
(the CLI, a Concourse task). Compute Engine is the discovery-based client with the discovery
document shipped in ``google-api-python-client`` (no network at build time); Cloud Storage is
``google-cloud-storage``. The connection's ``extra.compute_endpoint`` points Compute Engine
elsewhere (Private Service Connect, or the tests' loopback fake).

:func:`gcp_errors` is the one translation: 401/403 and credentials that cannot be refreshed are
:class:`InvalidInput` (not retried); 404 is :class:`NotFound` for the caller to decide; 429, 5xx,
timeouts and unreachable endpoints are the layer's transient error (Airflow retries); an operation
that ends with an error is transient too, naming Google's code and message.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.clouds.endpoint import require_tls_or_loopback
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, NotFound, StoreUnavailable, TargetError

PROJECT_RE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", re.ASCII)
ZONE_RE = re.compile(r"[a-z]+-[a-z]+[0-9]{1,2}-[a-z]", re.ASCII)
REGION_RE = re.compile(r"[a-z]+-[a-z]+[0-9]{1,2}", re.ASCII)
# Multi-regions (us, eu, asia) and regions, as images' storageLocations take them.
STORAGE_LOCATION_RE = re.compile(r"(us|eu|asia|[a-z]+-[a-z]+[0-9]{1,2})", re.ASCII)
COMPUTE_ENDPOINT = "https://compute.googleapis.com/compute/v1/"
ADC_FILE = Path("~/.config/gcloud/application_default_credentials.json")


def _extra(conn: Any, name: str) -> Any:
    """A Google connection's extra field, with or without the provider's old prefix."""
    extra = conn.extra_dejson or {}
    return extra.get(name) or extra.get(f"extra__google_cloud_platform__{name}")


@dataclass
class GcpClients:
    """Compute Engine (discovery) from one credential, project and endpoint."""

    credentials: Any
    project: str
    compute_endpoint: str = COMPUTE_ENDPOINT
    key_file: str | None = None  # a service account key file, for Packer

    def __post_init__(self) -> None:
        self._compute: Any = None
        require_tls_or_loopback(self.compute_endpoint, "connection extra.compute_endpoint")
        if not PROJECT_RE.fullmatch(self.project or ""):
            raise InvalidInput(
                "target.project",
                f"{self.project!r} is not a project id; set target.project or the connection's project",
            )

    @classmethod
    def from_connection(cls, gcp_conn_id: str, project: str | None = None) -> GcpClients:
        """Credentials and project as the Google provider's hooks resolve them."""
        from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

        hook = GoogleBaseHook(gcp_conn_id=gcp_conn_id)
        credentials, found_project = hook.get_credentials_and_project_id()
        conn = hook.get_connection(gcp_conn_id)
        key_file = _extra(conn, "key_path")
        keyfile_dict = _extra(conn, "keyfile_dict")
        if not key_file and keyfile_dict:
            key_file = private_key_file(keyfile_dict if isinstance(keyfile_dict, str) else json.dumps(keyfile_dict))
        return cls(
            credentials,
            project or str(found_project or ""),
            str(_extra(conn, "compute_endpoint") or COMPUTE_ENDPOINT),
            str(key_file) if key_file else None,
        )

    @classmethod
    def from_environment(cls, project: str | None = None) -> GcpClients:
        import google.auth

        try:
            credentials, found = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except Exception as exc:
            raise InvalidInput("credentials", f"no Google credentials found: {exc}") from None
        return cls(credentials, project or str(found or ""), key_file=os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))

    @property
    def compute(self) -> Any:
        if self._compute is None:
            from googleapiclient import discovery

            self._compute = discovery.build(
                "compute",
                "v1",
                credentials=self.credentials,
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": self.compute_endpoint},
                num_retries=0,
            )
        return self._compute

    def packer_env(self) -> dict[str, str]:
        """Packer's googlecompute credentials: the key file's path in its environment (never its
        content on a command line); nothing for workload identity, which Packer finds itself."""
        env = {"GOOGLE_CLOUD_PROJECT": self.project}
        if self.key_file:
            env["GOOGLE_APPLICATION_CREDENTIALS"] = self.key_file
        return env


_key_dir: str | None = None


def private_key_file(content: str) -> str:
    """A key given inline (``keyfile_dict``) as a file only this user can read, removed at exit."""
    global _key_dir
    if _key_dir is None:
        _key_dir = tempfile.mkdtemp(prefix="imagebuild-gcp-")
        atexit.register(shutil.rmtree, _key_dir, True)
    path = Path(_key_dir) / "key.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(content)
    return str(path)


def adc_configured() -> bool:
    """Whether Application Default Credentials are configured (a key file or a gcloud login),
    decided without asking the metadata server."""
    return bool(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")) or ADC_FILE.expanduser().exists()


def storage_client(project: str | None, endpoint_url: str | None, gcp_conn_id: str | None = None) -> Any:
    """A ``google.cloud.storage.Client`` for the store (see the store's docstring for the order)."""
    from google.cloud import storage  # type: ignore[attr-defined]

    options = {"api_endpoint": endpoint_url} if endpoint_url else None
    emulator = endpoint_url or os.environ.get("STORAGE_EMULATOR_HOST")
    anonymous = bool(emulator) and not gcp_conn_id and not adc_configured()
    if endpoint_url and not anonymous:  # real credentials: never in clear over a network
        require_tls_or_loopback(endpoint_url, "store.endpoint_url")
    if gcp_conn_id:
        from airflow.providers.google.common.hooks.base_google import GoogleBaseHook

        credentials, found = GoogleBaseHook(gcp_conn_id=gcp_conn_id).get_credentials_and_project_id()
        return storage.Client(project=project or found, credentials=credentials, client_options=options)
    if anonymous:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or "imagebuild", credentials=AnonymousCredentials(), client_options=options
        )
    return storage.Client(project=project, client_options=options)


def storage_retry() -> Any:
    """Cloud Storage's retry, bounded to 10 s: the library's default retries for two minutes
    before an outage is said, and Airflow retries the task anyway."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return (
        DEFAULT_RETRY.with_timeout(10.0)
        if hasattr(DEFAULT_RETRY, "with_timeout")
        else DEFAULT_RETRY.with_deadline(10.0)
    )


STORAGE_TIMEOUT = (3.05, 15)  # connect, read


def _http_error(exc: Any) -> tuple[int, str, str]:
    """(status, reason, message) of a googleapiclient ``HttpError``."""
    status = int(getattr(getattr(exc, "resp", None), "status", 0) or 0)
    reason, message = "", str(getattr(exc, "reason", "") or exc)
    with contextlib.suppress(Exception):
        error = json.loads(exc.content.decode())["error"]
        message = str(error.get("message") or message)
        reason = str((error.get("errors") or [{}])[0].get("reason") or error.get("status") or "")
    return status, reason, message.strip().splitlines()[0][:500] if message.strip() else str(status)


@contextlib.contextmanager
def gcp_errors(
    what: str, *, transient: type[ImageBuildError] = TargetError, endpoint: str | None = None
) -> Iterator[None]:
    """Translate Google client failures inside the block (see the module's docstring)."""
    import google.auth.exceptions
    from google.api_core import exceptions as api
    from googleapiclient.errors import HttpError

    unreachable = "store unreachable: " if issubclass(transient, StoreUnavailable) else ""
    try:
        yield
    except google.auth.exceptions.GoogleAuthError as exc:
        raise InvalidInput("credentials", f"{what}: {exc}") from exc
    except HttpError as exc:
        status, reason, message = _http_error(exc)
        if status in (401, 403):
            raise InvalidInput("credentials", f"{what}: {reason or status}: {message}") from exc
        if status == 404:
            raise NotFound(f"{what}: {reason or 'notFound'}: {message}") from exc
        if status == 400:
            raise InvalidInput("request", f"{what}: {reason or 'badRequest'}: {message}") from exc
        if status == 429 or status >= 500:
            raise transient(f"{what}: {reason or status} (transient, retried): {message}") from exc
        raise transient(f"{what}: {reason or status}: {message}") from exc
    except api.RetryError as exc:
        where = endpoint or "the Google endpoint"
        raise transient(f"{unreachable}{what}: gave up after retrying ({where}): {exc.cause or exc}") from exc
    except (api.Unauthorized, api.Forbidden) as exc:
        raise InvalidInput("credentials", f"{what}: {exc.message}") from exc
    except api.NotFound as exc:
        raise NotFound(f"{what}: {exc.message}") from exc
    except api.BadRequest as exc:
        raise InvalidInput("request", f"{what}: {exc.message}") from exc
    except api.GoogleAPICallError as exc:
        raise transient(f"{what}: {exc.code} (transient, retried): {exc.message}") from exc
    except (OSError, TimeoutError) as exc:  # refused, reset, DNS, socket timeouts (httplib2, requests)
        where = endpoint or "the Google endpoint"
        raise transient(f"{unreachable}{what}: cannot reach {where} ({type(exc).__name__})") from exc
    except Exception as exc:
        if type(exc).__module__.startswith(("requests", "urllib3", "httplib2")):
            where = endpoint or "the Google endpoint"
            raise transient(f"{unreachable}{what}: cannot reach {where} ({type(exc).__name__})") from exc
        raise
