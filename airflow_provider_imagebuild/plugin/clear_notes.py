"""The clear's reason (#13 item 4): the note an operator writes in Airflow's Clear dialog becomes
the reason of the milestone's next attempt in the build's history.

A task cannot read its task instance's note (the Task SDK gives it the run's note, not the
task's), and Airflow has no hook on clearing. The clear itself, though, is one request to the API
server: ``POST /api/v2/dags/{dag_id}/clearTaskInstances`` with ``task_ids``, ``dag_run_id`` and
``note``. This ASGI middleware, registered by the plugin on the API server, watches that request;
when Airflow has answered 200 to a real (not dry-run) clear, it records a ``clear`` event with the
note and the clearing user on the build the run works on, at the earliest milestone cleared that
the build has not reached. :func:`~airflow_provider_imagebuild.build.rules.begin` gives that
event to the next attempt as its reason. Airflow already authenticated and authorized the clear;
the middleware never changes the request or the answer, and a failure to record is logged only.

It goes by what Airflow itself resolved, never by a reading of its own: the request's route (its
path below ``[api] base_url``'s path, as Airflow's router sees it), and the user Airflow's own
``get_user`` finds on the request (so two ``_token`` cookies name the one Airflow authenticated).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from airflow_provider_imagebuild.build.catalog import parse_code
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput
from airflow_provider_imagebuild.links import dag_id_of
from airflow_provider_imagebuild.store import BuildStore

if TYPE_CHECKING:  # the API server's stores, read as one
    from airflow_provider_imagebuild.hooks.deployment_stores import DeploymentStores

log = logging.getLogger(__name__)

CLEAR_PATH = re.compile(r"/api/v2/dags/[^/]+/clearTaskInstances")
MAX_BODY = 1 << 20  # a clear's request or answer beyond this is not read (a few hundred TIs fit)
_TASK_RE = re.compile(r"s(?P<code>[0-9]{3})_[A-Za-z0-9_]+", re.ASCII)


def milestone_of(task_id: str) -> int | None:
    """The milestone a pipeline task id names (``s045_storage`` -> 45); None for other tasks."""
    found = _TASK_RE.fullmatch(task_id)
    try:
        return parse_code(found["code"], "task_id") if found else None
    except InvalidInput:  # s999_x: not a milestone
        return None


def build_of_run(store: BuildStore | DeploymentStores, dag_id: str, run_id: str) -> BuildRecord | None:
    """The build an Airflow run works on: one of the DAG's builds with an attempt by that run."""
    prefix = f"{dag_id}/{run_id}/"
    records, _corrupt = store.scan_builds()
    for rec in records:
        if dag_id_of(rec) == dag_id and any(a.owner.startswith(prefix) for a in rec.attempts):
            return rec
    return None


def record_clear(
    store: BuildStore | DeploymentStores, cleared: list[dict[str, Any]], note: str, actor: str
) -> list[tuple[str, int]]:
    """Record the clear on each build concerned; returns ``(build_id, milestone)`` recorded."""
    by_run: dict[tuple[str, str], list[int]] = defaultdict(list)
    for ti in cleared:
        code = milestone_of(str(ti.get("task_id", "")))
        if code is not None and ti.get("dag_id") and ti.get("dag_run_id"):
            by_run[(str(ti["dag_id"]), str(ti["dag_run_id"]))].append(code)
    recorded = []
    for (dag_id, run_id), codes in by_run.items():
        rec = build_of_run(store, dag_id, run_id)
        if rec is None:
            continue
        pending = sorted(c for c in codes if c in rec.plan and c not in rec.milestones)
        if pending:  # a cleared task whose milestone is done just skips: nothing to explain
            store.note_clear(rec.build_id, pending[0], note=note, actor=actor)
            recorded.append((rec.build_id, pending[0]))
    return recorded


def route_path(scope: Any) -> str:
    """The request's path as the app routes it: without ``root_path`` (``[api] base_url``'s path,
    ``/airflow`` for ``http://host:8080/airflow``), which the path carries when Airflow is served
    under one. The same rule as Starlette's router (``starlette._utils.get_route_path``)."""
    path, root = str(scope.get("path", "")), str(scope.get("root_path", ""))
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


async def _user_name(scope: Any) -> str:
    """The clearing user, as Airflow's own ``get_user`` resolves this very request once Airflow has
    answered it: the bearer token, else the user Airflow's JWT refresh middleware resolved, else
    the ``_token`` cookie as Starlette reads it (the last of duplicates)."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user
    from starlette.requests import Request

    request = Request(scope)
    try:
        user = await get_user(request, None, await bearer_scheme(request))
    except Exception:  # Airflow answered 200, so this is not expected; the note is still recorded
        user = None
    return f"{user.get_name()} (ui)" if user is not None else "unknown user (ui)"


class ClearNotes:
    """ASGI middleware: see the module's docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not CLEAR_PATH.fullmatch(route_path(scope)):
            await self.app(scope, receive, send)
            return
        request, answer, status = bytearray(), bytearray(), [0]

        async def receive_() -> Any:
            message = await receive()
            if message.get("type") == "http.request" and len(request) <= MAX_BODY:
                request.extend(message.get("body", b""))
            return message

        async def send_(message: Any) -> None:
            if message.get("type") == "http.response.start":
                status[0] = int(message.get("status", 0))
            elif message.get("type") == "http.response.body" and len(answer) <= MAX_BODY:
                answer.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive_, send_)
        if status[0] != 200 or len(request) > MAX_BODY or len(answer) > MAX_BODY:
            return
        try:
            body, result = json.loads(request), json.loads(answer)
            if not isinstance(body, dict) or body.get("dry_run", True) is not False:
                return  # the dialog's preview of what a clear would touch
            note = body.get("note") or ""
            cleared = [ti for ti in result.get("task_instances", []) if isinstance(ti, dict)]
            actor = await _user_name(scope)
            from anyio import to_thread

            from airflow_provider_imagebuild.plugin.access import store

            recorded = await to_thread.run_sync(record_clear, store(), cleared, str(note), actor)
            for build_id, code in recorded:
                log.info("build %s: clear of milestone %s by %s recorded", build_id, code, actor)
        except (ValueError, ImageBuildError, AttributeError, TypeError) as exc:
            log.warning("could not record the clear's note in the build store: %s", exc)
