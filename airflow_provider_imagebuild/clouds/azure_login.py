"""Which identity the provider's Azure clients log in as, and how Packer's azure-arm builder is given
the same one.

The Python side logs in as a service principal of the Airflow connection, or through
``DefaultAzureCredential`` (service principal, certificate or user from ``AZURE_*``, a workload
identity's federated token, a system- or user-assigned managed identity). Packer must build as that
identity too, or milestones 5 and 10 act as someone else (or as nobody). azure-arm's login
(``builder/azure/common/client/config.go``, Packer 1.6.6 and packer-plugin-azure 1.4.0, which Packer
1.9 bundles) takes:

- ``client_id`` + ``client_secret`` (+ ``tenant_id``): a service principal with a secret;
- ``client_id`` + ``client_cert_path``: with a PEM certificate (no password: ``client_cert_password``
  comes with plugin 2.x);
- ``client_id`` + ``client_jwt``: a client assertion, which both versions accept only with an ``x5t``
  header (a certificate thumbprint); a workload identity's federated token has none;
- no secret, certificate, JWT nor tenant: the managed identity. Packer 1.6.6 treats a subscription id
  without credentials as an interactive device login, and a ``client_id`` without a secret as an
  error, so it gets neither and builds in the VM's own subscription (IMDS); plugin 1.3 and later take
  both, ``client_id`` choosing a user-assigned identity;
- ``use_azure_cli_auth``: the ``az login`` session (the spec's ``vars: {azure_login: azure_cli}``;
  DefaultAzureCredential only falls back to it, so it is never guessed).

Everything goes to Packer's environment, read by the template's variable defaults: never a command
line. Where Packer has no equivalent, the milestone is refused before Packer runs, naming the setting.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from airflow_provider_imagebuild.errors import InvalidInput

LoginKind = Literal["client_secret", "client_certificate", "user_password", "workload_identity", "managed_identity"]
# The first Packer whose bundled azure plugin (1.4.0) takes a managed identity with a subscription and
# a client id (packer-plugin-azure#143, in 1.3.0); earlier ones are treated as 1.6.6 is.
MODERN_PACKER = (1, 9)
# The template's azure_login for each kind (dags/packer/rhel8-azure.pkr.hcl reads ARM_PACKER_LOGIN).
PACKER_LOGIN = {"client_secret": "client_secret", "client_certificate": "client_certificate",
                "workload_identity": "client_jwt", "managed_identity": "managed_identity"}  # fmt: skip
PACKER_ENV = (
    "ARM_CLIENT_ID", "ARM_CLIENT_SECRET", "ARM_CLIENT_CERT_PATH", "ARM_CLIENT_JWT", "ARM_TENANT_ID",
    "ARM_SUBSCRIPTION_ID", "ARM_PACKER_LOGIN",
)  # fmt: skip


@dataclass(frozen=True)
class AzureLogin:
    """The identity the Azure clients use, with what Packer needs to use it too (secrets stay here
    and in Packer's environment only)."""

    kind: LoginKind
    client_id: str = ""
    tenant_id: str = ""
    secret: str = ""
    certificate_path: str = ""
    token_file: str = ""
    encrypted: bool = False  # a certificate with a password
    source: str = ""  # the setting the kind came from, for errors (connection.login, env.AZURE_...)


def from_connection(login: str | None, password: str | None, extra: Mapping[str, object]) -> AzureLogin | None:
    """The service principal an Airflow Azure connection names, or None (DefaultAzureCredential)."""
    tenant = str(extra.get("tenantId") or extra.get("tenant_id") or "")
    if login and password:
        if not tenant:
            raise InvalidInput(
                "connection.extra.tenantId", "a service principal (login and password) needs its tenant id"
            )
        return AzureLogin("client_secret", login, tenant, secret=password, source="connection.login")
    return None


def default_credential(extra: Mapping[str, object], environ: Mapping[str, str]) -> AzureLogin:
    """What ``DefaultAzureCredential`` (with the connection's ``managed_identity_client_id`` and
    ``workload_identity_tenant_id``) logs in as, in its documented order: the environment's service
    principal or user, then a workload identity's token file, then a managed identity."""
    client = environ.get("AZURE_CLIENT_ID", "")
    tenant = environ.get("AZURE_TENANT_ID", "")
    if client and tenant:
        if environ.get("AZURE_CLIENT_SECRET"):
            secret = environ["AZURE_CLIENT_SECRET"]
            return AzureLogin("client_secret", client, tenant, secret=secret, source="env.AZURE_CLIENT_SECRET")
        if environ.get("AZURE_CLIENT_CERTIFICATE_PATH"):
            encrypted = bool(environ.get("AZURE_CLIENT_CERTIFICATE_PASSWORD"))
            return AzureLogin(
                "client_certificate",
                client,
                tenant,
                certificate_path=environ["AZURE_CLIENT_CERTIFICATE_PATH"],
                encrypted=encrypted,
                source=f"env.AZURE_CLIENT_CERTIFICATE_{'PASSWORD' if encrypted else 'PATH'}",
            )
        if environ.get("AZURE_USERNAME") and environ.get("AZURE_PASSWORD"):
            return AzureLogin("user_password", client, tenant, source="env.AZURE_USERNAME")
    identity_client = str(extra.get("managed_identity_client_id") or "")
    token_file = environ.get("AZURE_FEDERATED_TOKEN_FILE", "")
    if token_file:
        return AzureLogin(
            "workload_identity",
            identity_client or client,
            str(extra.get("workload_identity_tenant_id") or "") or tenant,
            token_file=token_file,
            source="env.AZURE_FEDERATED_TOKEN_FILE",
        )
    if identity_client:
        return AzureLogin("managed_identity", identity_client, source="connection.extra.managed_identity_client_id")
    return AzureLogin("managed_identity", client, source="env.AZURE_CLIENT_ID" if client else "")


def version_tuple(version: str | None) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(found[1]), int(found[2])) if found else (0, 0)


