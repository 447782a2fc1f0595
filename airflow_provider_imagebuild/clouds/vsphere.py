"""vSphere clients from an Airflow connection, and the one translation of vSphere errors.

The SOAP API (VMs, templates, tasks) goes through pyVmomi; content libraries and tags are only in
the vSphere Automation (vAPI) REST API, reached with httpx and a session made from the same
login. There is no vSphere provider for Airflow: the connection is a generic one (host, port,
login, password; ``extra.insecure: true`` for a vCenter with a self-signed certificate, or
``extra.ca_file``), read through ``airflow.sdk``'s ``BaseHook``. pyVmomi is imported when a
milestone runs, never at DAG parse time.

Errors: a refused login or a missing privilege is :class:`InvalidInput` (a retry cannot fix it);
a managed object that vanished is :class:`NotFound`; an unreachable vCenter, a task that ended in
error and other faults are :class:`TargetError` (Airflow retries the milestone).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, NotFound, TargetError

log = logging.getLogger(__name__)

TASK_TIMEOUT_S = 3600  # one clone or capture
API_TIMEOUT_S = 30


@dataclass
class VsphereClients:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    insecure: bool = False
    ca_file: str | None = None
    _si: Any = field(default=None, repr=False)
    _rest: Any = field(default=None, repr=False)

    @classmethod
    def from_connection(cls, conn_id: str, where: str = "target.vsphere_conn_id") -> VsphereClients:
        from airflow.sdk import BaseHook

        try:
            import pyVmomi  # noqa: F401
        except ImportError:
            raise InvalidInput(
                "cloud", "vSphere needs the vsphere extra: pip install 'airflow-provider-imagebuild[vsphere]'"
            ) from None

        try:
            conn = BaseHook.get_connection(conn_id)
        except Exception as exc:  # Airflow's own "connection not defined"
            raise InvalidInput(where, f"connection {conn_id!r}: {exc}") from None
        extra = conn.extra_dejson or {}
        if not conn.host or not conn.login:
            raise InvalidInput(where, f"connection {conn_id!r} needs the vCenter host and a login")
        insecure = extra.get("insecure", False)
        return cls(
            host=str(conn.host),
            port=int(conn.port or 443),
            user=str(conn.login),
            password=str(conn.password or ""),
            insecure=insecure is True or str(insecure).lower() == "true",
            ca_file=extra.get("ca_file"),
        )

    @property
    def endpoint(self) -> str:
        return f"https://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        return ssl.create_default_context(cafile=self.ca_file)

    @property
    def si(self) -> Any:
        """The pyVmomi ServiceInstance (one login per target, reused by every call)."""
        if self._si is None:
            from pyVim.connect import SmartConnect

            with vsphere_errors(f"vCenter {self.endpoint} login"):
                self._si = SmartConnect(
                    host=self.host,
                    port=self.port,
                    user=self.user,
                    pwd=self.password,
                    sslContext=self.ssl_context(),
                    connectionPoolTimeout=API_TIMEOUT_S,
                )
        return self._si

    @property
    def content(self) -> Any:
        return self.si.RetrieveContent()

    def rest(self) -> Any:
        """An httpx client with a vAPI session (``vmware-api-session-id``)."""
        if self._rest is None:
            import httpx

            client = httpx.Client(base_url=f"{self.endpoint}/rest", verify=self.ssl_context(), timeout=API_TIMEOUT_S)
            with vsphere_errors(f"vCenter {self.endpoint} vAPI session"):
                answer = client.post("/com/vmware/cis/session", auth=(self.user, self.password))
                rest_answer(answer, "vAPI session")
            client.headers["vmware-api-session-id"] = answer.json()["value"]
            self._rest = client
        return self._rest

    def packer_env(self) -> dict[str, str]:
        """Packer's vSphere credentials as ``PKR_VAR_`` variables: never on its command line."""
        return {
            "PKR_VAR_vsphere_server": f"{self.host}:{self.port}" if self.port != 443 else self.host,
            "PKR_VAR_vsphere_user": self.user,
            "PKR_VAR_vsphere_password": self.password,
            "PKR_VAR_vsphere_insecure": "true" if self.insecure else "false",
        }

    def wait(self, what: str, task: Any) -> Any:
        """Wait for a vSphere task (bounded); its error is a transient failure naming vSphere's."""
        deadline = time.monotonic() + TASK_TIMEOUT_S
        delay = 0.05
        with vsphere_errors(what):
            while task.info.state in ("queued", "running"):
                if time.monotonic() > deadline:
                    raise TargetError(f"vSphere {what}: not done after {TASK_TIMEOUT_S} s")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            if task.info.state != "success":
                fault = task.info.error
                message = getattr(fault, "msg", None) or type(fault).__name__
                raise TargetError(f"vSphere {what}: {message}")
            return task.info.result


def rest_answer(answer: Any, what: str) -> Any:
    """A vAPI answer's ``value``; 401/403 are input errors, 404 NotFound, others transient."""
    if answer.status_code in (401, 403):
        raise InvalidInput("credentials", f"vSphere {what}: refused ({answer.status_code})")
    if answer.status_code == 404:
        raise NotFound(f"vSphere {what}: not found")
    if answer.status_code >= 300:
        raise TargetError(f"vSphere {what}: HTTP {answer.status_code} {answer.text[:300]}")
    return answer.json().get("value") if answer.content else None


@contextlib.contextmanager
def vsphere_errors(what: str) -> Iterator[None]:
    """Translate pyVmomi and connection failures inside the block (see the module's docstring)."""
    from pyVmomi import vim, vmodl

    try:
        yield
    except ImageBuildError:
        raise
    except (vim.fault.InvalidLogin, vim.fault.NoPermission, vim.fault.NotAuthenticated) as exc:
        raise InvalidInput("credentials", f"vSphere {what}: {getattr(exc, 'msg', '') or type(exc).__name__}") from None
    except vmodl.fault.ManagedObjectNotFound as exc:
        raise NotFound(f"vSphere {what}: {getattr(exc, 'msg', '') or 'the object is gone'}") from None
    except (vmodl.MethodFault, OSError) as exc:
        message = getattr(exc, "msg", "") or str(exc) or type(exc).__name__
        raise TargetError(f"vSphere {what}: {message}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("httpx"):
            raise TargetError(f"vSphere {what}: {exc}") from None
        raise
