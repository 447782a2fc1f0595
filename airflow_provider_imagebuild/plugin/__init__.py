"""The provider's Airflow plugin: the Image builds API and pages on the API server, and a link to
them in the UI's navigation. Registered through the ``airflow.plugins`` entry point."""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/imagebuild"


class LazyApp:
    """The plugin's ASGI app, made on its first request. Every Airflow process loads plugins (the
    scheduler, the DAG processor, each task); only the API server serves them, so only it pays
    for FastAPI and Airflow's security module."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_imagebuild.plugin.api import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class ImageBuildPlugin(AirflowPlugin):
    name = "imagebuild"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Image builds"}]
