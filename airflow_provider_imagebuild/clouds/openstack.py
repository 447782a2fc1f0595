"""An OpenStack connection (openstacksdk) from an Airflow connection or a ``clouds.yaml`` cloud,
and the one translation of OpenStack errors.

There is no maintained OpenStack provider for Airflow 3, so the login is a generic connection:
``login``/``password``, and in ``extra`` the Keystone ``auth_url`` (required), ``project_name``
(or ``project_id``), ``user_domain_name`` and ``project_domain_name`` (default ``Default``),
``region_name``, ``interface``, ``cacert`` or ``insecure``. A spec may name a ``clouds.yaml``
cloud instead (``cloud:``), for teams whose workers already carry one. Neither the SDK's
environment variables nor a stray ``clouds.yaml`` are read when the connection is used, so a
worker's ``OS_*`` variables cannot redirect a build to another cloud. openstacksdk is imported
when a milestone runs, never at DAG parse time.

Ownership: what a build makes belongs to the project the login's token is scoped to (Nova's
``tenant_id`` of a server, Glance's ``owner`` of an image). Properties such as ``imagebuild_key``
can be set by anyone on their own images, and Glance shows other projects' public, community and
shared images, so :attr:`OpenstackClients.project_id` is what every ownership check starts from.

Packer: its ``openstack`` builder gets the login as ``OS_*`` variables (:meth:`OpenstackClients.packer_env`)
and, as template variables, what it does not read from its environment: TLS verification and the
catalog interface (:meth:`OpenstackClients.packer_access`).

Errors: 401/403 and a Nova quota refusal are :class:`InvalidInput` (a retry cannot fix them), named
after the spec's setting where the caller knows which one a refusal is about (a 403 making an image
public, a 400 booting a server); a 404 is :class:`NotFound`; everything else (5xx, 409 while a
server is busy, timeouts, refused connections) is :class:`TargetError`, which Airflow retries.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, NotFound, TargetError
from airflow_provider_imagebuild.spec.openstack import OpenstackLogin

log = logging.getLogger(__name__)

API_TIMEOUT_S = 60
# The catalog interfaces openstacksdk and Packer's openstack builder (endpoint_type) both take
INTERFACES = {"public": "public", "publicURL": "public", "internal": "internal", "internalURL": "internal",
              "admin": "admin", "adminURL": "admin"}  # fmt: skip


@dataclass
class OpenstackClients:
    """The login, and the SDK connection made from it on first use."""

    options: dict[str, Any] = field(repr=False)  # openstack.connect keywords (holds the password)
    cloud: str | None = None
    where: str = "target.openstack_conn_id"  # the spec field errors about the login name
    _conn: Any = field(default=None, repr=False)
    _project_id: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: OpenstackLogin, field_prefix: str = "target") -> OpenstackClients:
        try:
            import openstack  # noqa: F401
        except ImportError:
            raise InvalidInput(
                "cloud", "OpenStack needs the openstack extra: pip install 'airflow-provider-imagebuild[openstack]'"
            ) from None
        if settings.cloud:
            options = {"cloud": settings.cloud, "region_name": settings.region}
            return cls(options, cloud=settings.cloud, where=f"{field_prefix}.cloud")
        return cls(cls._connection_options(settings, field_prefix), where=f"{field_prefix}.openstack_conn_id")

    @staticmethod
    def _connection_options(settings: OpenstackLogin, field_prefix: str) -> dict[str, Any]:
        from airflow.sdk import BaseHook

        where = f"{field_prefix}.openstack_conn_id"
        conn_id = settings.openstack_conn_id
        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as exc:  # Airflow's own "connection not defined"
            raise InvalidInput(where, f"connection {conn_id!r}: {exc}") from None
        extra = conn.extra_dejson or {}
        auth_url = extra.get("auth_url") or (conn.host if str(conn.host or "").startswith("http") else None)
        if not auth_url or not conn.login:
            raise InvalidInput(where, f"connection {conn_id!r} needs a login and extra.auth_url (Keystone)")
        if not (extra.get("project_name") or extra.get("project_id")):
            raise InvalidInput(where, f"connection {conn_id!r} needs extra.project_name or extra.project_id")
        insecure = extra.get("insecure", False)
        interface = str(extra.get("interface", "public"))
        if interface not in INTERFACES:
            raise InvalidInput(
                where, f"connection {conn_id!r}: extra.interface {interface!r} is not public, internal or admin"
            )
        verify: Any = extra.get("cacert") or not (insecure is True or str(insecure).lower() == "true")
        options: dict[str, Any] = {
            "auth_url": str(auth_url),
            "username": str(conn.login),
            "password": str(conn.password or ""),
            "user_domain_name": extra.get("user_domain_name", "Default"),
            "project_domain_name": extra.get("project_domain_name", "Default"),
            "region_name": settings.region or extra.get("region_name"),
            "interface": INTERFACES[interface],
            "verify": verify,
        }
        for key in ("project_name", "project_id"):
            if extra.get(key):
                options[key] = str(extra[key])
        return options

    @property
    def conn(self) -> Any:
        """The SDK connection (authenticated lazily, on the first call that needs a token)."""
        if self._conn is None:
            import openstack
            from openstack.warnings import OpenStackDeprecationWarning

            # The SDK's own deprecation notices would fill every task log; they are for its developers.
            warnings.filterwarnings("ignore", category=OpenStackDeprecationWarning)

            with openstack_errors("connect"):
                if self.cloud:
                    self._conn = openstack.connect(
                        cloud=self.cloud, region_name=self.options.get("region_name"), api_timeout=API_TIMEOUT_S
                    )
                else:
                    self._conn = openstack.connect(
                        load_yaml_config=False, load_envvars=False, api_timeout=API_TIMEOUT_S,
                        app_name="airflow-provider-imagebuild", **self.options,
                    )  # fmt: skip
        return self._conn

    @property
    def project_id(self) -> str:
        """The id of the project the token is scoped to (Keystone's answer, not the settings: a
        ``project_name`` resolves to it). A login without a project scope is refused, since then
        no server or image could be proven this project's."""
        if self._project_id is None:
            with openstack_errors("project of the login"):
                found = self.conn.current_project_id
            if not found:
                raise InvalidInput("credentials", "the OpenStack login is not scoped to a project (project_name/id)")
            self._project_id = str(found)
        return self._project_id

    def in_project(self, owner: Any) -> bool:
        """Whether a resource's project (an image's ``owner``, a server's ``tenant_id``) is the login's."""
        return bool(owner) and str(owner) == self.project_id

    def _tls(self) -> tuple[bool | str, Any]:
        """How TLS is verified (False, True or a CA bundle) and the client certificate, from the
        connection's options or the clouds.yaml cloud alike (openstacksdk's reading of either)."""
        with openstack_errors("TLS settings of the login"):
            verify, cert = self.conn.config.get_requests_verify_args()
        return verify, cert

    def packer_access(self) -> dict[str, str]:
        """What Packer's openstack builder needs as template variables because it does not read it
        from its environment (Packer 1.6.6 builder/openstack/access_config.go reads only OS_CLOUD,
        OS_REGION_NAME, OS_CACERT, OS_CERT and OS_KEY besides the login; a clouds.yaml cloud gives it
        only the login): whether TLS is verified (``openstack_insecure``: a self-signed cloud fails
        with an x509 error otherwise) and the catalog interface (``openstack_endpoint_type``)."""
        verify, _ = self._tls()
        with openstack_errors("interface of the login"):
            interface = str(self.conn.config.get_interface() or "public")
        if interface not in INTERFACES:
            raise InvalidInput(self.where, f"interface {interface!r} is not public, internal or admin")
        return {"openstack_insecure": "true" if verify is False else "false",
                "openstack_endpoint_type": INTERFACES[interface]}  # fmt: skip

    def packer_env(self) -> dict[str, str]:
        """Packer's OpenStack login as the ``OS_*`` variables its builder reads: never on its
        command line, never in the template. A CA bundle and a client certificate go as
        ``OS_CACERT``/``OS_CERT``/``OS_KEY`` (read from the environment by the builder, also for a
        clouds.yaml cloud, whose own ``cacert`` it ignores); skipping verification is a template
        variable (:meth:`packer_access`)."""
        if self.cloud:
            env = {"OS_CLOUD": self.cloud, **self._tls_env()}
            if self.options.get("region_name"):
                env["OS_REGION_NAME"] = str(self.options["region_name"])
            return env
        o = self.options
        env = {
            **self._tls_env(),
            "OS_AUTH_URL": o["auth_url"],
            "OS_USERNAME": o["username"],
            "OS_PASSWORD": o["password"],
            "OS_USER_DOMAIN_NAME": o["user_domain_name"],
            "OS_PROJECT_DOMAIN_NAME": o["project_domain_name"],
        }
        if o.get("project_name"):
            env["OS_PROJECT_NAME"] = o["project_name"]
        if o.get("project_id"):
            env["OS_PROJECT_ID"] = o["project_id"]
        if o.get("region_name"):
            env["OS_REGION_NAME"] = str(o["region_name"])
        return env

    def _tls_env(self) -> dict[str, str]:
        verify, cert = self._tls()
        env = {"OS_CACERT": verify} if isinstance(verify, str) else {}
        if isinstance(cert, tuple) and len(cert) == 2:
            env.update(OS_CERT=str(cert[0]), OS_KEY=str(cert[1]))
        elif isinstance(cert, str):
            env["OS_CERT"] = cert
        return env


