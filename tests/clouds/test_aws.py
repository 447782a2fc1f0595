"""One translation of botocore's errors for the store and the target, and one client source.

The errors are botocore's own exception classes with the response shapes AWS returns (the
translation is what is under test); the client source talks to EC2 and S3 on the loopback moto
server, from the environment and from an Airflow AWS connection.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from airflow_provider_imagebuild.clouds.aws import AwsClients, aws_errors
from airflow_provider_imagebuild.errors import InvalidInput, StoreUnavailable, TargetError


def _client_error(code: str, status: int = 400) -> ClientError:
    response = {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "DescribeImages")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (_client_error("AccessDenied", 403), InvalidInput, "credentials: EC2 x: AccessDenied"),
        (_client_error("UnauthorizedOperation", 403), InvalidInput, "credentials"),
        (_client_error("ExpiredToken", 400), InvalidInput, "credentials"),
        (_client_error("ValidationException"), InvalidInput, "request: EC2 x: ValidationException"),
        (_client_error("RequestLimitExceeded", 503), "transient", "transient, retried"),
        (_client_error("ThrottlingException"), "transient", "transient, retried"),
        (_client_error("InternalError", 500), "transient", "transient, retried"),
        (_client_error("InvalidAMIID.NotFound"), "transient", "EC2 x: InvalidAMIID.NotFound"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), "transient", "cannot reach the endpoint"),
        (NoCredentialsError(), InvalidInput, "no AWS credentials"),
    ],
)
@pytest.mark.parametrize("transient", [TargetError, StoreUnavailable])
def test_one_translation_for_both_layers(exc: Exception, kind: object, text: str, transient: type) -> None:
    expected = transient if kind == "transient" else kind
    with pytest.raises(expected) as caught, aws_errors("EC2 x", transient=transient):  # type: ignore[arg-type]
        raise exc
    assert text in str(caught.value)
    assert type(caught.value) is expected or isinstance(caught.value, expected)  # type: ignore[arg-type]
    if transient is StoreUnavailable and isinstance(exc, EndpointConnectionError):
        assert str(caught.value).startswith("store unreachable: ")


def test_the_stores_missing_table_says_how_to_fix_it() -> None:
    missing = "does not exist; run `imagebuild store init` first"
    with pytest.raises(StoreUnavailable, match=missing), aws_errors("DynamoDB table t", transient=StoreUnavailable):
        raise _client_error("ResourceNotFoundException")


def test_clients_from_the_environment_and_from_a_connection(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.servers.aws_sample import moto_connection

    env = AwsClients.from_environment("eu-west-1", moto_url)
    assert env.client("ec2").meta.region_name == "eu-west-1"
    assert env("ec2") is env.client("ec2", "eu-west-1")  # one client per service and region
    assert env.client("ec2", "us-east-1").describe_regions()["Regions"]
    monkeypatch.setenv("AIRFLOW_CONN_AWS_MOTO", moto_connection(moto_url))
    conn = AwsClients.from_connection("aws_moto")
    assert conn.endpoint_url == moto_url and conn.region == "us-east-1"
    assert conn.client("s3").list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert set(conn.credentials()) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
