"""Extra links on a pipeline's tasks: the build's page, and the image the milestone produced.

Airflow 3 computes an operator's links in the worker when the task ends (success or failure) and
keeps them as XComs; the UI reads those. The task remembers its build id and outputs while it runs
(:class:`~.base.BuildOperator`), so a link needs neither the store nor the metadata DB."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from airflow_provider_imagebuild.links import build_page

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


def airflow_root() -> str:
    """Airflow's base path when the UI is served under one (``[api] base_url``)."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def airflow_address() -> str:
    """Airflow's full address (``[api] base_url`` with its scheme and host), for links read outside
    Airflow's UI, such as a notification's build page; its base path alone when none is configured."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    parts = urlsplit(conf.get("api", "base_url", fallback="") or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    return parts.path.rstrip("/")


class BuildPageLink(BaseOperatorLink):
    name = "Image build"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        build_id = getattr(operator, "_build_id", None)
        return build_page(build_id, airflow_root()) if build_id else ""


class ImageLink(BaseOperatorLink):
    """The image a milestone produced: the cloud console for an AMI in its region (the published
    copy in the first region), the ``file://`` path of a local catalog image."""

    name = "Image"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow_provider_imagebuild.targets.links import image_links

        outputs: dict[str, Any] = getattr(operator, "_outputs", None) or {}
        links = image_links(getattr(operator, "cloud", ""), outputs)
        return next(iter(links.values()), "")
