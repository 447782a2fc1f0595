"""Five nights of the shipped local pipeline with reuse (#32): what a nightly build costs when little changed.

A copy of ``dags/pipelines/local-debian-base.yaml`` and the playbooks it uses, in a temporary
folder the benchmark may change, with ``reuse: {}`` and checkpoints at 10, 25, 30 and 85 (why
those: :data:`CHECKPOINTS`), runs through real Airflow (``dag.test()``, a new build id each night)
on the local target (debootstrap cache, Ansible over chroot, the seal's disk, both qemu boots):

1. cold: nothing to reuse;
2. nothing changed: the whole build is the night before's (``unchanged: reuse``);
3. the playbook of milestone 30 changed: the build starts from the checkpoint after 25;
4. the watched package repository changed (15, 25 and 30 watch its ``InRelease``, served here by
   a loopback HTTP server whose file changes): the build starts from the checkpoint after 10;
5. the source image changed (milestone 5's ``image: source`` watch, the cached Debian base's
   SHA-256): the base tarball is replaced by a re-compressed copy of itself (the same packages,
   another file, as a fresh download of the same release is), in a cache folder of the
   benchmark's own, so the build runs from 5, cold.

Prints, per night, the wall time, its share of night 1's, the milestones reused and run, and which
build and checkpoint it started from; checks each night started where its change requires (exit
1 otherwise) and writes the "Reuse: five nights" section of docs/benchmarks.md (``--no-write``:
print only). Needs root (the local target) and about ten minutes; not part of ``make test``.

The pipeline runs as shipped otherwise: a key pair made for each build (a build started from an
earlier one's checkpoint takes that build's pair, which its tree trusts), the sample's
``target.keep_checkpoints``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from report import replace_section
from sample_runs import airflow_home, quiet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## Reuse: five nights"
SAMPLE = ROOT / "dags/pipelines/local-debian-base.yaml"
DAG_ID = "imagebuild_local_debian_base"
# Where a checkpoint pays off (each costs a tar of the build host, a few seconds): 10, the green
# image, before any milestone that installs packages (a repository change restarts there); 25, the
# last before 30, the milestone changed most often in practice (monitoring agents, their config);
# 30, after the last package-installing milestone (a change in 70's tests or 85's metadata restarts
# there); 85, before the final validation and the seal (a policy or validation change reruns 90 on).
CHECKPOINTS = [10, 25, 30, 85]
FIRST_NIGHT = datetime(2026, 11, 1, 2, 0, tzinfo=timezone.utc)
INRELEASE = "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: {date}\n"
NIGHT_30_TASK = """    - name: Monitoring agent's check interval (changed on night 3)
      ansible.builtin.copy:
        dest: /etc/imagebuild/health-interval
        mode: "0644"
        content: "60\\n"
"""


@dataclass
class Night:
    number: int
    change: str
    expected_start: int | None  # the checkpoint the build should start from; None: cold; 0: the whole build
    wall_s: float = 0.0
    reused: tuple[int, ...] = ()
    ran: tuple[int, ...] = ()
    source: str = ""  # "build@milestone" it started from
    work_s: float = 0.0  # the recorded time of the milestones it ran (without Airflow's per-task cost)
    durations: dict[int, float] = field(default_factory=dict)  # of the milestones it ran

    def started(self) -> str:
        if not self.reused:
            return "cold (nothing matched)"
        build, _, upto = self.source.partition("@")
        if set(self.ran) <= {0}:
            return f"{build}, whole (nothing changed)"
        return f"{build}'s checkpoint after {upto}"

    def as_expected(self, plan: list[int]) -> bool:
        if self.expected_start is None:
            return not self.reused
        if self.expected_start == 0:
            return set(self.reused) == set(plan[1:])
        upto = [c for c in plan[1:] if c <= self.expected_start]
        return list(self.reused) == upto and all(c > self.expected_start for c in self.ran if c)


class Mirror:
    """A loopback HTTP server standing in for a package mirror: every path ending in ``suffix``
    answers ``body``, which the benchmark sets (a new one is what a mirror publishes when a package
    changes). Debian's ``InRelease`` here; the AWS benchmark's RHEL ``repodata/repomd.xml``."""

    def __init__(self, body: bytes | None = None, suffix: str = "/debian/dists/bookworm/InRelease") -> None:
        self.body = body if body is not None else INRELEASE.format(date="Sat, 31 Oct 2026 08:00:00 UTC").encode()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not self.path.endswith(suffix):
                    self.send_error(404)
                    return
                body = mirror.body
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{suffix}"

    @contextmanager
    def serving(self) -> Iterator[Mirror]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def pipeline_copy(work: Path, mirror_url: str) -> Path:
    """The shipped sample and its playbooks under ``work`` (the spec's ``../ansible/...`` paths
    still resolve), with reuse on, the benchmark's checkpoints and the mirror at loopback."""
    shutil.copytree(ROOT / "dags/ansible", work / "ansible")
    spec: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    spec.update(reuse={}, checkpoints=CHECKPOINTS)
    for ms in spec["milestones"].values():
        ms["watch"] = [{**w, "apt": mirror_url} if "apt" in w else w for w in ms.get("watch", [])]
    path = work / "pipelines" / SAMPLE.name
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cache_copy(work: Path) -> Path:
    """A cache folder of the benchmark's own (``$IMAGEBUILD_CACHE``): links to the session's cache
    (`make setup`'s debootstrap base and bootstrapped tree, the qemu probe), so that night 5 can
    replace the base without touching the machine's."""
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive, cache_dir

    bootstrapped_archive()  # filled by `make setup`; not part of any night
    shared, own = cache_dir(), work / "cache"
    own.mkdir()
    for entry in shared.iterdir():
        if not entry.name.startswith("."):
            (own / entry.name).symlink_to(entry)
    return own


