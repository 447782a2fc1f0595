"""The build page guides the next move (issue 29): Reset and Redo offer only the milestones the
store's reset accepts, each with what it does, the failed (or current) milestone chosen; a failed
build's page starts with the failing attempt's error, what clearing its task does, and the Skip the
store would accept; the timeline shows every attempt's error and readable outputs, times the page
shows in Airflow's selected time zone, runs labelled by their date, and follows a running build.
The browser side (preselection, time zone, following) is in tests/standalone/test_browser.py."""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build import rules
from airflow_provider_imagebuild.errors import Conflict, InvalidInput
from airflow_provider_imagebuild.plugin import access
from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.plugin.test_pages import DAG, PLAN, client_for, owner
from tests.targets.test_resume_after_delivery import delivered

RUN = "scheduled__2026-11-27T02:00:00+00:00"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BuildStore]:
    """The deployment's store, as the plugin finds it."""
    url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("IMAGEBUILD_STORE", url)
    monkeypatch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
    access.store.cache_clear()
    yield open_store(url)
    access.store.cache_clear()


@pytest.fixture
def may(monkeypatch: pytest.MonkeyPatch) -> None:
    """admin may act on every DAG; viewer may read them."""
    monkeypatch.setattr(access, "may", lambda user, dag_id, act: not act or user.get_name() == "admin")


