"""The reason of an attempt: the note an operator wrote when clearing the failed task (#13 item 4).

The plugin's middleware on Airflow's API server records a ``clear`` event; the milestone's next
attempt takes it as its reason. Every backend.
"""

from __future__ import annotations

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.store import BuildStore

PLAN = [0, 5, 10, 95, 100]
OWNER = "imagebuild_p/manual__1/s010_green/try-{}"


def test_the_clear_note_becomes_the_next_attempts_reason(store: BuildStore) -> None:
    store.create_build("c-1", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    lease = store.begin("c-1", 5, owner="w")
    store.complete("c-1", 5, token=lease.token)
    lease = store.begin("c-1", 10, owner=OWNER.format(1))
    store.fail("c-1", 10, token=lease.token, error="apt mirror timed out")
    note = "mirror was down (INC-42)\n\nretrying after the <b>fix</b>"
    rec = store.note_clear("c-1", 10, note=note, actor="alice (ui)")
    assert (rec.events[-1].kind, rec.events[-1].state, rec.events[-1].actor) == ("clear", 10, "alice (ui)")
    assert rec.events[-1].detail == "mirror was down (INC-42) / retrying after the <b>fix</b>"
    assert (rec.current_state, rec.status) == (10, "failed")  # a clear changes no state
    store.begin("c-1", 10, owner=OWNER.format(2))
    attempts = store.get("c-1").attempts_at(10)
    assert attempts[0].reason is None
    assert attempts[1].reason == "mirror was down (INC-42) / retrying after the <b>fix</b> (cleared by alice (ui))"


def test_a_note_is_the_reason_of_one_attempt_only(store: BuildStore) -> None:
    store.create_build("c-2", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    store.note_clear("c-2", 5, note="", actor="bob (ui)")  # cleared without a note: the user still shows
    lease = store.begin("c-2", 5, owner=OWNER.format(1))
    store.fail("c-2", 5, token=lease.token, error="boom")
    store.begin("c-2", 5, owner=OWNER.format(2))  # an Airflow retry, not a clear
    first, second = store.get("c-2").attempts_at(5)
    assert first.reason == "cleared without a note (cleared by bob (ui))" and second.reason is None


@pytest.mark.parametrize(("state", "field"), [(7, "state"), (101, "state")])
def test_a_clear_of_a_milestone_outside_the_plan_is_refused(store: BuildStore, state: int, field: str) -> None:
    store.create_build("c-3", pipeline="p", cloud="local", image_type="t", plan=PLAN)
    with pytest.raises(InvalidInput, match=field):
        store.note_clear("c-3", state, note="x", actor="a")
    assert [e.kind for e in store.get("c-3").events] == ["create"]