def _status(exc: Any) -> int:
    return int(getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", 0) or 0)


# Why Glance refuses visibility: public to a member (its publicize_image policy is admin only by
# default, glance/policies/image.py): the error names the setting, since the login is fine otherwise.
PUBLICIZE_NEEDS = (
    "public needs Glance's publicize_image policy (the admin role by default); use shared (with "
    "share_with_projects) or community, or ask the cloud's admins to publicize the image"
)


@contextlib.contextmanager
def openstack_errors(what: str, refused: Mapping[int, tuple[str, str]] | None = None) -> Iterator[None]:
    """Translate openstacksdk and keystoneauth failures inside the block (see the module's docstring).
    ``refused`` (status -> field, reason): such an answer in the block is that setting's fault, not
    the login's nor a passing one (a policy that refuses what the spec asks, a 400 for a security
    group the project lacks), so the error names the setting and is not retried."""
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as os_exc

    try:
        yield
    except ImageBuildError:
        raise
    except os_exc.NotFoundException as exc:
        raise NotFound(f"OpenStack {what}: {exc.details or 'not found'}") from None
    except os_exc.HttpException as exc:
        status = _status(exc)
        detail = exc.details or exc.message or type(exc).__name__
        if "quota" in str(detail).lower():
            raise InvalidInput("quota", f"OpenStack {what}: refused ({status}): {detail}") from None
        if refused and status in refused:
            field, reason = refused[status]
            raise InvalidInput(field, f"{reason} (OpenStack {what}: refused ({status}): {detail})") from None
        if status in (401, 403):  # worded so that the log's redaction of "credentials: <value>" keeps it
            raise InvalidInput(
                "credentials", f"the login was refused ({status}) at OpenStack {what}: {detail}"
            ) from None
        raise TargetError(f"OpenStack {what}: HTTP {status}: {detail}") from None
    except ks.Unauthorized as exc:
        raise InvalidInput(
            "credentials", f"the login was refused at OpenStack {what}: Keystone refused the login ({exc.http_status})"
        ) from None
    except (ks.ClientException, os_exc.SDKException, OSError) as exc:
        raise TargetError(f"OpenStack {what}: {exc}") from None
