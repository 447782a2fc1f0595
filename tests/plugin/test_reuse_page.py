"""A build that reused an earlier build's work (#32) on its page and in the API: the head says what
it took (nothing changed since build X, or milestones 5..15 reused from build X), each reused
milestone says whose result it holds, the source build is a link to its own page while the store
holds it (a pruned source is named, not linked), and the API's build carries ``reuse`` and each
attempt's ``reused_from``. The records are tests/cli/test_reuse_shown.py's, made through the store."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone

from airflow_provider_imagebuild.build.record import format_ts
from airflow_provider_imagebuild.store import BuildStore
from tests.cli.test_reuse_shown import reused_builds
from tests.plugin.test_next_moves import may, store  # noqa: F401 - fixtures
from tests.plugin.test_pages import DAG, client_for


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def test_the_page_and_the_api_say_what_a_build_reused_and_link_its_source(store: BuildStore, may: None) -> None:  # noqa: F811
    reused_builds(store)
    for build_id in ("night-1", "night-2", "night-3"):
        store.set_metadata(build_id, {"dag_id": DAG})
    viewer = client_for("viewer")
    link = '<a class="build-link" href="/imagebuild/builds/night-1">build night-1</a>'

    page = viewer.get("/builds/night-3").text
    head = re.search(r'<dd id="reuse">.*?</dd>', page, re.S)
    assert head and _text(head.group(0)) == "nothing changed since build night-1: its image delivered again"
    assert link in head.group(0)

    page = viewer.get("/builds/night-2").text
    head = re.search(r'<dd id="reuse">.*?</dd>', page, re.S)
    assert head and _text(head.group(0)) == "milestones 5..15 reused from build night-1"
    row = re.search(r'<tr data-state="15".*?</tr>', page, re.S)
    assert row and "reused from build night-1 (milestone 15)" in _text(row.group(0)) and link in row.group(0)
    ran = re.search(r'<tr data-state="20".*?</tr>', page, re.S)
    assert ran and "reused" not in ran.group(0)  # it ran for real
    attempts = re.search(r'<tr data-state="10" data-attempt="1">.*?</tr>', page, re.S)
    assert attempts and "reused from build night-1 (milestone 10)" in _text(attempts.group(0))
    assert 'id="reuse"' not in viewer.get("/builds/night-1").text

    shown = viewer.get("/api/builds/night-2").json()
    assert shown["reuse"]["headline"] == "milestones 5..15 reused from build night-1"
    assert shown["reuse"]["delivered_unchanged"] is None
    assert [(a["state"], a["kind"], a["reused_from"]) for a in shown["attempts"] if a["kind"] == "reused"] == [
        (c, "reused", {"build_id": "night-1", "state": c}) for c in (5, 10, 15)
    ]
    assert viewer.get("/api/builds/night-3").json()["reuse"]["delivered_unchanged"] == "night-1"

    # Retention pruned the source: the page still names it, without a link to a page that is gone.
    assert store.prune("night-1", updated_before=format_ts(datetime.now(timezone.utc) + timedelta(seconds=5)))
    page = viewer.get("/builds/night-3").text
    head = re.search(r'<dd id="reuse">.*?</dd>', page, re.S)
    assert head and _text(head.group(0)) == "nothing changed since build night-1: its image delivered again"
    assert "/builds/night-1" not in page


def test_the_build_pages_cost_says_what_reuse_saved(store: BuildStore) -> None:  # noqa: F811
    """The page's cost reads the pipeline's builds: what night-1 paid for 5..15 (None: unknown)."""
    from airflow_provider_imagebuild.plugin.views import build_view

    reused_builds(store)
    view = build_view(store.get("night-2"), store.scan_builds()[0])
    cost = view["summary"]["cost"]
    assert cost["reused_milestones"] == [5, 10, 15] and cost["cost_saved_by_reuse"] == 0.0
