"""Processes killed with SIGKILL: while holding a lease, and in the middle of a write."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import BuildStore
from tests.servers.process import ROOT

HOLDER = """
import sys, time
from airflow_provider_imagebuild.store import open_store
store = open_store(sys.argv[1])
lease = store.begin("crash", 5, owner="doomed-worker", lease_seconds=1)
print(lease.token, flush=True)
time.sleep(600)  # killed before any heartbeat or completion
"""

WRITER = """
import sys
from airflow_provider_imagebuild.store import open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    i += 1
    store.set_metadata("crash", {"counter": str(i), "padding": "x" * 3000}, actor="writer")
"""


def _spawn(code: str, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True, cwd=ROOT)


@pytest.mark.parametrize("backend", ["sqlite", "file", "dynalite", "s3"])
def test_killed_lease_holder_is_taken_over_after_expiry(backend: str, make_store: Callable[..., BuildStore]) -> None:
    store = make_store(backend)
    store.create_build("crash", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
    proc = _spawn(HOLDER, store.url)
    assert proc.stdout is not None
    token = proc.stdout.readline().strip()
    assert token, "holder did not take the lease"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(1.2)  # let the 1 s lease expire on the real clock
    lease = store.begin("crash", 5, owner="rescuer")
    assert lease.attempt == 2
    store.complete("crash", 5, token=lease.token)
    rec = store.get("crash")
    assert [(a.owner, a.status) for a in rec.attempts_at(5)] == [
        ("doomed-worker", "abandoned"),
        ("rescuer", "completed"),
    ]
    assert rec.status == "completed" and rec.lease is None


@pytest.mark.parametrize("backend", ["sqlite", "file"])
def test_kill_during_writes_leaves_an_intact_record(backend: str, make_store: Callable[..., BuildStore]) -> None:
    store = make_store(backend)
    store.create_build("crash", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
    rng = random.Random(7)
    last = 0
    for _round in range(6):
        proc = _spawn(WRITER, store.url)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        if backend == "sqlite":
            with sqlite3.connect(store.path) as conn:  # type: ignore[attr-defined]
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        else:
            text = (Path(store.root) / "builds/crash.json").read_text()  # type: ignore[attr-defined]
            json.loads(text)  # entirely old or entirely new: always parseable
        rec = store.get("crash")
        counter = int(rec.metadata.get("counter", "0"))
        assert counter >= 0 and rec.version >= last
        last = rec.version
        # every completed write is a whole one: version counts the create plus each write (one
        # event each; the oldest events are trimmed from the record and counted in `trimmed`)
        assert rec.version == len(rec.events) + rec.trimmed.get("events", 0)
    assert last > 1, "the writer never managed a write"


STALE = """
import sys
from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.store import open_store
store = open_store(sys.argv[1])
lease = store.begin("stale", 5, owner="paused-worker", lease_seconds=1)
print("leased", flush=True)
sys.stdin.readline()  # SIGSTOPped here by the test, and continued after a takeover
try:
    store.complete("stale", 5, token=lease.token, outputs={"image": "stale-image"})
    print("completed", flush=True)
except Conflict as exc:
    print("refused:", exc, flush=True)
"""


@pytest.mark.parametrize("backend", ["sqlite", "file", "dynalite", "s3"])
def test_stopped_holder_resumed_after_a_takeover_is_refused(
    backend: str, make_store: Callable[..., BuildStore]
) -> None:
    """Stale holder: SIGSTOP a holder past its lease, let another take over and finish, SIGCONT the
    first: its late complete is refused, and the store keeps the new owner's result."""
    store = make_store(backend)
    store.create_build("stale", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
    proc = subprocess.Popen(
        [sys.executable, "-c", STALE, store.url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "leased"
    proc.send_signal(signal.SIGSTOP)
    time.sleep(1.3)  # past the 1 s lease, on the real clock
    lease = store.begin("stale", 5, owner="rescuer")
    store.complete("stale", 5, token=lease.token, outputs={"image": "good-image"})
    proc.send_signal(signal.SIGCONT)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    answer = proc.stdout.readline().strip()
    proc.wait(30)
    assert answer.startswith("refused:"), answer
    rec = store.get("stale")
    assert rec.milestones[5].outputs == {"image": "good-image"} and rec.milestones[5].owner == "rescuer"
    assert [a.status for a in rec.attempts_at(5)] == ["abandoned", "completed"]


STALE_META = """
import sys
from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.store import open_store

store = open_store(sys.argv[1])
lease = store.begin("stale-meta", 15, owner="paused-worker", lease_seconds=1)
session = MilestoneSession(store, "stale-meta", lease)
session.set_metadata({"host_id": "i-mine", "note": "launched"}, actor="paused-worker")
print("leased", flush=True)
sys.stdin.readline()  # SIGSTOPped here by the test, and continued after a takeover
for items in ({"host_id": "i-stale"}, {"note": "still mine"}):
    try:
        session.set_metadata(items, actor="paused-worker")
        print("written", flush=True)
    except Conflict as exc:
        print("refused:", exc, flush=True)
"""


@pytest.mark.parametrize("backend", ["sqlite", "dynalite"])
def test_stopped_holder_resumed_after_a_takeover_cannot_change_metadata(
    backend: str, make_store: Callable[..., BuildStore]
) -> None:
    """The same stale holder, writing through its milestone session: after the takeover it can no
    longer point the build at another host, nor change any other metadata."""
    store = make_store(backend)
    store.create_build("stale-meta", pipeline="p", cloud="aws", image_type="t", plan=[0, 15, 100])
    proc = subprocess.Popen(
        [sys.executable, "-c", STALE_META, store.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    lines = iter(proc.stdout.readline, "")  # the child's imports may log to stdout too

    def answer() -> str:
        return next(line.strip() for line in lines if line.startswith(("leased", "refused:", "written")))

    assert answer() == "leased"
    proc.send_signal(signal.SIGSTOP)
    time.sleep(1.3)  # past the 1 s lease, on the real clock
    lease = store.begin("stale-meta", 15, owner="rescuer")
    store.set_metadata("stale-meta", {"host_id": "i-rescuer"}, actor="rescuer", token=lease.token, state=15)
    proc.send_signal(signal.SIGCONT)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    answers = [answer() for _ in range(2)]
    proc.wait(30)
    assert all(a.startswith("refused: stale lease token") for a in answers), answers
    meta = store.get("stale-meta").metadata
    assert meta["host_id"] == "i-rescuer" and meta["note"] == "launched"
