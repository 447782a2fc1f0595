"""Races on one build: many writers at once, across processes (SQLite, JSON) or threads (AWS).

DynamoDB races run on dynalite, whose conditional writes hold under concurrent clients (moto's
do not). S3 races run on moto served one request at a time, which gives the per-key atomicity
real S3 promises for conditional writes (see tests/servers/moto_serial.py).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.store import BuildStore, open_store

WORKERS = 16
WRITERS = 8
PROCESS_BACKENDS = ["sqlite", "file"]
THREAD_BACKENDS = ["dynalite", "s3", "azblob", "gs"]


def _claim(url: str, index: int, barrier: Any) -> tuple[str, str]:
    store = open_store(url)
    barrier.wait(30)
    try:
        lease = store.begin("race", 5, owner=f"worker-{index}", lease_seconds=600)
        return "won", lease.owner
    except Conflict as exc:
        return "conflict", str(exc.holder)


def _claim_process(url: str, index: int, barrier: Any, results: Any) -> None:
    results.put(_claim(url, index, barrier))


def _run_racers(kind: str, url: str, target: Callable[..., Any], count: int, *args: Any) -> list[Any]:
    if kind == "process":
        ctx = mp.get_context("fork")
        barrier = ctx.Barrier(count)
        results = ctx.Queue()
        procs = [ctx.Process(target=target, args=(url, i, barrier, results, *args)) for i in range(count)]
        for p in procs:
            p.start()
        out = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        return out
    barrier_t = threading.Barrier(count)
    results_t: list[Any] = []
    lock = threading.Lock()

    class _Q:
        def put(self, item: Any) -> None:
            with lock:
                results_t.append(item)

    with ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(target, url, i, barrier_t, _Q(), *args) for i in range(count)]:
            future.result(timeout=120)
    return results_t


@pytest.mark.parametrize("backend", PROCESS_BACKENDS + THREAD_BACKENDS)
def test_claim_race_has_exactly_one_winner(backend: str, make_store: Callable[..., BuildStore]) -> None:
    store = make_store(backend)
    store.create_build("race", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
    kind = "process" if backend in PROCESS_BACKENDS else "thread"
    results = _run_racers(kind, store.url, _claim_process, WORKERS)
    winners = [owner for outcome, owner in results if outcome == "won"]
    assert len(winners) == 1, results
    assert all(holder == winners[0] for outcome, holder in results if outcome == "conflict"), results
    rec = store.get("race")
    assert rec.lease is not None and rec.lease.owner == winners[0]
    assert len(rec.attempts_at(5)) == 1


def _write_metadata(url: str, index: int, barrier: Any, results: Any) -> None:
    store = open_store(url)
    barrier.wait(30)
    store.set_metadata("race", {f"writer_{index}": str(index)}, actor=f"writer-{index}")
    results.put(index)


@pytest.mark.parametrize("backend", PROCESS_BACKENDS + THREAD_BACKENDS)
def test_concurrent_writers_lose_no_update(backend: str, make_store: Callable[..., BuildStore]) -> None:
    store = make_store(backend)
    store.create_build("race", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
    initial = store.get("race").version
    kind = "process" if backend in PROCESS_BACKENDS else "thread"
    _run_racers(kind, store.url, _write_metadata, WORKERS)
    rec = store.get("race")
    assert rec.version == initial + WORKERS
    assert rec.metadata == {f"writer_{i}": str(i) for i in range(WORKERS)}
    assert len([e for e in rec.events if e.kind == "metadata"]) == WORKERS


def _chain_worker(url: str, index: int, barrier: Any, results: Any) -> None:
    """Keep trying to take the next milestone; complete exactly one, then stop."""
    store = open_store(url)
    barrier.wait(30)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rec = store.get("chain")
        code = rec.next_state
        if code is None or code == rec.plan[-1]:
            results.put(("none", index))
            return
        try:
            lease = store.begin("chain", code, owner=f"w{index}", lease_seconds=600)
        except Conflict:
            time.sleep(0.005)
            continue
        store.complete("chain", code, token=lease.token, outputs={"by": index})
        results.put((code, index))
        return
    results.put(("timeout", index))


@pytest.mark.parametrize("backend", PROCESS_BACKENDS + THREAD_BACKENDS)
def test_concurrent_attempt_records_are_all_kept(backend: str, make_store: Callable[..., BuildStore]) -> None:
    store = make_store(backend)
    plan = [0, *range(1, WRITERS + 1), 100]
    store.create_build("chain", pipeline="p", cloud="aws", image_type="t", plan=plan)
    initial = store.get("chain").version
    kind = "process" if backend in PROCESS_BACKENDS else "thread"
    results = _run_racers(kind, store.url, _chain_worker, WRITERS)
    assert sorted(code for code, _ in results) == list(range(1, WRITERS + 1)), results
    rec = store.get("chain")
    assert rec.version == initial + 2 * WRITERS
    assert len(rec.attempts) == WRITERS + 1
    assert all(a.status == "completed" for a in rec.attempts)
    assert rec.completed == plan[:-1]
