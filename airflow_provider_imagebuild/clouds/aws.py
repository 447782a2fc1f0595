"""AWS: the client source and the translation of botocore's errors, for the store and the target.

:class:`AwsClients` makes boto3 clients per service and region with one botocore configuration
(fail fast enough that an outage becomes a retryable error for Airflow), from an Airflow AWS
connection through the Amazon provider's ``AwsBaseHook`` (credentials, region and endpoint from
``aws_conn_id``) or from the environment's credential chain.

:func:`aws_errors` is the one translation of botocore's failures into this project's errors:

- the endpoint cannot be reached, a timeout, throttling, a 5xx: the layer's *transient* error
  (:class:`TargetError` for a target, :class:`StoreUnavailable` for the store), which Airflow
  retries;
- access denied, bad or expired credentials, an invalid request: :class:`InvalidInput`, which is
  not retried (an hour of retries does not fix a wrong key);
- anything else: the transient error, naming the call, the code and AWS's message.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, StoreUnavailable, TargetError

# AWS region names (us-east-1, eu-west-1, us-gov-west-1, ap-southeast-4): the one definition,
# used by the spec and by store URLs.
AWS_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}", re.ASCII)

CLIENT_CONFIG: dict[str, Any] = {
    "connect_timeout": 3,
    "read_timeout": 15,
    "retries": {"mode": "standard", "total_max_attempts": 3},
}
THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
}
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "OptInRequired",
}
INVALID = {"ValidationException", "ValidationError", "InvalidParameterValue", "InvalidParameterCombination"}
MISSING = {"ResourceNotFoundException", "NoSuchBucket"}


def botocore_config() -> Any:
    from botocore.config import Config

    return Config(**CLIENT_CONFIG)


class AwsClients:
    """boto3 clients, one per service and region, from one session source.

    Called with a service name alone (``clients("s3")``), it gives the client of its default
    region: the shape the store's backends take."""

    def __init__(self, session: Any, region: str | None, endpoint_url: str | None) -> None:
        self._session = session  # region -> boto3 Session
        self.region = region
        self.endpoint_url = endpoint_url
        self._cache: dict[tuple[str, str | None], Any] = {}
        self.conn_id: str | None = None  # the Airflow connection the credentials come from, if any

    @classmethod
    def from_environment(cls, region: str | None = None, endpoint_url: str | None = None) -> AwsClients:
        """The environment's credential chain (variables, profile, instance role), as the CLI uses."""

        def session(region_name: str | None) -> Any:
            import boto3

            return boto3.session.Session(region_name=region_name)

        return cls(session, region, endpoint_url)

    @classmethod
    def from_connection(
        cls, aws_conn_id: str | None, region: str | None = None, endpoint_url: str | None = None
    ) -> AwsClients:
        """Credentials, region and endpoint from an Airflow AWS connection (``AwsBaseHook``);
        ``region``/``endpoint_url`` given here win over the connection's."""
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="sts", region_name=region)
        clients = cls(
            lambda region_name: hook.get_session(region_name=region_name),
            region or hook.conn_region_name,
            endpoint_url or hook.conn_config.endpoint_url,
        )
        clients.conn_id = aws_conn_id
        return clients

    def client(self, service: str, region: str | None = None) -> Any:
        region = region or self.region
        if (service, region) not in self._cache:
            self._cache[service, region] = self._session(region).client(
                service, region_name=region, endpoint_url=self.endpoint_url, config=botocore_config()
            )
        return self._cache[service, region]

    __call__ = client

    def credentials(self) -> dict[str, str]:
        """The credentials as environment variables, for a child tool (Packer): never on a
        command line, never logged."""
        found = self._session(self.region).get_credentials()
        if found is None:
            # The Amazon hook falls back to the machine's credentials when the connection is missing:
            # with none there either, the missing connection is the cause to name.
            from airflow_provider_imagebuild.clouds.connections import ConnectionMissing, connection_exists

            if self.conn_id and not connection_exists(self.conn_id):
                raise ConnectionMissing(self.conn_id, "aws_conn_id")
            raise InvalidInput("credentials", "no AWS credentials found (connection, environment or profile)")
        frozen = found.get_frozen_credentials()
        env = {"AWS_ACCESS_KEY_ID": str(frozen.access_key), "AWS_SECRET_ACCESS_KEY": str(frozen.secret_key)}
        if frozen.token:
            env["AWS_SESSION_TOKEN"] = str(frozen.token)
        return env


def client_error_code(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


@contextlib.contextmanager
def aws_errors(
    what: str, *, transient: type[ImageBuildError] = TargetError, endpoint: str | None = None
) -> Iterator[None]:
    """Translate botocore's failures inside the block (see the module's docstring)."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, WaiterError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    unreachable = "store unreachable: " if issubclass(transient, StoreUnavailable) else ""
    try:
        yield
    except NoCredentialsError as exc:
        raise InvalidInput("credentials", f"{what}: no AWS credentials found ({exc})") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = error.get("Message", exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in DENIED:
            raise InvalidInput("credentials", f"{what}: {code}: {message}") from exc
        if code in INVALID:
            raise InvalidInput("request", f"{what}: {code}: {message}") from exc
        if code in MISSING and issubclass(transient, StoreUnavailable):
            raise transient(f"{what} does not exist; run `imagebuild store init` first") from exc
        if code in THROTTLED or status >= 500:
            raise transient(f"{what}: {code or status} (transient, retried): {message}") from exc
        raise transient(f"{what}: {code or 'error'}: {message}") from exc
    except (EndpointConnectionError, BotoConnectionError) as exc:
        where = endpoint or getattr(exc, "kwargs", {}).get("endpoint_url", "") or "the AWS endpoint"
        raise transient(f"{unreachable}{what}: cannot reach the endpoint {where}") from exc
    except WaiterError as exc:
        raise transient(f"{what}: gave up waiting: {exc.last_response.get('Error', exc)}") from exc
    except BotoCoreError as exc:
        raise transient(f"{unreachable}{what}: {exc}") from exc
