"""What an attempt used (issue 31's cost): recorded on the attempt by ``complete`` and ``fail`` on
every backend, read back as the record and its history show it, and refused (nothing written) when
it is not usage."""

from __future__ import annotations

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.store import BuildStore

PLAN = [0, 5, 10, 100]


def test_complete_and_fail_record_the_attempts_usage(store: BuildStore) -> None:
    store.create_build("u-1", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    lease = store.begin("u-1", 5, owner="w")
    packer = {"host_size": "t3.micro", "host_hours": 0.5, "checkpoint_gb": 8}
    store.complete("u-1", 5, token=lease.token, outputs={"image_id": "ami-1"}, usage=packer)
    lease = store.begin("u-1", 10, owner="w")
    store.fail("u-1", 10, token=lease.token, error="boom", usage={"host_size": "t3.micro", "host_hours": 0.25})
    lease = store.begin("u-1", 10, owner="w")
    with pytest.raises(InvalidInput, match=r"usage\.cpus"):
        store.complete("u-1", 10, token=lease.token, usage={"cpus": 2})
    with pytest.raises(InvalidInput, match=r"usage\.host_hours"):
        store.fail("u-1", 10, token=lease.token, error="x", usage={"host_hours": -1})
    store.complete("u-1", 10, token=lease.token)  # a shell's complete: no usage, none recorded
    rec = store.get("u-1")
    used = [(a.state, a.attempt, a.status, a.usage) for a in rec.attempts if a.state]
    assert used == [
        (5, 1, "completed", {"host_size": "t3.micro", "host_hours": 0.5, "checkpoint_gb": 8.0}),
        (10, 1, "failed", {"host_size": "t3.micro", "host_hours": 0.25}),
        (10, 2, "completed", None),
    ]
    assert rec.to_public()["attempts"][1]["usage"]["host_hours"] == 0.5


def test_a_replay_records_its_own_host_time(store: BuildStore) -> None:
    store.create_build("u-2", pipeline="p", cloud="aws", image_type="t", plan=PLAN)
    lease = store.begin("u-2", 5, owner="w")
    store.complete("u-2", 5, token=lease.token)
    lease = store.begin("u-2", 10, owner="w")
    with pytest.raises(InvalidInput, match=r"usage\.host_size"):
        store.record_replay("u-2", 10, token=lease.token, replayed=5, usage={"host_size": 3})
    rec = store.record_replay("u-2", 10, token=lease.token, replayed=5, usage={"host_hours": 0.1})
    assert [(a.kind, a.usage) for a in rec.attempts if a.state == 5] == [("run", None), ("replay", {"host_hours": 0.1})]
