"""Packer logs in to Azure as the identity the provider's own clients use, for every kind the Python
side supports, through its environment only; where azure-arm has no equivalent (Packer 1.6.6 and
packer-plugin-azure 1.x, which Packer 1.9 bundles), the milestone is refused first, naming the
setting. The real Azure connection and ``DefaultAzureCredential`` environment are read; the mapping
for both Packer generations is checked, and tests/toolchain/test_azure_template.py has the installed
Packer validate the shipped template with each."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.clouds.azure import AzureClients
from airflow_provider_imagebuild.errors import InvalidInput
from tests.conftest import AZURE_CONN_ID
from tests.servers.azure_arm import SUBSCRIPTION

OLD, NEW = "1.6.6", "1.9.5"


def fake_jwt(x5t: bool) -> str:
    """A client assertion shaped as Packer checks it (unverified): ``exp`` an hour ahead, and an
    ``x5t`` header for a certificate-signed one (a federated workload identity token has none)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    header = {"alg": "RS256", "typ": "JWT", **({"x5t": "dGh1bWJwcmludA"} if x5t else {"kid": "k1"})}
    claims = {"aud": "api://AzureADTokenExchange", "iss": "https://oidc.example", "exp": int(time.time()) + 3600}
    return f"{part(header)}.{part(claims)}.c2lnbmF0dXJl"


