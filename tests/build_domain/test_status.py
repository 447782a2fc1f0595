"""The build status word (build/status.py) for every way a build can stand, on records made by the
real store's rules (SQLite) with a controlled clock."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_imagebuild.build.status import BUILD_STATUS_WORDS, build_status
from airflow_provider_imagebuild.store import open_store
from tests.conftest import FakeClock

PLAN = [0, 5, 10, 100]


def test_each_word_follows_the_build_through_its_day(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_store(f"sqlite:///{tmp_path}/s.db", clock=clock)
    store.init()
    seen = []

    def word() -> str:
        return build_status(store.get("b-1"), clock())

    rec = store.create_build("b-1", pipeline="web", cloud="local", image_type="base", plan=PLAN)
    assert rec.status == "completed"  # the milestone status of registration reads "completed"...
    seen.append(word())  # ...the build has begun nothing
    lease = store.begin("b-1", 5, owner="w/1", lease_seconds=60)
    seen.append(word())
    store.complete("b-1", 5, token=lease.token)
    seen.append(word())
    lease = store.begin("b-1", 10, owner="w/1", lease_seconds=60)
    store.fail("b-1", 10, token=lease.token, error="boom")
    seen.append(word())
    store.begin("b-1", 10, owner="w/2", lease_seconds=60)
    clock.advance(61)  # the worker died: its lease expired without the milestone ending
    seen.append(word())
    store.reset("b-1", to=5, reason="new base", actor="alice")
    seen.append(word())  # reset back to the first milestone: nothing begun again
    for code in (5, 10, 100):
        lease = store.begin("b-1", code, owner="w/3", lease_seconds=60)
        store.complete("b-1", code, token=lease.token)
    seen.append(word())
    store.reset("b-1", to=10, reason="redo", actor="alice")
    seen.append(word())
    assert seen == ["registered", "running", "waiting", "failed", "failed", "registered", "delivered", "waiting"]
    assert store.get("b-1").status == "completed"  # what the record alone said after the resets


def test_the_words_are_the_documented_ones() -> None:
    assert BUILD_STATUS_WORDS == ("registered", "running", "waiting", "failed", "delivered", "abandoned")
    concepts = (Path(__file__).parents[2] / "docs" / "concepts" / "index.md").read_text()
    for word in (*BUILD_STATUS_WORDS, "in_progress", "completed"):
        assert f"`{word}`" in concepts, word