def jwt_header(token: str) -> dict[str, object]:
    """The (unverified) header of a JWT, or an empty mapping when it is not one."""
    head = token.strip().split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def packer_env(login: AzureLogin, subscription_id: str, packer_version: str | None) -> dict[str, str]:
    """Packer's environment for ``login`` (every ``ARM_*`` the template reads, empty where unused,
    so that a worker's own ``ARM_*`` never mixes in). ``ARM_PACKER_LOGIN`` tells the template which
    azure-arm fields to fill; see the module's docstring for what each Packer takes."""
    modern = version_tuple(packer_version) >= MODERN_PACKER
    env = dict.fromkeys(PACKER_ENV, "")
    env["ARM_SUBSCRIPTION_ID"] = subscription_id
    if login.kind == "client_secret":
        env.update(ARM_CLIENT_ID=login.client_id, ARM_CLIENT_SECRET=login.secret, ARM_TENANT_ID=login.tenant_id)
    elif login.kind == "client_certificate":
        if login.encrypted:
            raise InvalidInput(
                login.source,
                "Packer's azure-arm takes an unencrypted PEM certificate only (client_cert_path; a password needs "
                "packer-plugin-azure 2.x): give Packer milestones a certificate without a password",
            )
        if not Path(login.certificate_path).is_file():
            raise InvalidInput(login.source, f"{login.certificate_path} is not a readable certificate file")
        env.update(ARM_CLIENT_ID=login.client_id, ARM_CLIENT_CERT_PATH=login.certificate_path)
        env["ARM_TENANT_ID"] = login.tenant_id
    elif login.kind == "user_password":
        raise InvalidInput(
            login.source,
            "Packer's azure-arm cannot log in with a user name and password (AZURE_USERNAME/AZURE_PASSWORD): give "
            "Packer milestones a service principal or a managed identity",
        )
    elif login.kind == "workload_identity":
        try:
            token = Path(login.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InvalidInput(login.source, f"{login.token_file} cannot be read ({exc.strerror})") from None
        if not jwt_header(token).get("x5t"):
            raise InvalidInput(
                login.source,
                "Packer's azure-arm (1.6.6, and packer-plugin-azure 1.x that Packer 1.9 bundles) takes a client "
                "JWT only with an x5t certificate thumbprint header, which a workload identity's federated token "
                "does not carry: give Packer milestones a service principal or a managed identity",
            )
        env.update(ARM_CLIENT_ID=login.client_id, ARM_CLIENT_JWT=token, ARM_TENANT_ID=login.tenant_id)
    elif modern:
        env.update(ARM_CLIENT_ID=login.client_id)
    else:
        if login.client_id:
            raise InvalidInput(
                login.source or "connection.extra.managed_identity_client_id",
                f"Packer {packer_version} logs in as the VM's managed identity only (a client id without a secret is "
                "an error for its azure-arm); choosing a user-assigned identity needs Packer 1.9 or later",
            )
        # Packer 1.6.6 reads an explicit subscription without credentials as an interactive device login.
        env["ARM_SUBSCRIPTION_ID"] = ""
    env["ARM_PACKER_LOGIN"] = PACKER_LOGIN.get(login.kind, "managed_identity")
    return env
