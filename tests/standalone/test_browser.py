"""The operator's day in a real browser (Debian's chromium, Playwright) on the real Airflow UI.

The session's shared ``airflow standalone`` runs the ends of the shipped local pipeline
(debootstrap, Ansible over chroot, the seal's qcow2, the catalog) with a flaky failure injected
at 85 (``IMAGEBUILD_FAIL_AT=85@1``: the first attempt fails, as a mirror timeout would). Then, as a person:

1. the admin opens the DAG's grid, opens the failed task, clears it through Airflow's own Clear
   dialog with a note, and the run goes green: the store shows 85's second attempt, with the note
   as its reason, and no completed milestone ran again;
2. the admin opens Image builds from the navigation, finds the build, sees the two attempts at
   85, follows an attempt's link to its Airflow task log; a reset to 85 is refused with the reason
   (the delivered build's host and checkpoints are gone) and a redo from 5 with a reason rebuilds
   it: the build is delivered again, the action recorded with the admin's name;
3. a viewer sees the pages without the action forms, and the API refuses the action anyway (403);
   a browser without a session is sent to Airflow's login.

Before the clear, the failed build's page is checked as the operator meets it (the error first,
what clearing does, Skip, Reset and Redo set to 85, the custom milestone 42 by its title, times in
the time zone chosen in Airflow's UI); after the redo, the page follows the run until delivery
without being reloaded.

Screenshots of the builds list, the failed build's page and the build page go to ``docs/images/``
when ``IMAGEBUILD_UPDATE_SCREENSHOTS=1`` (the operator's guide shows them), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import expect

from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.servers.browser import Operator, chromium
from tests.servers.process import ROOT
from tests.servers.standalone import SHARED_FAIL_AT, Airflow, Deployment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

PIPELINE = "ui-local"
DAG_ID = "imagebuild_ui_local"
MILESTONES = (5, 10, 85, 95, 100)
CUSTOM = 42  # a milestone of the pipeline's own, shown by its title (42 · License check)
BUILD = "ui-local-1"
NOTE = "apt mirror timed out (INC-4711); mirror is back"


def ui_pipeline(store_url: str) -> str:
    """The shipped local pipeline's ends, on the real local target (debootstrap from the cached
    base, the green image's playbook over chroot and its checkpoint, metadata, the seal's qcow2,
    the catalog) without its middle: the UI's scenario needs a real delivered build whose host and
    checkpoints are gone, not the configuration milestones ``test_local_pipeline`` builds."""
    spec = yaml.safe_load((ROOT / "dags/pipelines/local-debian-base.yaml").read_text())
    kept = {code: spec["milestones"][code] for code in MILESTONES}
    kept[CUSTOM] = {
        "action": "command",
        "key": "license_check",
        "title": "License check",
        "command": "echo licenses ok",
    }
    kept = dict(sorted(kept.items()))
    for milestone in kept.values():
        if "playbook" in milestone:
            milestone["playbook"] = str((ROOT / "dags/pipelines" / milestone["playbook"]).resolve())
    spec.update(pipeline=PIPELINE, store=store_url, checkpoints=[10], milestones=kept)
    spec.pop("policy", None)  # checked at 90, which this cut of the pipeline has not (test_policy_gate tests it)
    spec["target"]["boot"] = {"green_image": False, "before_publish": False}  # the UI, not booting, is tested here
    return yaml.safe_dump(spec, sort_keys=False)


@pytest.fixture(scope="module")
def deployment(shared_standalone: Deployment, rootfs_archive: Path) -> Iterator[dict[str, Any]]:
    shots = ROOT / "docs" / "images" if os.environ.get("IMAGEBUILD_UPDATE_SCREENSHOTS") == "1" else None
    shots = shots or shared_standalone.folder / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    airflow = shared_standalone.airflow
    shared_standalone.add_pipeline(PIPELINE, ui_pipeline(shared_standalone.store_url))
    assert SHARED_FAIL_AT == "85@1"  # the deployment's drill: the first attempt at 85 fails
    with chromium() as browser:
        airflow.wait_for_dag(DAG_ID)
        run_id = airflow.trigger(DAG_ID, {"build_id": BUILD})
        store = open_store(shared_standalone.store_url)
        yield {"airflow": airflow, "store": store, "browser": browser, "run_id": run_id, "shots": shots}


def attempts(store: BuildStore) -> dict[int, list[str]]:
    rec = store.get(BUILD)
    return {code: [a.status for a in rec.attempts_at(code)] for code in rec.plan}


def test_clearing_the_failed_task_in_the_ui_resumes_the_build(deployment: dict[str, Any]) -> None:
    airflow: Airflow = deployment["airflow"]
    store: BuildStore = deployment["store"]
    run_id = deployment["run_id"]
    assert airflow.wait_for_run(DAG_ID, run_id, {"failed", "success"}, timeout=900) == "failed"
    before = store.get(BUILD)
    assert (before.current_state, before.status) == (85, "failed")

    admin = Operator(deployment["browser"], airflow.url, "admin")
    the_failed_builds_page_guides_the_next_move(admin, deployment["shots"])
    admin.open_failed_task(DAG_ID, run_id, "s085_metadata")
    admin.clear_with_note(NOTE)
    if airflow.wait_for_run(DAG_ID, run_id, {"failed", "success"}, timeout=600) == "failed":
        # Seen once under a loaded CI machine: Airflow killed the resumed try ("task killed"). A
        # person clears again; the store keeps the honest history of every attempt.
        killed = store.get(BUILD).attempts_at(85)[-1]
        assert killed.attempt > 1, f"the clear did not start a new attempt: {killed}"
        assert killed.status == "failed" and "task killed" in (killed.error or ""), killed
        admin.open_failed_task(DAG_ID, run_id, "s085_metadata")
        admin.clear_with_note(NOTE)
        assert airflow.wait_for_run(DAG_ID, run_id, {"failed", "success"}, timeout=600) == "success"
    admin.page.reload()
    admin.page.get_by_text("Success", exact=True).first.wait_for()  # the task's page shows it green

    rec = store.get(BUILD)
    assert rec.delivered
    done = attempts(store)
    assert done[85][0] == "failed" and done[85][-1] == "completed"
    assert all(done[c] == ["completed"] for c in rec.plan if c not in (0, 85)), done
    last = rec.attempts_at(85)[-1]
    assert last.reason == f"{NOTE} (cleared by admin (ui))" and not last.owner.endswith("/try-1")
    admin.close()


def the_failed_builds_page_guides_the_next_move(admin: Operator, shots: Path) -> None:
    """What the operator sees first, before clearing anything: the failing attempt's error, what a
    clear of its task will do and the Skip, Reset and Redo set to the failed milestone; every time
    in the time zone chosen in Airflow's user menu (kept in the browser's localStorage)."""
    admin.page.evaluate("localStorage.setItem('timezone', JSON.stringify('Asia/Kolkata'))")
    frame = admin.builds_frame(f"/builds/{BUILD}")
    failure = frame.locator("#failure")
    expect(failure.locator("#failure-error")).to_contain_text("failure injected at milestone 85")
    expect(failure.locator("#clear-does")).to_contain_text(
        "Clearing runs 85 · Image metadata again (attempt 2), then 95, 100; 5, 10, 42 stay done"
    )
    expect(failure.locator("#skip-form select[name=milestone]")).to_have_value("85")
    for form in ("reset", "redo"):
        expect(frame.locator(f"#{form}-form select[name=milestone]")).to_have_value("85")
        expect(frame.locator(f"#{form}-form .does")).to_contain_text("the next run starts at 85 · Image metadata")
    redo_choices = frame.locator("#redo-form select[name=milestone] option")
    assert redo_choices.evaluate_all("os => os.map(o => Number(o.value))") == [5, 10, 42, 85]
    frame.locator("#redo-form select[name=milestone]").select_option("10")  # what it does follows the choice
    expect(frame.locator("#redo-form .does")).to_contain_text(
        "un-completes 10 · Minimal bootable image and 42; the next run starts at 10"
    )
    frame.locator("#redo-form select[name=milestone]").select_option("85")
    expect(frame.locator("#redo-form select[name=milestone] option[value='42']")).to_have_text("42 · License check")
    expect(frame.locator("#timeline tr[data-state='42'] td").first).to_have_text("42 License check")

    expect(frame.locator("#tz")).to_have_text("Times in Asia/Kolkata")
    started = frame.locator("dl.facts time").first
    utc = datetime.strptime(str(started.get_attribute("datetime")), "%Y-%m-%dT%H:%M:%S.%fZ")
    expect(started).to_have_text((utc + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M:%S"))
    run = frame.locator("#runs a").first
    assert run.get_attribute("title", timeout=5_000) and "T" not in run.inner_text(), run.inner_text()

    admin.page.set_viewport_size({"width": 1440, "height": 1250})
    admin.page.screenshot(path=str(shots / "failed-build.png"))
    admin.page.set_viewport_size({"width": 1440, "height": 900})
    admin.page.evaluate("localStorage.removeItem('timezone')")


def test_the_builds_pages_show_the_build_and_reset_and_redo_it(deployment: dict[str, Any]) -> None:
    airflow: Airflow = deployment["airflow"]
    store: BuildStore = deployment["store"]
    assert store.get(BUILD).delivered, "runs after the clear test"
    admin = Operator(deployment["browser"], airflow.url, "admin")
    frame = admin.builds_frame()
    row = frame.locator(f"tr[data-build='{BUILD}']")
    assert "delivered" in row.inner_text() and "7/7" in row.inner_text()
    admin.page.screenshot(path=str(deployment["shots"] / "builds-list.png"))

    row.locator("a.build-link").click()
    frame.locator("#timeline").wait_for()
    # The address a person can share: Airflow follows the frame's navigation once the frame has
    # loaded, which may be after the timeline is on screen (CI read the list's address once).
    expect(admin.page).to_have_url(re.compile(rf"/plugin/image-builds/imagebuild/builds/{re.escape(BUILD)}$"))
    timeline_85 = frame.locator("#timeline tr[data-state='85']")
    tries_85 = len(store.get(BUILD).attempts_at(85))
    assert re.search(rf"completed\s+{tries_85}\b", timeline_85.inner_text()), timeline_85.inner_text()
    tries = frame.locator("#attempts tr[data-state='85']")
    assert tries.count() == tries_85
    assert NOTE in tries.first.inner_text()  # newest first: the attempt the clear started
    admin.page.set_viewport_size({"width": 1440, "height": 1700})  # the frame scrolls inside: show more
    frame.locator("#timeline tr[data-state='10']").scroll_into_view_if_needed()
    admin.page.screenshot(path=str(deployment["shots"] / "build-page.png"))
    admin.page.set_viewport_size({"width": 1440, "height": 900})

    # An attempt's link opens its log in Airflow's window, not inside the frame.
    tries.first.locator("a[data-airflow]").click()
    admin.page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/]+/tasks/s085_metadata\?try_number={tries_85}"))
    expect(admin.page.locator("iframe[title='Image builds']")).to_have_count(0)
    expect(admin.page.get_by_text("85 · Image metadata").first).to_be_visible()

    # After delivery the build host is gone and the seal deleted the checkpoints: the forms offer
    # only what the build can run from (not 85), and the API refuses 85 before anything changes,
    # with the way forward; a redo from 5 rebuilds, and the page follows the run by itself.
    frame = admin.builds_frame(f"/builds/{BUILD}")
    offered = frame.locator("#reset-form select[name=milestone] option").evaluate_all("os => os.map(o => o.value)")
    assert "5" in offered and "85" not in offered, offered
    version = store.get(BUILD).version
    status = admin.post_from_page(f"/imagebuild/api/builds/{BUILD}/reset", {"to": 85, "reason": "missed a field"})
    assert status == 409 and store.get(BUILD).version == version
    message = admin.act(frame, "redo", 5, "rebuild with the fixed sysctl check")
    match = re.fullmatch(r"Redo recorded; run (\S+) triggered\.", message)
    assert match, message
    expect(frame.locator("#live")).to_be_visible()  # the reloaded page follows the build
    assert airflow.wait_for_run(DAG_ID, match.group(1), {"failed", "success"}, timeout=900) == "success"
    expect(frame.locator("#build-status")).to_have_text("delivered", timeout=90_000)  # no reload by the test
    expect(frame.locator("#live")).to_have_count(0)
    events = frame.locator("#events tr[data-kind='reset']")
    assert events.count() == 1 and "admin" in events.first.inner_text()

    rec = store.get(BUILD)
    assert rec.delivered
    done = attempts(store)
    assert done[85][0] == "failed" and done[85][-2:] == ["completed", "completed"]  # failed only at first
    assert all(done[c] == ["completed", "completed"] for c in rec.plan if c not in (0, 85)), done
    (reset,) = [e for e in rec.events if e.kind == "reset"]
    assert reset.actor == "admin (ui)" and "redo from 5: rebuild with the fixed sysctl check" in reset.detail

    # A milestone that used every attempt its cap across runs allows: the page grants it more.
    capped = f"{BUILD}-capped"
    store.create_build(capped, pipeline="ui-capped", cloud="local", image_type="base", plan=[0, 5, 100], max_attempts=1)
    store.set_metadata(capped, {"dag_id": DAG_ID})
    store.fail(capped, 5, token=store.begin(capped, 5, owner="w").token, error="mirror down")
    frame = admin.builds_frame(f"/builds/{capped}")
    form = frame.locator("#allow-form")
    form.locator("input[name=attempts]").fill("2")
    form.locator("input[name=reason]").fill("mirror back")
    form.locator("button[type=submit]").click()
    expect(frame.locator("#action-result")).to_have_text("Allow recorded.", timeout=60_000)
    assert store.get(capped).attempt_limit(5) == 3 and store.get(capped).events[-1].actor == "admin (ui)"
    admin.close()


def test_a_viewer_sees_the_pages_but_cannot_act(deployment: dict[str, Any]) -> None:
    airflow: Airflow = deployment["airflow"]
    store: BuildStore = deployment["store"]
    viewer = Operator(deployment["browser"], airflow.url, "viewer")
    frame = viewer.builds_frame(f"/builds/{BUILD}")
    frame.locator("#read-only").wait_for()
    assert frame.locator("#reset-form, #redo-form, #skip-form").count() == 0
    assert frame.locator("#timeline tr[data-state='85']").count() == 1
    version = store.get(BUILD).version
    status = viewer.post_from_page(f"/imagebuild/api/builds/{BUILD}/reset", {"to": 85, "reason": "x"})
    assert status == 403 and store.get(BUILD).version == version
    viewer.close()

    anonymous = httpx.get(f"{airflow.url}/imagebuild/builds/{BUILD}", follow_redirects=False, timeout=30)
    assert anonymous.status_code == 303 and "/auth/login" in anonymous.headers["location"]
