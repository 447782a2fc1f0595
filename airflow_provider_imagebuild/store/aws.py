"""AWS clients for the DynamoDB and S3 backends, and translation of their failures.

The store only needs "a client for service X". From the CLI that is a plain boto3 session
(credentials from the environment or profile); from Airflow the hook passes a factory built on
the Amazon provider's ``AwsBaseHook`` so that credentials come from ``aws_conn_id``. boto3 is
imported lazily: nothing here runs at DAG parse time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_imagebuild.errors import StoreUnavailable

ClientFactory = Callable[[str], Any]

# Fail fast enough that an outage becomes "store unreachable" and Airflow's retry takes over.
CLIENT_CONFIG = {
    "connect_timeout": 3,
    "read_timeout": 15,
    "retries": {"mode": "standard", "total_max_attempts": 3},
}


def botocore_config() -> Any:
    from botocore.config import Config

    return Config(**CLIENT_CONFIG)  # type: ignore[arg-type]


def boto3_factory(region: str | None, endpoint_url: str | None) -> ClientFactory:
    """Clients from a plain boto3 session, as the CLI uses them."""
    clients: dict[str, Any] = {}

    def factory(service: str) -> Any:
        if service not in clients:
            import boto3

            session = boto3.session.Session(region_name=region)
            clients[service] = session.client(  # type: ignore[call-overload]
                service, endpoint_url=endpoint_url, config=botocore_config()
            )
        return clients[service]

    return factory


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn connection and service failures into :class:`StoreUnavailable` naming ``what``."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except NoCredentialsError as exc:
        raise StoreUnavailable(f"{what}: no AWS credentials found ({exc})") from exc
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("ResourceNotFoundException", "NoSuchBucket"):
            raise StoreUnavailable(f"{what} does not exist; run `imagebuild store init` first") from exc
        raise StoreUnavailable(f"{what}: {code or 'error'}: {exc}") from exc
    except BotoCoreError as exc:
        raise StoreUnavailable(f"store unreachable: {what}: {exc}") from exc


def client_error_code(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""
