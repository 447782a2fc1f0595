"""Where a build shows in Airflow: the build page's link (a task's "Image build" link, the failure
advice, notifications) opens the plugin's page inside Airflow's UI frame, without a doubled path
segment, under Airflow's base path too. Airflow 3's UI shows a nav view at ``/plugin/<url_route>/*``
and loads the frame at ``/*`` from the site's origin (its PluginView), so the part after the route
must be the app page's own path."""

from __future__ import annotations

import itertools
import re

import pytest

from airflow_provider_imagebuild.links import URL_PREFIX, build_page
from airflow_provider_imagebuild.plugin import ImageBuildPlugin


def _frame_of(link: str, root: str) -> str:
    """What Airflow's UI loads in the frame for ``link``: the path after ``{root}/plugin/<route>``."""
    [view] = ImageBuildPlugin.external_views
    prefix = f"{root}/plugin/{view['url_route']}/"
    assert link.startswith(prefix), (link, prefix)
    return "/" + link.removeprefix(prefix)


@pytest.mark.parametrize("root", ["", "/airflow"])
def test_the_build_page_link_opens_the_apps_page_in_airflows_frame(root: str) -> None:
    link = build_page("nightly-2026.12.04", root)
    assert _frame_of(link, root) == f"{root}{URL_PREFIX}/builds/nightly-2026.12.04"
    parts = [p for p in link.split("/") if p]
    assert all(a != b for a, b in itertools.pairwise(parts)), f"a doubled path segment in {link}"
    assert not re.search(r"/plugin/imagebuild/imagebuild/", link)
    [view] = ImageBuildPlugin.external_views
    assert view["href"].startswith(URL_PREFIX + "/")  # the nav entry opens a page of the same app


def test_a_link_read_outside_airflow_carries_its_address() -> None:
    link = build_page("b-1", "https://airflow.example/ops")
    assert link == "https://airflow.example/ops/plugin/image-builds/ops/imagebuild/builds/b-1"


def test_a_build_id_is_one_path_segment() -> None:
    assert build_page("a/b?c#d").endswith("/builds/a%2Fb%3Fc%23d")
