"""What a milestone was made from (#32): the fingerprint and inputs recorded on its attempt, on
every backend, read back as the record, its history and ``build show --json`` show them, and
refused (nothing written) when they are not a fingerprint and inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_imagebuild.build.fingerprint import MAX_INPUTS
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.store import BuildStore, open_store

PLAN = [0, 5, 10, 100]
FP5, FP10 = "a" * 64, "b" * 64
INPUTS = {"file:../ansible/15-base.yml": "01e0a621dfb63b1a604f040d13abf5b55768794e", "tool:ansible-core": "2.19.14"}


def test_complete_and_fail_record_what_the_attempt_was_made_from(store: BuildStore) -> None:
    store.create_build("f-1", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    lease = store.begin("f-1", 5, owner="w")
    store.complete("f-1", 5, token=lease.token, outputs={"image_id": "ami-1"}, fingerprint=FP5, inputs=INPUTS)
    lease = store.begin("f-1", 10, owner="w")
    store.fail("f-1", 10, token=lease.token, error="boom", fingerprint=FP10, inputs={"previous": FP5})
    lease = store.begin("f-1", 10, owner="w")
    store.complete("f-1", 10, token=lease.token)  # a shell's complete: nothing recorded
    rec = store.get("f-1")
    made = [(a.state, a.status, a.fingerprint, a.inputs) for a in rec.attempts if a.state]
    assert made == [
        (5, "completed", FP5, INPUTS),
        (10, "failed", FP10, {"previous": FP5}),
        (10, "completed", None, None),
    ]
    assert rec.fingerprint_of(5) == FP5 and rec.fingerprint_of(10) is None
    assert rec.to_public()["attempts"][1]["fingerprint"] == FP5


BAD = [
    ({"fingerprint": "A" * 64, "inputs": {}}, "fingerprint"),
    ({"fingerprint": FP5[:-1], "inputs": {}}, "fingerprint"),
    ({"fingerprint": FP5}, "inputs"),  # both or neither
    ({"inputs": INPUTS}, "fingerprint"),
    ({"fingerprint": FP5, "inputs": {"file:a\nb": "x"}}, "inputs"),
    ({"fingerprint": FP5, "inputs": {"file:a": "<script>"}}, "inputs.file:a"),
    ({"fingerprint": FP5, "inputs": {f"file:{i}": "x" for i in range(MAX_INPUTS + 2)}}, "inputs"),
    ({"fingerprint": FP5, "inputs": ["file:a"]}, "inputs"),
]


def test_what_is_no_fingerprint_is_refused_and_nothing_written(tmp_path: Path) -> None:
    """Checked in the store's shared code before any backend is written (one backend shows it)."""
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.create_build("f-2", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    lease = store.begin("f-2", 5, owner="w")
    version = store.get("f-2").version
    for given, field in BAD:
        with pytest.raises(InvalidInput) as caught:
            store.complete("f-2", 5, token=lease.token, **given)  # type: ignore[arg-type]
        assert caught.value.field == field, given
        with pytest.raises(InvalidInput):
            store.fail("f-2", 5, token=lease.token, error="x", **given)  # type: ignore[arg-type]
    assert store.get("f-2").version == version
