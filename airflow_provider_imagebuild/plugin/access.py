"""What the Image builds API and pages share: who the caller is, what they may read and do on a
build's DAG (Airflow's auth manager), the deployment's stores read as one, and the store's errors as
HTTP answers that never say where a store is.

The JSON API (:mod:`.api`) and the HTML pages (:mod:`.pages`) both build on this module, so neither
imports the other for it: the pages are added to the API's app, nothing more.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, HTTPException

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import Conflict, InvalidInput, NotFound, StoreUnavailable
from airflow_provider_imagebuild.links import dag_id_of

if TYPE_CHECKING:
    from airflow_provider_imagebuild.hooks.deployment_stores import DeploymentStores

DOMAIN = "airflow_provider_imagebuild.build."  # the build domain: rules about builds, no storage

log = logging.getLogger(__name__)


async def current_user(user: Annotated[Any, Depends(get_user)]) -> Any:
    """The caller, authenticated by Airflow (401 without a token, 403 with a bad one)."""
    return user


User = Annotated[Any, Depends(current_user)]


@functools.cache
def store() -> DeploymentStores:
    """Every store of the deployment read as one (hooks/deployment_stores.py): the deployment's own
    store and each spec's, chosen in the one order every part uses; a build is read from and changed
    in the store it lives in."""
    from airflow_provider_imagebuild.hooks.deployment_stores import DeploymentStores

    return DeploymentStores()


def with_stores(page: dict[str, Any]) -> dict[str, Any]:
    """A page of builds with the store each lives in (``store``: a connection's name or the URL
    without its parameters) and the stores that could not be read (``unreadable_stores``)."""
    for row in page["builds"]:
        row["store"] = store().where(row["build_id"])
    return {**page, "unreadable_stores": list(store().unreadable)}


def may(user: Any, dag_id: str, act: bool) -> bool:
    """Read access to the DAG, or (``act``) what editing and triggering it needs."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    manager = get_auth_manager()
    details = DagDetails(id=dag_id)
    if not act:
        return bool(manager.is_authorized_dag(method="GET", details=details, user=user))
    return bool(
        manager.is_authorized_dag(method="PUT", details=details, user=user)
        and manager.is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN, details=details, user=user)
    )


def actor_of(user: Any) -> str:
    return f"{user.get_name()} (ui)"


def not_found(build_id: str | None) -> HTTPException:
    """The one answer for a build the caller cannot see, whether it does not exist or its DAG is
    not the caller's to read: asking tells neither that the build exists nor which DAG it is in."""
    return HTTPException(404, f"build {build_id} not found" if build_id else "build not found")


def domain_text(exc: BaseException) -> str | None:
    """The error's text when the build domain raised it (a rule of the build: a live lease, the
    plan's order, a host already released). The domain knows nothing of storage, so its text names
    the build only; a store's own refusal (a sqlite+s3 mirror changed by another host) names files
    and buckets, and gives None here."""
    tb, module = exc.__traceback__, ""
    while tb is not None:  # the innermost frame is where the error was raised
        module, tb = str(tb.tb_frame.f_globals.get("__name__", "")), tb.tb_next
    return str(exc) if module.startswith(DOMAIN) else None


@contextmanager
def store_errors(build_id: str | None = None) -> Iterator[None]:
    """The store's typed errors as HTTP answers that never say where the store is. A client gets an
    error's text only when it is about the client's own input (field and reason) or a rule of the
    build; the store's own text (``build X not found in sqlite:////...``, unreachable endpoints,
    file paths) goes to the API server's log."""
    try:
        yield
    except NotFound as exc:
        raise not_found(build_id) from exc
    except InvalidInput as exc:
        raise HTTPException(400, str(exc)) from exc
    except Conflict as exc:
        text = domain_text(exc)
        if text is None:
            log.warning("the build store refused a change: %s", exc)
        raise HTTPException(409, text or "the build store refused the change (see the API server's log)") from exc
    except StoreUnavailable as exc:
        log.warning("the build store cannot be used: %s", exc)
        raise HTTPException(503, "the build store cannot be used right now (see the API server's log)") from exc


def readable(user: Any, build_id: str) -> BuildRecord:
    """The build, when the caller may read its DAG; else the same 404 as for an unknown build."""
    with store_errors(build_id):
        rec = store().get(build_id)
    if not may(user, dag_id_of(rec), act=False):
        raise not_found(build_id)
    return rec


def actionable(user: Any, build_id: str) -> BuildRecord:
    rec = readable(user, build_id)
    if not may(user, dag_id_of(rec), act=True):
        raise HTTPException(403, f"acting on build {build_id} needs edit and trigger rights on DAG {dag_id_of(rec)}")
    return rec
