"""The provider's Airflow plugin, registered through the ``airflow.plugins`` entry point:

- the Image builds app on the API server at ``/imagebuild``: the JSON API and the HTML pages;
- "Image builds" in the UI's navigation: the pages inside Airflow's frame (``/plugin/image-builds``);
- a middleware that records the note of a Clear as the reason of the milestone's next attempt.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_imagebuild.links import UI_ROUTE, URL_PREFIX


class LazyApp:
    """The plugin's ASGI app, made on its first request. Every Airflow process loads plugins (the
    scheduler, the DAG processor, each task); only the API server serves them, so only it pays
    for FastAPI, Jinja and Airflow's security module."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_imagebuild.plugin.api import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class LazyClearNotes:
    """The clear-note middleware (:mod:`.clear_notes`), imported on the API server only."""

    def __init__(self, app: Any) -> None:
        from airflow_provider_imagebuild.plugin.clear_notes import ClearNotes

        self._middleware = ClearNotes(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self._middleware(scope, receive, send)


class ImageBuildPlugin(AirflowPlugin):
    name = "imagebuild"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Image builds"}]
    fastapi_root_middlewares = [
        {"middleware": LazyClearNotes, "args": [], "kwargs": {}, "name": "imagebuild clear notes"}
    ]
    external_views = [
        {
            "name": "Image builds",
            "href": f"{URL_PREFIX}/builds",
            "destination": "nav",
            "url_route": UI_ROUTE,
            "icon": f"{URL_PREFIX}/static/icon.svg",
        }
    ]
