"""Store benchmark: begin+complete pairs/s (1 and 8 writers), read latency, lost updates.

Run with ``make bench``. Each backend talks to what it would talk to in production as far as this
machine allows: SQLite and JSON files on the local disk, DynamoDB on dynalite, S3 on moto, Azure
Blob Storage on Azurite and Cloud Storage on fake-gcs-server, all over real HTTP on loopback (so
cloud figures measure the client path plus a local server, not the cloud's latency). Prints a
table and writes docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")

from report import replace_section  # noqa: E402

from airflow_provider_imagebuild.store import open_store  # noqa: E402
from tests.servers import azurite, fake_gcs  # noqa: E402
from tests.servers.process import free_port, running  # noqa: E402

PLAN = [0, *range(1, 100), 100]  # 100 milestones after registration: one build holds 100 pairs


def _pairs(url: str, build_id: str, count: int) -> float:
    store = open_store(url)
    store.create_build(build_id, pipeline="bench", cloud="aws", image_type="t", plan=PLAN)
    start = time.perf_counter()
    done = 0
    while done < count:
        for code in PLAN[1:]:
            if done == count:
                break
            lease = store.begin(build_id, code, owner="bench")
            store.complete(build_id, code, token=lease.token, outputs={"n": code})
            done += 1
        if done < count:
            build_id = f"{build_id}-x{done}"
            store.create_build(build_id, pipeline="bench", cloud="aws", image_type="t", plan=PLAN)
    return time.perf_counter() - start


def _pairs_worker(url: str, index: int, count: int, barrier: Any, out: Any) -> None:
    barrier.wait(60)
    out.put(_pairs(url, f"w{index}-{uuid.uuid4().hex[:6]}", count))


def _meta_worker(url: str, index: int, count: int, barrier: Any, out: Any) -> None:
    store = open_store(url)
    barrier.wait(60)
    for i in range(count):
        store.set_metadata("shared", {f"w{index}": str(i)}, actor=f"w{index}")
    out.put(index)


def _parallel(target: Any, url: str, writers: int, count: int) -> float:
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, i, count, barrier, out)) for i in range(writers)]
    for p in procs:
        p.start()
    barrier.wait(60)
    start = time.perf_counter()
    for _ in procs:
        out.get(timeout=600)
    elapsed = time.perf_counter() - start
    for p in procs:
        p.join(60)
    return elapsed


def bench_backend(name: str, url: str, pairs: int, writers: int, reads: int) -> dict[str, Any]:
    store = open_store(url)
    store.init()
    single = pairs / _pairs(url, f"single-{uuid.uuid4().hex[:6]}", pairs)
    per_writer = max(pairs // writers, 10)
    multi = writers * per_writer / _parallel(_pairs_worker, url, writers, per_writer)
    # lost updates: every writer bumps one shared record; the version must count every write
    store.create_build("shared", pipeline="bench", cloud="aws", image_type="t", plan=[0, 100])
    initial = store.get("shared").version
    writes = max(per_writer // 2, 10)
    _parallel(_meta_worker, url, writers, writes)
    lost = initial + writers * writes - store.get("shared").version
    # reads of a build with a full history
    bid = max(store.list_builds(pipeline="bench"), key=lambda r: len(r.attempts)).build_id
    samples = []
    for _ in range(reads):
        t0 = time.perf_counter()
        store.get(bid)
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "backend": name,
        "single": single,
        "multi": multi,
        "p50": statistics.median(samples),
        "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        "lost": lost,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--write-doc", default=str(ROOT / "docs/benchmarks.md"))
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="imagebuild-bench-"))
    rows = []
    with ExitStack() as stack:
        moto_port, dyn_port = free_port(), free_port()
        moto = stack.enter_context(
            running(
                [sys.executable, str(ROOT / "tests/servers/moto_serial.py"), str(moto_port)],
                moto_port,
                tmp / "moto.log",
            )
        )
        node = shutil.which("node") or "node"
        dynalite = stack.enter_context(
            running([node, str(ROOT / "tests/servers/dynalite.js"), str(dyn_port)], dyn_port, tmp / "dynalite.log")
        )
        blob_port = free_port()
        blob = stack.enter_context(running(azurite.argv(blob_port), blob_port, tmp / "azurite.log"))
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string(blob)
        gcs_port = free_port()
        gcs = stack.enter_context(running(fake_gcs.argv(gcs_port), gcs_port, tmp / "fake-gcs.log"))
        backends = {
            "sqlite": f"sqlite:///{tmp}/s.db",
            "sqlite (synchronous=full)": f"sqlite:///{tmp}/full.db?synchronous=full",
            "json files": f"file://{tmp}/json",
            "dynamodb (dynalite)": f"dynamodb://bench-table?region=us-east-1&endpoint_url={dynalite}",
            "s3 (moto)": f"s3://bench-bucket/state?region=us-east-1&endpoint_url={moto}",
            "sqlite+s3 (moto)": f"sqlite+s3:///{tmp}/m.db?bucket=bench-mirror&endpoint_url={moto}",
            "azblob (Azurite)": f"azblob://bench-builds/state?account={azurite.ACCOUNT}",
            "gs (fake-gcs-server)": f"gs://bench-builds/state?project=imagebuild-bench&endpoint_url={gcs}",
        }
        for name, url in backends.items():
            if args.only and not any(o in name for o in args.only):
                continue
            slow = "s3" in name or "azblob" in name or "gs " in name
            row = bench_backend(
                name, url, args.pairs // (4 if slow else 1), args.writers, args.reads // (5 if slow else 1)
            )
            rows.append(row)
            print(
                f"{name:28s} {row['single']:8.0f} pairs/s  {row['multi']:8.0f} pairs/s x{args.writers}  "
                f"read p50 {row['p50']:.2f} ms p99 {row['p99']:.2f} ms  lost {row['lost']}",
                flush=True,
            )
    shutil.rmtree(tmp, ignore_errors=True)
    write_doc(Path(args.write_doc), rows, args)


def write_doc(path: Path, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The page's header and this benchmark's section; the other benchmarks' sections are kept."""
    header = (
        f"Measured {date.today().isoformat()} on {os.cpu_count()} cores, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}. Reproduce with `make bench` "
        f"(`.venv/bin/python benchmarks/store_bench.py --pairs {args.pairs} --writers {args.writers}`)."
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    _, sep, rest = text.partition("\n## ")
    path.write_text(f"# Benchmarks\n\n{header}\n" + (sep + rest if sep else ""))
    body = [
        "A pair is `begin` + `complete` of one milestone (two compare-and-swap writes). "
        f"`x{args.writers}` is {args.writers} processes each driving its own build in the same store. "
        "Reads fetch a build with 100 milestones of history. *Lost* counts updates missing after "
        f"{args.writers} processes wrote one shared record concurrently (must be 0). "
        "DynamoDB runs on dynalite, S3 on moto, Azure Blob Storage on Azurite and Cloud Storage on "
        "fake-gcs-server, over HTTP on loopback.",
        "",
        "| backend | pairs/s, 1 writer | pairs/s, x" + str(args.writers) + " | read p50 ms | read p99 ms | lost |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    body += [
        f"| {r['backend']} | {r['single']:.0f} | {r['multi']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['lost']} |"
        for r in rows
    ]
    replace_section(path, "## State store", body)


if __name__ == "__main__":
    main()
