"""The Image builds pages: the builds list and one build's page, HTML rendered on the API server
and shown by Airflow's UI in its own frame (the plugin's external view). They read what the JSON
API reads, with the same authorization; the action forms call the JSON API from the browser with
Airflow's session cookie, and are not rendered for a user who may not act (the API refuses them
anyway). A browser without a session is sent to Airflow's login page."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from airflow_provider_imagebuild.build.ids import CLOUDS
from airflow_provider_imagebuild.build.status import BUILD_STATUS_WORDS, build_status, check_build_status
from airflow_provider_imagebuild.hooks.prices import deployment_prices
from airflow_provider_imagebuild.links import URL_PREFIX, TaskRef, dag_id_of
from airflow_provider_imagebuild.plugin import access
from airflow_provider_imagebuild.plugin.titles import titles_for
from airflow_provider_imagebuild.plugin.views import build_view, builds_page, short_text
from airflow_provider_imagebuild.store import ListFilter

HERE = Path(__file__).parent
STATIC = {"imagebuild.css": "text/css", "imagebuild.js": "text/javascript", "icon.svg": "image/svg+xml"}
PAGE_SIZE = 50


def _ts(value: str | None) -> Markup:
    """``2026-11-27T07:03:12.123456Z`` as ``<time datetime="...">2026-11-27 07:03:12</time>``: written
    in UTC, and shown by the page's script in the time zone chosen in Airflow's UI (its user menu),
    as Airflow's own pages show times. Without the script the UTC time stays, marked as such."""
    if not value:
        return Markup("")
    return Markup('<time datetime="{}" title="{} UTC">{} UTC</time>').format(
        value, value[:19].replace("T", " "), value[:19].replace("T", " ")
    )


def _path(value: object) -> str:
    """A long path or id by its last parts (the full value is the element's title)."""
    return short_text(str(value))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _owner(owner: str) -> str:
    """``dag/run/task/try-2`` as ``s045_storage, try 2`` (the rest is in the link)."""
    ref = TaskRef.parse(owner or "")
    return f"{ref.task_id}, try {ref.try_number}" if ref else owner


@cache
def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters.update(ts=_ts, duration=_duration, short=_short, owner=_owner, path=_path)
    return env


def _paths(request: Request) -> tuple[str, str]:
    """(the plugin's base path, Airflow's base path), as this request reached the API server."""
    base = request.scope.get("root_path", "").rstrip("/")
    root = base[: -len(URL_PREFIX)] if base.endswith(URL_PREFIX) else ""
    return base, root


def _render(request: Request, name: str, user: Any, **values: Any) -> HTMLResponse:
    base, root = _paths(request)
    html = templates().get_template(name).render(base=base, root=root, user_name=user.get_name(), **values)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def add_pages(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def login_first(request: Request, exc: StarletteHTTPException) -> Response:
        """A page opened without a session goes to Airflow's login and comes back."""
        if exc.status_code == 401 and "/api/" not in request.url.path:
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return await http_exception_handler(request, exc)

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{_paths(request)[0]}/builds", status_code=303)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in STATIC:
            raise HTTPException(404, "no such file")
        return FileResponse(HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get("/builds", response_class=HTMLResponse, include_in_schema=False)
    def builds_html(
        request: Request,
        user: access.User,
        pipeline: str | None = None,
        cloud: str | None = None,
        status: str | None = None,
        state: str | None = None,
        offset: int = Query(default=0, ge=0),
    ) -> HTMLResponse:
        filters = {"pipeline": pipeline or None, "cloud": cloud or None, "status": status or None}
        code = int(state) if state and state.isascii() and state.isdigit() and int(state) <= 100 else None
        with access.store_errors():
            # The page's status is the build's (registered, running, ...), as on its badges.
            wanted = check_build_status(status, "status") if status else None
            flt = ListFilter.checked(pipeline=filters["pipeline"], cloud=filters["cloud"])
            everything, _ = access.store().scan_builds()  # one read: the page and the pipeline choices
        allowed: dict[str, bool] = {}

        def readable(dag_id: str) -> bool:
            return allowed.setdefault(dag_id, access.may(user, dag_id, act=False))

        pipelines = sorted({r.pipeline for r in everything if readable(dag_id_of(r))})
        chosen = [r for r in everything if flt.matches(vars(r)) and (wanted is None or build_status(r) == wanted)]
        page = access.with_stores(builds_page(chosen, readable, state=code, limit=PAGE_SIZE, offset=offset,
                                           history=everything, prices_of=deployment_prices()))  # fmt: skip
        shown = {r.build_id: r for r in chosen}
        for row in page["builds"]:  # custom milestones by their pipeline's titles
            row["current_title"] = titles_for(shown[row["build_id"]])(row["current_state"])

        def page_link(to: int) -> str:
            query = {k: v for k, v in {**filters, "state": code}.items() if v is not None}
            return f"{_paths(request)[0]}/builds?{urlencode({**query, 'offset': max(0, to)})}"

        return _render(
            request,
            "builds.html",
            user,
            page=page,
            filters={**filters, "state": code},
            pipelines=pipelines,
            clouds=CLOUDS,
            statuses=BUILD_STATUS_WORDS,
            page_link=page_link,
        )

    @app.get("/builds/{build_id}", response_class=HTMLResponse, include_in_schema=False)
    def build_html(request: Request, build_id: str, user: access.User) -> HTMLResponse:
        rec = access.readable(user, build_id)
        with access.store_errors():
            same, _ = access.store().scan_builds(ListFilter(pipeline=rec.pipeline))
        view = build_view(rec, same, titles=titles_for(rec), prices_of=deployment_prices())
        may_act = access.may(user, dag_id_of(rec), act=True)
        summary = {**view["summary"], "store": access.store().where(rec.build_id)}
        return _render(request, "build.html", user, v=view, s=summary, may_act=may_act)