def new_source_image() -> str:
    """Night 5's change: the cached Debian base (what ``image: source`` checksums on the local
    target) becomes another file, a re-compressed copy of the same packages. Returns its SHA-256."""
    from airflow_provider_imagebuild.targets.rootfs import cached_base
    from airflow_provider_imagebuild.targets.source_images import local_base_id

    base = cached_base()
    if base is None or not base.is_symlink():
        sys.exit(f"night 5: the cached Debian base is not the benchmark's link to the machine's cache: {base}")
    before = local_base_id()
    fresh = base.with_name(base.name + ".new")
    with gzip.open(base.resolve(), "rb") as src, gzip.GzipFile(fresh, "wb", compresslevel=6, mtime=time.time()) as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
    fresh.replace(base)
    after = local_base_id()
    if not after or after == before:
        sys.exit(f"night 5: the re-packed Debian base has the same checksum as before ({before})")
    return after


def run_night(dag: Any, store: Any, night: Night, log: Path) -> None:
    from airflow_provider_imagebuild.operators.reuse import REUSE_METADATA

    build_id = f"night-{night.number}"
    when = FIRST_NIGHT + timedelta(days=night.number - 1)
    started = time.perf_counter()
    with quiet(log):
        state = dag.test(logical_date=when, run_conf={"build_id": build_id}).state
    night.wall_s = time.perf_counter() - started
    rec = store.get(build_id)
    if str(state) != "success" or not rec.delivered:
        sys.exit(f"night {night.number} ({night.change}) ended {state}, delivered={rec.delivered}; see {log}")
    night.reused = tuple(a.state for a in rec.attempts if a.kind == "reused")
    night.ran = tuple(sorted({a.state for a in rec.attempts if a.kind == "run" and a.status == "completed"}))
    night.source = rec.metadata.get(REUSE_METADATA, "")
    night.durations = {code: rec.milestones[code].duration_s or 0.0 for code in night.ran if code in rec.milestones}
    night.work_s = sum(night.durations.values())


def mounted_under(folder: Path) -> bool:
    """Whether a file system is mounted inside ``folder`` (a night stopped half-way in a tool that
    mounts): removing the folder then would remove what the mount holds."""
    inside = str(folder.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1].startswith(inside) for line in mounts if len(line.split()) > 1)


def codes(found: tuple[int, ...]) -> str:
    return ", ".join(map(str, found)) or "none"


Column = tuple[str, Callable[[Night], str]]  # a table column of one benchmark only: its header, a night's cell


def table(nights: list[Night], plan: list[int], cold_work: dict[int, float], extra: Column) -> list[str]:
    """The nights' rows (the AWS benchmark's too); the last column is what night 1 spent in the
    milestones a night ran (its recorded durations): on a loaded machine two cold nights differ by
    more than that, so it says what a night was expected to cost."""
    first = nights[0].wall_s
    rows = [
        "| night | what changed | wall time | of night 1 | milestones reused / run | started from | "
        f"{extra[0]} | night 1's time of the same milestones |",
        "|---|---|---:|---:|---|---|---|---:|",
    ]
    for n in nights:
        work = sum(cold_work.get(code, 0.0) for code in n.ran if code)
        rows.append(
            f"| {n.number} | {n.change} | {n.wall_s:.0f} s | **{n.wall_s / first:.0%}** | "
            f"{len(n.reused)} / {len([c for c in n.ran if c])} of {len(plan) - 1} "
            f"(reused: {codes(n.reused)}) | {n.started()} | {extra[1](n)} | {work:.0f} s |"
        )
    return rows