def self_signed_pem(path: Path, password: bytes | None = None) -> Path:
    """A service principal's certificate as azure-identity and Packer read it: key and certificate, PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagebuild-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path


def _connection(monkeypatch: pytest.MonkeyPatch, **conn: Any) -> None:
    extra = {"subscriptionId": SUBSCRIPTION, **conn.pop("extra", {})}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}", json.dumps({"conn_type": "azure", **conn, "extra": extra})
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_USERNAME", "AZURE_PASSWORD",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _env(version: str) -> dict[str, str]:
    return AzureClients.from_connection(AZURE_CONN_ID).packer_env(version)


def test_a_service_principal_of_the_connection_or_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    _connection(clean_env, login="app-id", password="s3cret-value", extra={"tenantId": "tenant-1"})
    for version in (OLD, NEW):
        env = _env(version)
        assert (env["ARM_CLIENT_ID"], env["ARM_CLIENT_SECRET"], env["ARM_TENANT_ID"]) == (
            "app-id",
            "s3cret-value",
            "tenant-1",
        )
        assert (env["ARM_PACKER_LOGIN"], env["ARM_SUBSCRIPTION_ID"]) == ("client_secret", SUBSCRIPTION)
        assert env["ARM_CLIENT_JWT"] == env["ARM_CLIENT_CERT_PATH"] == "", "no other login mixes in"

    _connection(clean_env)  # DefaultAzureCredential: EnvironmentCredential's service principal
    clean_env.setenv("AZURE_CLIENT_ID", "env-app")
    clean_env.setenv("AZURE_TENANT_ID", "tenant-2")
    clean_env.setenv("AZURE_CLIENT_SECRET", "env-s3cret")
    env = _env(OLD)
    assert (env["ARM_CLIENT_ID"], env["ARM_CLIENT_SECRET"], env["ARM_PACKER_LOGIN"]) == (
        "env-app",
        "env-s3cret",
        "client_secret",
    )

    _connection(clean_env, login="app-id", password="s3cret-value")
    with pytest.raises(InvalidInput, match="needs its tenant id") as info:
        AzureClients.from_connection(AZURE_CONN_ID)
    assert info.value.field == "connection.extra.tenantId"


def test_a_certificate_without_a_password_only(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _connection(clean_env)
    pem = self_signed_pem(tmp_path / "sp.pem")
    clean_env.setenv("AZURE_CLIENT_ID", "env-app")
    clean_env.setenv("AZURE_TENANT_ID", "tenant-2")
    clean_env.setenv("AZURE_CLIENT_CERTIFICATE_PATH", str(pem))
    env = _env(OLD)
    assert (env["ARM_CLIENT_CERT_PATH"], env["ARM_CLIENT_SECRET"], env["ARM_PACKER_LOGIN"]) == (
        str(pem),
        "",
        "client_certificate",
    )
    self_signed_pem(pem, b"pfx-pass")
    clean_env.setenv("AZURE_CLIENT_CERTIFICATE_PASSWORD", "pfx-pass")
    with pytest.raises(InvalidInput, match="unencrypted PEM") as info:
        _env(NEW)
    assert info.value.field == "env.AZURE_CLIENT_CERTIFICATE_PASSWORD" and "pfx-pass" not in str(info.value)


def test_a_user_password_login_has_no_packer_equivalent(clean_env: pytest.MonkeyPatch) -> None:
    _connection(clean_env)
    for name, value in {
        "AZURE_CLIENT_ID": "c",
        "AZURE_TENANT_ID": "t",
        "AZURE_USERNAME": "u",
        "AZURE_PASSWORD": "p",
    }.items():
        clean_env.setenv(name, value)
    with pytest.raises(InvalidInput, match="cannot log in with a user name and password") as info:
        _env(NEW)
    assert info.value.field == "env.AZURE_USERNAME"


def test_a_workload_identity_token_goes_to_packer_only_as_a_certificate_assertion(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "azure-identity-token"
    token.write_text(fake_jwt(x5t=False))
    _connection(clean_env, extra={"workload_identity_tenant_id": "tenant-3", "managed_identity_client_id": "uami"})
    clean_env.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token))
    for version in (OLD, NEW):
        with pytest.raises(InvalidInput, match="x5t certificate thumbprint") as info:
            _env(version)
        assert info.value.field == "env.AZURE_FEDERATED_TOKEN_FILE"
    token.write_text(fake_jwt(x5t=True))
    env = _env(OLD)
    assert (env["ARM_CLIENT_ID"], env["ARM_TENANT_ID"], env["ARM_PACKER_LOGIN"]) == ("uami", "tenant-3", "client_jwt")
    assert env["ARM_CLIENT_JWT"] == token.read_text()


def test_a_managed_identity_as_each_packer_takes_it(clean_env: pytest.MonkeyPatch) -> None:
    _connection(clean_env)  # system-assigned
    old, new = _env(OLD), _env(NEW)
    assert old["ARM_SUBSCRIPTION_ID"] == "", "1.6.6 reads a subscription without credentials as a device login"
    assert new["ARM_SUBSCRIPTION_ID"] == SUBSCRIPTION and old["ARM_CLIENT_ID"] == new["ARM_CLIENT_ID"] == ""
    assert old["ARM_PACKER_LOGIN"] == new["ARM_PACKER_LOGIN"] == "managed_identity"

    _connection(clean_env, extra={"managed_identity_client_id": "uami-client"})  # user-assigned
    assert _env(NEW)["ARM_CLIENT_ID"] == "uami-client"
    with pytest.raises(InvalidInput, match=r"needs Packer 1\.9 or later") as info:
        _env(OLD)
    assert info.value.field == "connection.extra.managed_identity_client_id"


def test_the_token_audience_and_packers_cloud_follow_the_resource_manager(
    fake_arm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sovereign cloud's Resource Manager takes tokens for its own audience, from its own authority;
    Packer is told which cloud it builds in; a Resource Manager of no known cloud (Azure Stack Hub)
    needs its audience, and Packer's azure-arm cannot build there."""
    from airflow_provider_imagebuild.clouds.azure_cloud import cloud_of
    from airflow_provider_imagebuild.spec.pipeline import AzureTargetSpec
    from airflow_provider_imagebuild.targets.azure import AzureTarget

    china = cloud_of("https://management.chinacloudapi.cn/")
    assert (china.scope, china.authority, china.packer_environment) == (
        "https://management.chinacloudapi.cn/.default",
        "login.chinacloudapi.cn",
        "China",
    )
    assert cloud_of("https://management.usgovcloudapi.net").packer_environment == "USGovernment"
    assert cloud_of("https://management.azure.com").scope == "https://management.azure.com/.default"

    spec = AzureTargetSpec(azure_conn_id=AZURE_CONN_ID, resource_group="rg-imagebuild", location="westeurope")
    # The fake stands in for China's Resource Manager: the token is asked for China's audience.
    _connection(monkeypatch, extra={"resource_manager_endpoint": fake_arm.url,
                                    "resource_manager_audience": "https://management.chinacloudapi.cn/"})  # fmt: skip
    target = AzureTarget.from_settings(spec, pipeline="p", image_type="t")
    assert target.clients.compute.gallery_images.get("rg-imagebuild", "golden", "rhel8-web").name == "rhel8-web"
    assert fake_arm.token_resources[-1] == "https://management.chinacloudapi.cn"

    stack = "https://management.local.azurestack.external"
    _connection(monkeypatch, extra={"resource_manager_endpoint": stack})
    with pytest.raises(InvalidInput, match="give the audience") as info:
        AzureTarget.from_settings(spec, pipeline="p", image_type="t")
    assert info.value.field == "connection.extra.resource_manager_audience"
    _connection(monkeypatch, extra={"resource_manager_endpoint": stack, "resource_manager_audience": f"{stack}/x"})
    target = AzureTarget.from_settings(spec, pipeline="p", image_type="t")
    assert target.clients.cloud.scope == f"{stack}/x/.default"
    with pytest.raises(InvalidInput, match="Public, China or USGovernment cloud only") as info:
        target.packer_vars()
    assert info.value.field == "connection.extra.resource_manager_endpoint"
