"""The approval milestone through the real scheduler, API server and UI (the session's shared
``airflow standalone``, Debian's chromium).

A pipeline of three quick ``command`` milestones around an approval (50, approvers: the admin):

1. the run reaches 50 and its task waits in Airflow's ``awaiting_input`` state; a viewer's
   response is refused by Airflow (403) and nothing is recorded;
2. the admin opens the task's Required Actions page, writes a comment and clicks Approve: the run
   goes on to 60 and succeeds, and the store records the decision as 50's attempt (the admin's
   name, the comment);
   The build page says the build waits and links to that page;
3. a second build is rejected on the same page: the run fails at 50, the store records the
   rejection with the comment, and the build page shows the comment as the reason.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from airflow_provider_imagebuild.store import open_store
from tests.servers.browser import Operator, chromium
from tests.servers.standalone import Airflow, Deployment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DAG_ID = "imagebuild_approval_demo"
TASK = "s050_release_approval"

SPEC = """pipeline: approval-demo
cloud: local
image_type: base
schedule: null
max_active_runs: 2  # the approved and the rejected build wait side by side
store: {store}
defaults: {{retries: 0, lease_seconds: 10}}
milestones:
  5: {{action: command, command: "echo ::output:: image_id=/catalog/approval-demo/1/demo.qcow2"}}
  50: {{action: approval, key: release_approval, title: Release approval, approvers: [admin]}}
  60: {{action: command, command: "echo published >> {folder}/published"}}
"""


def wait_for_task(airflow: Airflow, run_id: str, state: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = airflow.task_states(DAG_ID, run_id)
        if states.get(TASK) == state:
            return
        time.sleep(0.5)
    raise AssertionError(f"{TASK} of {run_id} never reached {state}: {states}")


def wait_until_paused(airflow: Airflow, run_id: str, timeout: float = 120) -> None:
    """The approval task of ``run_id`` waits for its answer, and the scheduler has taken the end of
    the try that paused. An answer given before that races Airflow's own bookkeeping: the task is
    queued again at once, then the executor's "success" of the paused try arrives for a queued task
    and the scheduler marks it failed (seen under load, the paused try's process taking 5 s to end).
    A person answers minutes later; this test answers within a second, so it waits as they would."""
    wait_for_task(airflow, run_id, "awaiting_input", timeout)
    event = f"Received executor event with state success for task instance TaskInstanceKey(dag_id='{DAG_ID}', " \
            f"task_id='{TASK}', run_id='{run_id}'"  # fmt: skip
    deadline = time.monotonic() + timeout
    while event not in (airflow.home / "standalone.log").read_text(errors="replace"):
        assert time.monotonic() < deadline, f"the scheduler never took the end of {TASK}'s paused try in {run_id}"
        time.sleep(0.5)


def respond(person: Operator, option: str, comment: str, run_id: str | None = None) -> None:
    """What an approver does on the task's Required Action tab (opened here when ``run_id`` is
    given): a comment, then the option's button."""
    if run_id is not None:
        person.page.goto(f"{person.url}/dags/{DAG_ID}/runs/{run_id}/tasks/{TASK}/required_actions")
    field = person.page.locator("input[name=element_comment]")  # the task's "comment" param (its label's
    field.fill(comment)  # for= does not name the input, so the label cannot find it)
    person.page.get_by_role("button", name=option, exact=True).click()


def test_an_approver_decides_in_airflows_ui_and_a_viewer_cannot(shared_standalone: Deployment) -> None:
    airflow = shared_standalone.airflow
    folder = shared_standalone.folder / "approval"
    folder.mkdir()
    shared_standalone.add_pipeline("approval", SPEC.format(store=shared_standalone.store_url, folder=folder))
    store = open_store(shared_standalone.store_url)
    airflow.wait_for_dag(DAG_ID)
    approved_run = airflow.trigger(DAG_ID, {"build_id": "gate-1"})
    rejected_run = airflow.trigger(DAG_ID, {"build_id": "gate-2"})
    wait_until_paused(airflow, approved_run)
    assert not (folder / "published").exists()

    viewer = airflow.as_user("viewer")
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{approved_run}/taskInstances/{TASK}/-1/hitlDetails"
    refused = viewer.patch(path, json={"chosen_options": ["Approve"], "params_input": {"comment": "lgtm"}})
    assert refused.status_code == 403, refused.text
    asked = airflow.api("GET", path.removeprefix("/api/v2"))
    assert asked["response_received"] is False and asked["assigned_users"] == [{"id": "admin", "name": "admin"}]
    assert "/catalog/approval-demo/1/demo.qcow2" in asked["body"] and "/builds/gate-1" in asked["body"]

    with chromium() as browser:
        admin = Operator(browser, airflow.url, "admin")
        # The build page says the build waits, and links to where the approver responds.
        frame = admin.builds_frame("/builds/gate-1")
        expect(frame.locator("#approval")).to_contain_text("Waits for an approval at 50 Release approval")
        frame.locator("#approval-respond").click()
        admin.page.wait_for_url(re.compile(rf"/runs/[^/]+/tasks/{TASK}/required_actions"))
        respond(admin, "Approve", "image checked by hand")
        wait_until_paused(airflow, rejected_run)
        respond(admin, "Reject", "kernel 6.1.0-9 has CVE-2026-0001", run_id=rejected_run)
        state = airflow.wait_for_run(DAG_ID, approved_run, {"failed", "success"}, timeout=120)
        assert state == "success", airflow.task_log(DAG_ID, approved_run, TASK, 1)[-6000:]
        assert (folder / "published").read_text() == "published\n"  # by gate-1 only
        rec = store.get("gate-1")
        (decision,) = rec.attempts_at(50)
        assert rec.delivered and decision.status == "completed" and decision.owner == "admin (airflow)"
        assert rec.milestones[50].outputs["comment"] == "image checked by hand"

        assert airflow.wait_for_run(DAG_ID, rejected_run, {"failed", "success"}, timeout=120) == "failed"
        rec = store.get("gate-2")
        assert (rec.current_state, rec.status) == (50, "failed")
        assert rec.attempts_at(50)[-1].error == "approval rejected by admin (airflow): kernel 6.1.0-9 has CVE-2026-0001"
        frame = admin.builds_frame("/builds/gate-2")
        expect(frame.locator("#failure-error")).to_contain_text(
            re.compile(r"approval rejected by admin \(airflow\): kernel 6\.1\.0-9 has CVE-2026-0001")
        )
        admin.close()