def report(
    nights: list[Night],
    plan: list[int],
    cold_work: dict[int, float],
    args: argparse.Namespace,
    load_before: str,
    load_after: str,
) -> tuple[list[str], list[Night]]:
    """The section's lines, and the nights that did not start where their change requires."""
    wrong = [n for n in nights if not n.as_expected(plan)]
    rows = table(nights, plan, cold_work, ("its milestones' time", lambda n: f"{n.work_s:.0f} s"))
    second, third = nights[1].wall_s / nights[0].wall_s, nights[2]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores with "
        f"`make bench` (`.venv/bin/python benchmarks/nightly_reuse_bench.py`; load "
        "average before "
        f"{load_before}, after {load_after}): a copy of the shipped `local-debian-base` pipeline with `reuse: {{}}` "
        f"and checkpoints at {', '.join(map(str, CHECKPOINTS))}" + ", one build a night through `dag.test()` on the "
        "local target (debootstrap cache, Ansible over chroot, the seal's disk, the green and the sealed image "
        "booted in qemu), its repository watch pointed at a loopback mirror. Wall times include Airflow's "
        "per-task cost in `dag.test()` (about 1 s a task, reused ones included).",
        "",
        *rows,
        "",
        "Milestones run (s; the boots in 10 and 97 are emulated, their time follows the machine's load): "
        + "; ".join(
            f"night {n.number}: " + ", ".join(f"{c}: {d:.0f}" for c, d in sorted(n.durations.items()) if c)
            for n in nights
            if any(n.durations.values())
        )
        + ".",
        "",
        f"Goals (#32): night 2 under 15% of cold: **{second:.0%}**; night 3 costs the work from the last "
        f"checkpoint before 30: it started from {third.started()} and ran {codes(tuple(c for c in third.ran if c))}; "
        "nights 4 and 5 run what their change requires and nothing earlier: "
        f"{nights[3].started()}, {nights[4].started()}."
        + ("" if not wrong else " **Not as expected: night " + ", ".join(str(n.number) for n in wrong) + ".**"),
        "",
        f"Nights 1 and 5 are both cold builds ({nights[0].wall_s:.0f} s and {nights[4].wall_s:.0f} s): how far "
        "apart they are is the machine's load (two cores shared with other work; the emulated boots are most of "
        "it), so compare a night's milestones' time with night 1's time of the same milestones as well as with "
        "night 1's wall time.",
    ]
    return lines, wrong


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave docs/benchmarks.md alone")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (store, logs) for a look")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the local target needs root (debootstrap, chroot, mkfs)")
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(proxy, None)  # the mirror is loopback: never through a proxy
    work = Path(tempfile.mkdtemp(prefix="imagebuild-nightly-", dir="/var/tmp"))
    log = work / "airflow-output.log"
    os.environ.update(
        IMAGEBUILD_STORE=f"sqlite:///{work}/state.db",
        IMAGEBUILD_WORK=str(work / "work"),
        IMAGEBUILD_CATALOG=str(work / "catalog"),
        IMAGEBUILD_FAIL_AT="",
    )
    load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    mirror = Mirror()
    finished = False
    try:
        with mirror.serving():
            pipeline_copy(work, mirror.url)
            os.environ["IMAGEBUILD_CACHE"] = str(cache_copy(work))
            airflow_home(work, ROOT / "dags")
            from airflow.dag_processing.dagbag import DagBag

            from airflow_provider_imagebuild.store import open_store

            bag = DagBag(dag_folder=str(ROOT / "dags"))
            if DAG_ID not in bag.dags:
                sys.exit(f"{DAG_ID} did not load: {bag.import_errors}")
            store = open_store(os.environ["IMAGEBUILD_STORE"])
            nights = [
                Night(1, "nothing (first build)", None),
                Night(2, "nothing", 0),
                Night(3, "playbook of milestone 30", 25),
                Night(4, "package repository (InRelease watched by 15, 25, 30)", 10),
                Night(5, "source image (the cached Debian base)", None),
            ]
            plan: list[int] = []
            for night in nights:
                if night.number == 3:
                    playbook = work / "ansible/30-monitoring.yml"
                    playbook.write_text(playbook.read_text().rstrip("\n") + "\n" + NIGHT_30_TASK)
                elif night.number == 4:
                    mirror.body = INRELEASE.format(date="Wed, 04 Nov 2026 08:00:00 UTC").encode()
                elif night.number == 5:
                    new_source_image()
                if night.number in (3, 4, 5):
                    bag = DagBag(dag_folder=str(ROOT / "dags"))  # the scheduler parses the changed spec again
                run_night(bag.dags[DAG_ID], store, night, log)
                plan = list(store.get(f"night-{night.number}").plan)
                print(
                    f"night {night.number} ({night.change}): {night.wall_s:.1f} s, reused {codes(night.reused)}, "
                    f"ran {codes(tuple(c for c in night.ran if c))}; from {night.started()}",
                    flush=True,
                )
            cold = store.get("night-1")
            cold_work = {code: ms.duration_s or 0.0 for code, ms in cold.milestones.items()}
            finished = True
    finally:
        why = "" if args.keep else " (a file system is mounted inside it)" if mounted_under(work) else ""
        why = why if finished or args.keep else " (a night did not finish: its log and store are there)"
        if args.keep or why:
            print(f"kept {work}{why}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    load_after = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines, wrong = report(nights, plan, cold_work, args, load_before, load_after)
    print("\n".join(lines))
    if not args.no_write:
        replace_section(ROOT / "docs/benchmarks.md", SECTION, lines)
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
