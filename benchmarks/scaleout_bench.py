"""Scale-out: the CeleryExecutor with two workers against ``airflow standalone`` (LocalExecutor).

``make scaleout`` (no argument) runs the whole scenario on loopback with real processes
(tests/servers/scaleout.py: PostgreSQL, Redis, api-server, scheduler, dag-processor, two Celery
workers, the DynamoDB store on dynalite through the ``imagebuild_state`` connection):

- ten builds at once: eight of a command pipeline whose milestones sleep as real work would, and
  two of the shipped local pipeline (debootstrap, Ansible over chroot, qcow2; needs root);
- one of the command builds is triggered twice: the second run must fail naming the holder;
- the worker running a local build's Ansible milestone is SIGKILLed with every process under it;
  the milestone must run again on the other worker;
- the scheduler is restarted mid-run; Redis is stopped for 20 s and started again;
- then: every build delivered, one completed attempt per milestone, nothing ran twice except what
  the kill interrupted (markers the commands append, and the store's attempts).

Then the figures, on both engines with the same command pipeline, the same store and the same
number of task slots (2 workers x concurrency 2 = 4; standalone with parallelism 4): builds per
hour, queued -> running per task, the gap between a milestone's end and the next one's start, and
the time from a worker's death to its milestone running again. ``--short`` (``make bench``) runs
only the figures, with fewer builds. Writes the scale-out section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from report import replace_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_provider_imagebuild.errors import NotFound  # noqa: E402
from airflow_provider_imagebuild.store import BuildStore, open_store  # noqa: E402
from tests.servers.process import dynalite  # noqa: E402
from tests.servers.scaleout import (  # noqa: E402
    Cluster,
    RunTimes,
    celery_cluster,
    command_pipeline,
    epoch,
    mark_problems,
    read_marks,
    run_times,
    store_env,
    store_problems,
)
from tests.servers.standalone import Airflow, standalone  # noqa: E402

SECTION = "## Scale-out: two Celery workers vs airflow standalone"
CMD, LOCAL, KILL = "imagebuild_scaleout_cmd", "imagebuild_scaleout_local", "imagebuild_scaleout_kill"
WORKERS = ("worker1", "worker2", "worker3")
SLOTS = 4  # 2 Celery workers x concurrency 2; standalone gets parallelism 4
# Milestone sleeps (seconds): kickstart longest, then configuration, tests, seal.
FULL_SLEEPS = {5: 20, 10: 10, 15: 5, 20: 5, 25: 5, 50: 8, 70: 10, 95: 5, 100: 0}
SHORT_SLEEPS = {5: 4, 10: 3, 15: 2, 20: 2, 95: 2, 100: 0}
KILL_SLEEPS = {5: 1, 10: 15, 100: 0}
DETECTION = {
    # A task whose worker died is found when its heartbeat is missing this long...
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    # ...looked for this often.
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def local_pipeline(builds: int) -> str:
    """The shipped local pipeline, as a pipeline of its own that runs ``builds`` at once, with a
    lease shorter than the default (a killed worker's retry takes the lease over after it) and no
    long retry delays."""
    shipped = ROOT / "dags/pipelines/local-debian-base.yaml"
    spec: dict[str, Any] = yaml.safe_load(shipped.read_text())
    spec.update(pipeline="scaleout-local", max_active_runs=builds)
    spec["defaults"].update(retries=2, retry_delay=2, lease_seconds=30)
    for ms in spec["milestones"].values():
        if "playbook" in ms:
            ms["playbook"] = str((shipped.parent / ms["playbook"]).resolve())
        ms.pop("retries", None)
        ms.pop("retry_delay", None)
    return yaml.safe_dump(spec)


def throughput(airflow: Airflow, builds: list[str]) -> RunTimes:
    """Trigger ``builds`` of the command pipeline at once and wait for all of them."""
    runs = [airflow.trigger(CMD, {"build_id": build}) for build in builds]
    for run in runs:
        state = airflow.wait_for_run(CMD, run, {"success", "failed"}, timeout=1800)
        assert state == "success", f"{run}: {state}"
    return run_times(airflow, CMD, runs)


def worker_death(cluster: Cluster, marks: Path) -> float:
    """Kill the worker running the slow milestone of a fresh build; seconds until it runs again."""
    run = cluster.airflow.trigger(KILL, {"build_id": "death-1"})
    victim = wait_until("the slow milestone", lambda: cluster.running("sleep 15", WORKERS), 180)
    killed_at = cluster.kill_machine(victim)
    rerun = wait_until(
        "the milestone to run again",
        lambda: [m for m in read_marks(marks) if (m.build, m.code) == ("death-1", 10) and m.at > killed_at],
        300,
    )
    assert cluster.airflow.wait_for_run(KILL, run, {"success", "failed"}, timeout=600) == "success"
    cluster.worker(victim)  # the machine comes back
    return float(rerun[0].at - killed_at)


def local_rerun(store: BuildStore, builds: list[str], killed_at: float) -> float | None:
    """When a milestone of a local build that an attempt before ``killed_at`` left unfinished
    started again (epoch seconds), or None yet."""
    for build in builds:
        try:
            rec = store.get(build)
        except NotFound:
            continue
        for code in rec.plan:
            attempts = rec.attempts_at(code)
            cut = [a for a in attempts if a.status != "completed" and epoch(a.started_at) < killed_at]
            later = [epoch(a.started_at) for a in attempts if epoch(a.started_at) > killed_at]
            if cut and later:
                return min(later)
    return None


def scenario(cluster: Cluster, store: BuildStore, marks: Path) -> dict[str, Any]:
    """The faults run; returns what happened (raises SystemExit naming what went wrong)."""
    airflow, started = cluster.airflow, time.time()
    twice = "so-twice"
    first = airflow.trigger(CMD, {"build_id": twice})
    wait_until(f"{twice} to hold milestone 5", lambda: _leased(store, twice, 5), 180)
    second = airflow.trigger(CMD, {"build_id": twice})
    # The second run's milestone 5 starts while the first holds it: it must fail at once.
    second_state = airflow.wait_for_run(CMD, second, {"success", "failed"}, timeout=120)
    log(f"{twice} triggered twice: {first} holds milestone 5, the second run ended {second_state}")
    cmd_builds = [twice] + [f"so-{i}" for i in range(7)]
    local_builds = ["local-1", "local-2"]
    runs = {(CMD, b): airflow.trigger(CMD, {"build_id": b}) for b in cmd_builds[1:]}
    runs |= {(LOCAL, b): airflow.trigger(LOCAL, {"build_id": b}) for b in local_builds}
    runs[(CMD, twice)] = first
    log(f"{len(runs)} builds triggered")

    victim = wait_until("Ansible on a worker", lambda: cluster.running("ansible-playbook", WORKERS), 900)
    killed_at = cluster.kill_machine(victim)
    log(f"{victim} SIGKILLed with its process tree while it ran Ansible")
    rerun_at = wait_until("the killed milestone to run again", lambda: local_rerun(store, local_builds, killed_at), 600)
    log(f"the local build's milestone ran again {rerun_at - killed_at:.1f} s after the kill")
    cluster.worker("worker3")

    time.sleep(10)
    cluster.restart("scheduler")
    log("scheduler restarted")
    time.sleep(10)
    cluster.broker.stop()
    log("Redis stopped")
    time.sleep(20)
    cluster.broker.start()
    log("Redis started again")

    states = {key: airflow.wait_for_run(key[0], run, {"success", "failed"}, timeout=1800) for key, run in runs.items()}
    problems = [f"{key[1]}: run {state}" for key, state in states.items() if state != "success"]
    if second_state != "failed":
        problems.append(f"the second run of {twice} ended {second_state}, not failed")
    else:
        failed = [t for t, s in airflow.task_states(CMD, second).items() if s == "failed"]
        logs = "".join(airflow.task_log(CMD, second, task, 1) for task in failed)
        if first not in logs:
            problems.append(f"the second run of {twice} failed without naming the holder ({first})")
    problems += store_problems(store, cmd_builds + local_builds, killed_at)
    problems += mark_problems(read_marks(marks), victim, killed_at)
    if problems:
        raise SystemExit("scale-out scenario failed:\n  " + "\n  ".join(problems))
    wall = time.time() - started
    log(f"all {len(runs)} builds delivered in {wall:.0f} s; every milestone has one completed attempt")
    return {"wall": wall, "builds": len(runs), "rerun": rerun_at - killed_at}


def _leased(store: BuildStore, build: str, code: int) -> bool:
    try:
        rec = store.get(build)
    except NotFound:
        return False
    return rec.lease is not None and rec.lease.state == code


def figures_table(celery: RunTimes, local: RunTimes, builds: int, death: float) -> list[str]:
    def row(name: str, t: RunTimes) -> str:
        q, g = _quantiles(t.queued_to_running), _quantiles(t.gaps)
        per_hour = builds / t.wall * 3600
        return f"| {name} | {t.wall:.0f} s | {per_hour:.0f} | {q[0]:.2f} / {q[1]:.2f} s | {g[0]:.2f} / {g[1]:.2f} s |"

    return [
        f"{builds} builds of a command pipeline at once, {SLOTS} task slots on each engine, the DynamoDB store "
        "(dynalite) through the `imagebuild_state` connection:",
        "",
        "| engine | wall time | builds/hour | queued -> running p50 / p90 | milestone end -> next start p50 / p90 |",
        "|---|---:|---:|---:|---:|",
        row("CeleryExecutor, 2 workers x 2 (PostgreSQL, Redis)", celery),
        row("airflow standalone (LocalExecutor, SQLite)", local),
        "",
        "Queued -> running includes the wait for a free task slot: with more builds than slots it measures "
        "the queue, with fewer it measures the executor's own hand-off (Celery's broker round trip).",
        "",
        f"A Celery worker SIGKILLed with its process tree: its milestone ran again on the other worker "
        f"**{death:.1f} s** later (`task_instance_heartbeat_timeout` 20 s, detection interval 5 s).",
    ]


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    cuts = statistics.quantiles(values, n=10)
    return statistics.median(values), cuts[8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="figures only, fewer builds (make bench)")
    args = parser.parse_args()
    # Stopped from outside (Ctrl-C, kill): still stop every server this started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))
    sleeps, builds = (SHORT_SLEEPS, 4) if args.short else (FULL_SLEEPS, 10)
    work = Path(tempfile.mkdtemp(prefix="imagebuild-scaleout-"))
    log(f"work directory {work}")
    marks, pipelines = work / "marks", work / "pipelines"
    pipelines.mkdir()
    (pipelines / "cmd.yaml").write_text(command_pipeline("scaleout-cmd", marks, sleeps, max_active_runs=builds))
    (pipelines / "kill.yaml").write_text(command_pipeline("scaleout-kill", marks, KILL_SLEEPS, max_active_runs=1))
    if not args.short:
        if os.geteuid() != 0:
            raise SystemExit("the local pipeline needs root (debootstrap, chroot): run `make scaleout` as root")
        (pipelines / "local.yaml").write_text(local_pipeline(2))
    local_dirs = {"IMAGEBUILD_WORK": str(work / "builds"), "IMAGEBUILD_CATALOG": str(work / "catalog")}
    # dynalite accepts any key; the workers get theirs from the aws_state_store connection
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "local")
    with dynalite(work / "dynalite.log") as dynamo:
        store_url = f"dynamodb://scaleout?region=us-east-1&endpoint_url={dynamo}"
        store = open_store(store_url)
        store.init()
        env = {**store_env(store_url), **DETECTION, **local_dirs}
        outcome = None
        with celery_cluster(work / "celery", pipelines, workers=2, extra_env=env) as cluster:
            for dag in (CMD, KILL) if args.short else (CMD, KILL, LOCAL):
                cluster.airflow.wait_for_dag(dag)
            log("Celery cluster up (PostgreSQL, Redis, api-server, scheduler, dag-processor, 2 workers)")
            if not args.short:
                outcome = scenario(cluster, store, marks)  # leaves two workers: worker2 and worker3
            celery = throughput(cluster.airflow, [f"celery-{i}" for i in range(builds)])
            log(f"Celery: {builds} builds in {celery.wall:.0f} s")
            death = worker_death(cluster, marks)
            log(f"worker death -> milestone running again: {death:.1f} s")
        lone = {**env, "AIRFLOW__CORE__PARALLELISM": str(SLOTS)}
        with standalone(work / "standalone", pipelines, lone) as airflow:
            airflow.wait_for_dag(CMD)
            local = throughput(airflow, [f"standalone-{i}" for i in range(builds)])
            log(f"standalone: {builds} builds in {local.wall:.0f} s")
        measured = [f"{engine}-{i}" for engine in ("celery", "standalone") for i in range(builds)]
        problems = store_problems(store, measured)
        if problems:
            raise SystemExit("throughput runs left problems:\n  " + "\n  ".join(problems))

    body = figures_table(celery, local, builds, death)
    if outcome is not None:
        body += [
            "",
            f"`make scaleout`: {outcome['builds']} builds (8 of the command pipeline, one of them triggered twice, "
            "and 2 of the local pipeline) delivered in "
            f"{outcome['wall']:.0f} s through a worker SIGKILLed during Ansible (the local build's milestone ran "
            f"again {outcome['rerun']:.1f} s later on the other worker), a scheduler restart and Redis stopped for "
            "20 s; the second run of the twice-triggered build failed naming the holder; every milestone has "
            "exactly one completed attempt and nothing ran twice except what the kill interrupted.",
        ]
    for line in body:
        print(line)
    replace_section(ROOT / "docs/benchmarks.md", SECTION, body)
    shutil.rmtree(work, ignore_errors=True)  # kept when something failed, for its logs


if __name__ == "__main__":
    main()