def nightly_failed(store: BuildStore, build_id: str = "nightly-1", at: int = 45, tries: int = 2) -> None:
    """A scheduled build whose milestone ``at`` failed ``tries`` times, each with its own error."""
    store.create_build(build_id, pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
    store.set_metadata(build_id, {"dag_id": DAG})
    for code in [c for c in PLAN[1:] if c < at]:
        lease = store.begin(build_id, code, owner=owner(f"s{code:03d}_x", 1, RUN))
        outputs = {
            "image_id": f"/var/tmp/imagebuild/{build_id}/green/kickstart-rootfs.tar",
            "packages": ["nginx", "chrony"],
            "sizes": {"root": "8G", "var": "2G"},
        }
        store.complete(build_id, code, token=lease.token, outputs=outputs if code == 5 else {})
    for attempt in range(1, tries + 1):
        lease = store.begin(build_id, at, owner=owner(f"s{at:03d}_storage", attempt, RUN))
        store.fail(build_id, at, token=lease.token, error=f"error of try {attempt}: nfs mount failed")


def option_codes(page: str, form: str) -> tuple[list[int], list[int]]:
    """(offered codes, selected codes) of a form's milestone select."""
    found = re.search(rf'<form [^>]*id="{form}-form".*?</form>', page, re.S)
    assert found, f"no {form} form"
    options = re.findall(r'<option value="(\d+)"[^>]*?( selected)?>', found.group(0))
    return [int(c) for c, _ in options], [int(c) for c, sel in options if sel]


def accepted(store: BuildStore, build_id: str, code: int) -> bool:
    """Whether the store's own reset rule takes ``code`` (applied to a copy: nothing written)."""
    try:
        rules.reset(copy.deepcopy(store.get(build_id)), code, "x", "t", datetime.now(timezone.utc))
        return True
    except (Conflict, InvalidInput):
        return False


def test_reset_and_redo_offer_what_the_store_accepts_with_the_failed_milestone_chosen(
    store: BuildStore, may: None
) -> None:
    nightly_failed(store)
    admin = client_for("admin")
    page = admin.get("/builds/nightly-1").text
    for form in ("reset", "redo"):
        assert option_codes(page, form) == ([5, 45], [45]), form  # not 95 or 100: a reset there changes nothing run
    assert "un-completes nothing; the next run starts at 45 · Storage layout" in html.unescape(page)
    moves = admin.get("/api/builds/nightly-1").json()["moves"]
    assert [(m["milestone"], m["default"]) for m in moves["reset"]] == [(5, False), (45, True)]
    assert moves["redo"] == moves["reset"] and moves["blocked"] is None
    assert "un-completes 5 · OS installation started" in moves["reset"][0]["does"]

    # A delivered build whose host is released and checkpoints deleted: only what it can run from.
    rec = delivered(store, "d-1")
    store.set_metadata("d-1", {"dag_id": DAG})
    page = admin.get("/builds/d-1").text
    offered, chosen = option_codes(page, "redo")
    assert offered == [5] and chosen == [5], offered
    assert all(accepted(store, "d-1", c) for c in offered)
    assert not any(accepted(store, "d-1", c) for c in rec.plan[1:] if c not in offered)
    refused = admin.get("/api/builds/d-1").json()["moves"]["refused"]
    assert set(refused) == {str(c) for c in rec.plan[2:]} and "Redo from 5" in refused["90"]


def test_while_a_milestone_runs_nothing_is_offered_and_the_page_says_why(store: BuildStore, may: None) -> None:
    store.create_build("run-1", pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
    store.set_metadata("run-1", {"dag_id": DAG})
    store.begin("run-1", 5, owner=owner("s005_kickstart", 1), lease_seconds=600)
    admin = client_for("admin")
    page = admin.get("/builds/run-1").text
    assert 'id="blocked"' in page and "milestone 5 is running" in page
    assert "reset-form" not in page and "redo-form" not in page and "skip-form" not in page
    moves = admin.get("/api/builds/run-1").json()["moves"]
    assert moves["reset"] == [] and moves["skip"] is None and "milestone 5 is running" in moves["blocked"]
    assert admin.post("/api/builds/run-1/reset", json={"to": 5, "reason": "x"}).status_code == 409  # as the store


def test_a_failed_builds_page_leads_with_the_error_what_clearing_does_and_skip(store: BuildStore, may: None) -> None:
    nightly_failed(store)
    page = client_for("admin").get("/builds/nightly-1").text
    failure = re.search(r'<section class="failure" id="failure">.*?</section>', page, re.S)
    assert failure, "no failure panel"
    panel = html.unescape(failure.group(0))
    assert page.index('id="failure"') < page.index('id="actions"') < page.index('id="timeline"')
    assert "error of try 2: nfs mount failed" in panel and "error of try 1" not in panel  # the failing attempt's
    assert "Attempt 2" in panel
    assert f"/dags/{DAG}/runs/scheduled__2026-11-27T02%3A00%3A00%2B00%3A00/tasks/s045_storage?try_number=2" in panel
    assert "Clearing runs 45 · Storage layout again (attempt 3), then 95, 100; 5 stay done" in panel
    assert 'id="skip-form"' in panel and option_codes(panel, "skip") == ([45], [45])
    assert "counts 45 · Storage layout as done without running it; the next run or clear continues at 95" in panel

    viewer = html.unescape(client_for("viewer").get("/builds/nightly-1").text)
    assert 'id="failure"' in viewer and "error of try 2" in viewer and "skip-form" not in viewer

    nightly_failed(store, "nightly-2", at=95, tries=1)  # the seal cannot be skipped
    sealed = html.unescape(client_for("admin").get("/builds/nightly-2").text)
    assert "skip-form" not in sealed and "95 · Image sealed and captured cannot be skipped" in sealed


def test_the_timeline_shows_every_attempts_error_and_readable_outputs(store: BuildStore, may: None) -> None:
    nightly_failed(store)
    page = client_for("admin").get("/builds/nightly-1").text
    row45 = re.search(r'<tr data-state="45".*?</tr>', page, re.S)
    assert row45 and "error of try 1" in row45.group(0) and "error of try 2" in row45.group(0)
    row5 = re.search(r'<tr data-state="5".*?</tr>', page, re.S)
    assert row5
    cell = row5.group(0)
    full = "/var/tmp/imagebuild/nightly-1/green/kickstart-rootfs.tar"
    assert '<span class="role">Image</span>' in cell and f'title="{full}">…/green/kickstart-rootfs.tar</a>' in cell
    assert "nginx, chrony" in cell and "root: 8G, var: 2G" in cell
    assert "[&#39;nginx&#39;" not in cell and "{&#39;root" not in cell  # no Python reprs


def test_times_are_marked_for_the_selected_time_zone_and_runs_labelled_by_date(store: BuildStore, may: None) -> None:
    nightly_failed(store)
    page = client_for("admin").get("/builds/nightly-1").text
    created = store.get("nightly-1").created_at
    assert f'<time datetime="{created}"' in page and 'id="tz"' in page
    runs = re.search(r'<dd id="runs">.*?</dd>', page, re.S)
    assert runs and f'title="{RUN}"' in runs.group(0)
    assert '<time datetime="2026-11-27T02:00:00.000000Z"' in runs.group(0) and "scheduled" in runs.group(0)
    assert f">{RUN}<" not in runs.group(0)
    listed = client_for("admin").get("/builds").text  # the list's times too, and which zone they are in
    assert f'<time datetime="{created}"' in listed and 'id="tz"' in listed


def test_the_page_follows_a_running_build_and_gives_its_eta(store: BuildStore, may: None) -> None:
    for build_id in ("done-1", "run-1"):
        store.create_build(build_id, pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
        store.set_metadata(build_id, {"dag_id": DAG})
    for code in PLAN[1:]:
        lease = store.begin("done-1", code, owner=owner(f"s{code:03d}_x", 1))
        store.complete("done-1", code, token=lease.token)
    store.begin("run-1", 5, owner=owner("s005_kickstart", 1), lease_seconds=600)
    admin = client_for("admin")
    running = admin.get("/builds/run-1").text
    assert 'data-activity="running"' in running and 'data-poll="/imagebuild/api/builds/run-1"' in running
    assert re.search(r'<dd class="ts" id="eta"><time datetime="', running)
    assert admin.get("/api/builds/run-1").json()["eta"] is not None
    assert 'data-activity="still"' in admin.get("/builds/done-1").text
    # a list of running builds only still has the pipeline's history to estimate from
    listed = admin.get("/builds", params={"status": "running"}).text
    row = re.search(r'<tr data-build="run-1">.*?</tr>', listed, re.S)
    assert row is not None
    assert row.group(0).removesuffix("</tr>").rstrip().endswith("</time></td>"), row.group(0)


def test_api_moves_explain_each_target(store: BuildStore, may: None) -> None:
    nightly_failed(store)
    moves: dict[str, Any] = client_for("viewer").get("/api/builds/nightly-1").json()["moves"]
    assert moves["skip"]["milestone"] == 45 and moves["clear"].startswith("runs 45 · Storage layout again")


def test_custom_milestones_keep_their_titles(store: BuildStore, may: None, airflow_home: Path) -> None:
    """The titles a spec gives its own milestones, from the DAG Airflow parsed (its tasks' display
    names), on the page, in the choices and in the API's moves: ``42 · License check``."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    from airflow_provider_imagebuild.dag_factory import build_dag
    from airflow_provider_imagebuild.spec.pipeline import parse_spec

    custom = {"action": "command", "key": "license_check", "title": "License check", "command": "true"}
    spec = parse_spec({"pipeline": "lic-demo", "cloud": "local", "image_type": "base", "milestones": {42: custom}})
    dag = build_dag(spec)
    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:  # what Airflow's DAG processor writes for the API server
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )
    store.create_build("lic-1", pipeline="lic-demo", cloud="local", image_type="base", plan=[0, 42, 100])
    store.set_metadata("lic-1", {"dag_id": dag.dag_id})
    lease = store.begin("lic-1", 42, owner=f"{dag.dag_id}/{RUN}/s042_license_check/try-1")
    store.fail("lic-1", 42, token=lease.token, error="GPL in the image")
    admin = client_for("admin")
    page = html.unescape(admin.get("/builds/lic-1").text)
    assert "custom 42" not in page
    assert 'Failed at <span class="code">42</span> License check' in page
    assert '<option value="42" data-does="un-completes nothing; the next run starts at 42 · License check"' in page
    assert "counts 42 · License check as done" in page
    assert "42 · License check" in admin.get("/api/builds/lic-1").json()["moves"]["clear"]
    listed = admin.get("/builds").text
    assert '<span class="code">42</span> License check' in listed


def test_the_api_list_of_running_builds_has_their_eta(store: BuildStore, may: None) -> None:
    """Filtered to running builds, the list still estimates from the pipeline's finished ones."""
    for build_id in ("done-1", "run-1"):
        store.create_build(build_id, pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
        store.set_metadata(build_id, {"dag_id": DAG})
    for code in PLAN[1:]:
        lease = store.begin("done-1", code, owner=owner(f"s{code:03d}_x", 1))
        store.complete("done-1", code, token=lease.token)
    store.begin("run-1", 5, owner=owner("s005_kickstart", 1), lease_seconds=600)
    listed = client_for("viewer").get("/api/builds", params={"build_status": "running"}).json()
    assert [(b["build_id"], b["eta"] is not None) for b in listed["builds"]] == [("run-1", True)]


def test_the_builds_list_follows_only_while_a_build_runs(store: BuildStore, may: None) -> None:
    store.create_build("reg-1", pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
    store.set_metadata("reg-1", {"dag_id": DAG})
    admin = client_for("admin")
    assert 'id="builds" data-follow="0"' in admin.get("/builds").text
    store.begin("reg-1", 5, owner=owner("s005_kickstart", 1), lease_seconds=600)
    assert 'id="builds" data-follow="1"' in admin.get("/builds").text


def test_a_records_own_titles_need_no_dag(store: BuildStore, may: None) -> None:
    """A build registered with its pipeline's titles shows them though Airflow knows no such DAG."""
    store.create_build("t-1", pipeline="web-demo", cloud="local", image_type="base", plan=[0, 42, 100],
                       titles={42: "License check"})  # fmt: skip
    store.set_metadata("t-1", {"dag_id": DAG})
    page = html.unescape(client_for("admin").get("/builds/t-1").text)
    assert '<option value="42" data-does="un-completes nothing; the next run starts at 42 · License check"' in page
    assert "milestone 42" not in page
