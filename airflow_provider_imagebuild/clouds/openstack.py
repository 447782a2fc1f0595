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

Errors: 401/403 and a Nova quota refusal are :class:`InvalidInput` (a retry cannot fix them); a
404 is :class:`NotFound`; everything else (5xx, 409 while a server is busy, timeouts, refused
connections) is :class:`TargetError`, which Airflow retries.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, NotFound, TargetError
from airflow_provider_imagebuild.spec_openstack import OpenstackLogin

log = logging.getLogger(__name__)

API_TIMEOUT_S = 60


@dataclass
class OpenstackClients:
    """The login, and the SDK connection made from it on first use."""

    options: dict[str, Any] = field(repr=False)  # openstack.connect keywords (holds the password)
    cloud: str | None = None
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
            return cls({"cloud": settings.cloud, "region_name": settings.region}, cloud=settings.cloud)
        return cls(cls._connection_options(settings, field_prefix))

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
        verify: Any = extra.get("cacert") or not (insecure is True or str(insecure).lower() == "true")
        options: dict[str, Any] = {
            "auth_url": str(auth_url),
            "username": str(conn.login),
            "password": str(conn.password or ""),
            "user_domain_name": extra.get("user_domain_name", "Default"),
            "project_domain_name": extra.get("project_domain_name", "Default"),
            "region_name": settings.region or extra.get("region_name"),
            "interface": extra.get("interface", "public"),
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

    def packer_env(self) -> dict[str, str]:
        """Packer's OpenStack login as the ``OS_*`` variables its builder reads: never on its
        command line, never in the template."""
        if self.cloud:
            env = {"OS_CLOUD": self.cloud}
            if self.options.get("region_name"):
                env["OS_REGION_NAME"] = str(self.options["region_name"])
            return env
        o = self.options
        env = {
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
        if isinstance(o.get("verify"), str):
            env["OS_CACERT"] = o["verify"]
        elif o.get("verify") is False:
            env["OS_INSECURE"] = "true"
        return env


def _status(exc: Any) -> int:
    return int(getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", 0) or 0)


@contextlib.contextmanager
def openstack_errors(what: str) -> Iterator[None]:
    """Translate openstacksdk and keystoneauth failures inside the block (see the module's docstring)."""
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
        if status in (401, 403):
            raise InvalidInput("credentials", f"OpenStack {what}: refused ({status}): {detail}") from None
        raise TargetError(f"OpenStack {what}: HTTP {status}: {detail}") from None
    except ks.Unauthorized as exc:
        raise InvalidInput("credentials", f"OpenStack {what}: Keystone refused the login ({exc.http_status})") from None
    except (ks.ClientException, os_exc.SDKException, OSError) as exc:
        raise TargetError(f"OpenStack {what}: {exc}") from None
