"""``build allow`` from the API and the build page (issue 31), authorized like a reset: a build whose
milestone used every attempt its cap across runs allows shows what granting more does; a person
with edit and trigger rights on the pipeline's DAG grants them with a reason (an event with their
name), and the store lets the milestone begin again; a reader sees no form and may not post it;
bad input is refused before anything is written. On the plugin's own app, no browser."""

from __future__ import annotations

import html

import pytest

from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.store import BuildStore
from tests.plugin.test_pages import DAG, client_for, may, store

__all__ = ["may", "store"]


@pytest.mark.usefixtures("may")
def test_allow_from_the_page_grants_a_capped_milestone_more_attempts(store: BuildStore) -> None:
    store.create_build("cap-1", pipeline="web-demo", cloud="local", image_type="base", plan=[0, 5, 45, 100],
                       max_attempts=2)  # fmt: skip
    store.set_metadata("cap-1", {"dag_id": DAG})
    store.complete("cap-1", 5, token=store.begin("cap-1", 5, owner="w").token)
    for owner in ("run-1", "run-2"):
        store.fail("cap-1", 45, token=store.begin("cap-1", 45, owner=owner).token, error="flaky mirror")
    with pytest.raises(Conflict):
        store.begin("cap-1", 45, owner="run-3")
    admin, viewer = client_for("admin"), client_for("viewer")
    page = html.unescape(admin.get("/builds/cap-1").text)
    assert 'id="allow-form"' in page and "has used 2 of the 2 attempts" in page  # said before the person acts
    assert admin.get("/api/builds/cap-1").json()["moves"]["allow"]["milestone"] == 45
    assert 'id="allow-form"' not in viewer.get("/builds/cap-1").text
    assert (
        viewer.post("/api/builds/cap-1/allow", json={"milestone": 45, "attempts": 1, "reason": "x"}).status_code == 403
    )
    for bad in ({"milestone": 45, "attempts": 0, "reason": "x"}, {"milestone": 45, "attempts": True, "reason": "x"},
                {"milestone": "45", "attempts": 1, "reason": "x"}, {"milestone": 45, "attempts": 1, "reason": ""},
                {"milestone": 45, "attempts": 1001, "reason": "x"}):  # fmt: skip
        assert admin.post("/api/builds/cap-1/allow", json=bad).status_code == 422, bad
    assert admin.post("/api/builds/cap-1/allow", json={"milestone": 5, "attempts": 1, "reason": "x"}).status_code == 409
    assert store.get("cap-1").attempt_limit(45) == 2  # nothing written by a refused request

    answer = admin.post("/api/builds/cap-1/allow", json={"milestone": 45, "attempts": 3, "reason": "mirror fixed"})
    assert answer.status_code == 200, answer.text
    rec = store.get("cap-1")
    assert rec.attempt_limit(45) == 5 and answer.json()["build_id"] == "cap-1"
    event = rec.events[-1]
    assert event.kind == "allow" and event.actor == "admin (ui)" and "mirror fixed" in event.detail
    store.begin("cap-1", 45, owner="run-3")  # no longer refused
    assert 'id="allow-form"' not in admin.get("/builds/cap-1").text
