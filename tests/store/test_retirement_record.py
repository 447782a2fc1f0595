"""Retention's record of a deletion (issue 31): ``record_retirement`` writes a ``retire`` event on
a build's record, on every backend, whatever the build's state, and changes nothing else of it."""

from __future__ import annotations

import pytest

from airflow_provider_imagebuild.errors import InvalidInput, NotFound
from airflow_provider_imagebuild.store import BuildStore


def test_a_retirement_is_an_event_of_the_delivered_build_and_nothing_else_changes(store: BuildStore) -> None:
    store.create_build("r-1", pipeline="p", cloud="aws", image_type="t", plan=[0, 95, 100])
    for code in (95, 100):
        store.complete("r-1", code, token=store.begin("r-1", code, owner="w").token)
    before = store.get("r-1")
    after = store.record_retirement("r-1", retired=["ami-1 in us-east-1", "ami-2 in eu-west-1"],
                                    reason="beyond the 3 newest delivered builds", actor="cli:alice")  # fmt: skip
    stored = store.get("r-1")
    assert stored.version == after.version > before.version and stored.delivered
    assert stored.milestones == before.milestones and stored.metadata == before.metadata
    event = store.history("r-1")[-1]
    assert (event["kind"], event["actor"]) == ("retire", "cli:alice")
    assert event["detail"] == "retired ami-1 in us-east-1, ami-2 in eu-west-1: beyond the 3 newest delivered builds"
    with pytest.raises(InvalidInput, match="retired"):
        store.record_retirement("r-1", retired=[], reason="nothing", actor="cli:alice")
    with pytest.raises(InvalidInput, match="reason"):
        store.record_retirement("r-1", retired=["ami-1"], reason="a \x1b[31m red", actor="cli:alice")
    with pytest.raises(NotFound):
        store.record_retirement("gone-1", retired=["ami-1"], reason="old", actor="cli:alice")
