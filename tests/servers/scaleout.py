"""Airflow's CeleryExecutor for real, on loopback: PostgreSQL (the metadata DB), Redis (the broker),
and Airflow 3's api-server, scheduler, dag-processor and Celery workers as separate processes.

The Airflow settings come from ``deploy/celery.env`` (the file ``docker-compose.yaml`` reads too),
with only the addresses filled in here, so the compose file cannot drift from what was run.
PostgreSQL refuses to run as root: its cluster is made and started as the ``postgres`` user in a
directory that user owns.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import httpx
import psutil

from airflow_provider_imagebuild.store import BuildStore
from tests.servers.process import ROOT, free_port, stop
from tests.servers.standalone import PASSWORD, PASSWORDS, USERS, Airflow

ENV_FILE = ROOT / "deploy/celery.env"
START_TIMEOUT_S = 180


def store_env(store_url: str) -> dict[str, str]:
    """The deployment's store: an ``imagebuild_state`` connection with its own AWS connection
    (dynalite takes any key), as docker-compose.yaml wires it."""
    return {
        "AIRFLOW_CONN_IMAGEBUILD_DEFAULT": json.dumps(
            {"conn_type": "imagebuild_state", "extra": {"store_url": store_url, "aws_conn_id": "aws_state_store"}}
        ),
        "AIRFLOW_CONN_AWS_STATE_STORE": json.dumps(
            {"conn_type": "aws", "login": "local", "password": "local", "extra": {"region_name": "us-east-1"}}
        ),
        "IMAGEBUILD_STORE_CONN_ID": "imagebuild_default",
    }


def deploy_env() -> dict[str, str]:
    """``deploy/celery.env``: KEY=VALUE lines (comments and blanks skipped)."""
    found = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def wait_tcp(port: int, proc: subprocess.Popen[bytes] | None, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout}s")


def tool(name: str) -> str:
    """A PostgreSQL program from Debian's versioned directory (not on PATH), or any other from PATH."""
    found = next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None) or shutil.which(name)
    assert found, f"{name} is missing: run `make setup`"
    return str(found)


def as_postgres(argv: list[str]) -> None:
    got = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True)
    assert got.returncode == 0, f"{argv[0]}: {got.stdout[-1500:]}{got.stderr[-1500:]}"


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free loopback port; yields its SQLAlchemy URL. Its data
    lives in a directory of its own, owned by ``postgres`` (which cannot enter root's pytest
    directories), removed afterwards."""
    data = Path(tempfile.mkdtemp(prefix="imagebuild-pg-"))
    shutil.chown(data, "postgres")
    port = free_port()
    try:
        as_postgres([tool("initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8"])
        options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        as_postgres([tool("pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "server.log"), "-w", "start"])
        try:
            as_postgres([tool("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "airflow", "airflow"])
            yield f"postgresql+psycopg2://airflow@127.0.0.1:{port}/airflow"
        finally:
            as_postgres([tool("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(data, ignore_errors=True)


# The broker keeps its queues on disk (docker-compose.yaml's Redis runs with the same options): a
# Redis restarted without them comes back empty, and the tasks queued in it are lost until
# Airflow's [scheduler] task_queued_timeout (10 minutes) requeues them.
REDIS_PERSISTENCE = ["--appendonly", "yes", "--appendfsync", "everysec"]


class Redis:
    """The Celery broker, on a port that stays the same when it is stopped and started again
    (a broker outage the workers and the scheduler must ride out)."""

    def __init__(self, work: Path) -> None:
        self.port, self.dir = free_port(), work
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [tool("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                [*argv, *REDIS_PERSISTENCE, "--dir", str(self.dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_tcp(self.port, self.proc, "redis")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@contextlib.contextmanager
def redis(work: Path) -> Iterator[Redis]:
    broker = Redis(work)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def runs(pid: int, pattern: str) -> bool:
    """Whether a process of ``pid``'s tree has ``pattern`` in its command line (exited and
    zombie ones skipped)."""
    for proc in process_tree(pid):
        with contextlib.suppress(psutil.Error):
            if pattern in " ".join(proc.cmdline()):
                return True
    return False


@dataclass
class Cluster:
    airflow: Airflow
    env: dict[str, str]
    home: Path
    broker: Redis
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    launches: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        self.launches[name] = (argv, env)
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), *argv],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.home,
        )
        self.procs[name] = proc
        return proc

    def kill_machine(self, name: str) -> float:
        """SIGKILL a component and every process under it, as when its machine dies (the task
        runner puts each task in a session of its own, so the process group alone would leave the
        task running). Returns when it happened (epoch seconds)."""
        proc = self.procs.pop(name)
        tree = process_tree(proc.pid)
        at = time.time()
        for each in tree:
            with contextlib.suppress(psutil.Error):
                each.send_signal(signal.SIGKILL)
        proc.wait(30)
        return at

    def restart(self, name: str) -> None:
        """Stop a component gracefully (SIGTERM, as a deployment restarts it) and start it again."""
        proc = self.procs.pop(name)
        stop(proc, grace=60)
        self.start(name, *self.launches[name])

    def running(self, pattern: str, among: tuple[str, ...]) -> str | None:
        """The first of ``among`` whose process tree runs ``pattern``."""
        return next((name for name in among if name in self.procs and runs(self.procs[name].pid, pattern)), None)

    def worker(self, name: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        """A Celery worker with a hostname and a log server port of its own (two on one machine)."""
        own = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()), "SCALEOUT_WORKER": name}
        argv = ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(concurrency)]
        return self.start(name, argv, own)


@contextlib.contextmanager
def celery_cluster(
    work: Path, pipelines: Path, workers: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    home = work / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(PASSWORDS))
    with postgres() as db, redis(work) as broker:
        port = free_port()
        env = {
            **os.environ,
            **deploy_env(),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CELERY__BROKER_URL": broker.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db.replace("+psycopg2", ""),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
            "IMAGEBUILD_PIPELINES_DIR": str(pipelines),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **(extra_env or {}),
        }
        airflow = str(Path(sys.executable).with_name("airflow"))
        got = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, cwd=home)
        assert got.returncode == 0, got.stdout[-2000:] + got.stderr[-3000:]
        cluster = Cluster(Airflow(f"http://127.0.0.1:{port}", home, ""), env, home, broker)
        try:
            cluster.start("api-server", ["api-server", "--port", str(port), "--host", "127.0.0.1"])
            cluster.start("scheduler", ["scheduler"])
            cluster.start("dag-processor", ["dag-processor"])
            for i in range(workers):
                cluster.worker(f"worker{i + 1}")
            url = f"http://127.0.0.1:{port}"
            deadline, token = time.monotonic() + START_TIMEOUT_S, None
            while time.monotonic() < deadline and token is None:
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    health = httpx.get(f"{url}/api/v2/monitor/health", timeout=2)
                    if health.status_code == 200 and health.json()["scheduler"]["status"] == "healthy":
                        answer = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": PASSWORD})
                        if answer.status_code in (200, 201):
                            token = answer.json()["access_token"]
                if token is None:
                    time.sleep(1)
            assert token, f"the cluster did not become healthy; see {home}/*.log"
            cluster.airflow = Airflow(url, home, token)
            yield cluster
        finally:
            for proc in cluster.procs.values():
                stop(proc, grace=20)


# -- the scenario's pipelines, and what is checked after it ---------------------------------------

MARK = "echo $BUILD_ID:$STATE:${{SCALEOUT_WORKER:-standalone}}:$(date +%s.%N) >> {marks}; sleep {sleep}"


def command_pipeline(
    name: str, marks: Path, sleeps: dict[int, float], max_active_runs: int, lease_seconds: int = 10
) -> str:
    """A pipeline of shell milestones that sleep as real work would and append a marker per run
    (build, milestone, worker, time) to ``marks``, so that runs are counted."""
    lines = [
        f"pipeline: {name}",
        "cloud: local",
        "image_type: t",
        f"max_active_runs: {max_active_runs}",
        f"defaults: {{retries: 3, retry_delay: 2, lease_seconds: {lease_seconds}}}",
        "milestones:",
    ]
    for code, sleep in sleeps.items():
        lines.append(f'  {code}: {{action: command, command: "{MARK.format(marks=marks, sleep=sleep)}"}}')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Mark:
    build: str
    code: int
    worker: str
    at: float


def read_marks(path: Path) -> list[Mark]:
    found = []
    for line in path.read_text().split() if path.exists() else []:
        build, code, worker, at = line.split(":")
        found.append(Mark(build, int(code), worker, float(at)))
    return found


def store_problems(store: BuildStore, builds: list[str], interrupted_at: float | None = None) -> list[str]:
    """What is wrong with the builds in the store: not delivered; a milestone without exactly one
    completed attempt; an attempt neither completed, abandoned nor failed; a milestone that ran
    more than once although no kill (before ``interrupted_at``) interrupted an attempt of it."""
    problems = []
    for build in builds:
        rec = store.get(build)
        if not rec.delivered:
            problems.append(f"{build}: not delivered (state {rec.current_state}, {rec.status})")
        for code in rec.plan:
            attempts = rec.attempts_at(code)
            seen = [(a.attempt, a.kind, a.status, a.owner) for a in attempts]
            if len([a for a in attempts if a.status == "completed"]) != 1:
                problems.append(f"{build}@{code}: not exactly one completed attempt: {seen}")
            if any(a.status not in ("completed", "abandoned", "failed") for a in attempts):
                problems.append(f"{build}@{code}: an attempt still open: {seen}")
            cut = [a for a in attempts if a.status != "completed"]
            killed = interrupted_at is not None and all(epoch(a.started_at) < interrupted_at for a in cut)
            if len([a for a in attempts if a.kind == "run"]) > 1 and not (cut and killed):
                problems.append(f"{build}@{code}: ran more than once without a kill: {seen}")
    return problems


def mark_problems(marks: list[Mark], victim: str | None, killed_at: float | None) -> list[str]:
    """Milestones whose command ran more than once, unless one run was on the killed worker
    before it died."""
    runs_of: dict[tuple[str, int], list[Mark]] = {}
    for mark in marks:
        runs_of.setdefault((mark.build, mark.code), []).append(mark)
    problems = []
    for (build, code), each in sorted(runs_of.items()):
        killed = any(m.worker == victim and killed_at is not None and m.at < killed_at for m in each)
        if len(each) > 1 and not killed:
            problems.append(f"{build}@{code} ran {len(each)} times: {[(m.worker, m.at) for m in each]}")
    return problems


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class RunTimes:
    """What Airflow recorded of a set of DAG runs: when each task was queued, started and ended."""

    queued_to_running: list[float] = field(default_factory=list)  # per task try
    gaps: list[float] = field(default_factory=list)  # end of a milestone -> start of the next
    first: float = float("inf")
    last: float = 0.0

    @property
    def wall(self) -> float:
        return self.last - self.first


def run_times(airflow: Airflow, dag_id: str, run_ids: list[str]) -> RunTimes:
    times = RunTimes()
    for run_id in run_ids:
        run = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        tis = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        spans = []
        for ti in tis["task_instances"]:
            if ti["start_date"] and ti["end_date"]:
                start, end = epoch(ti["start_date"]), epoch(ti["end_date"])
                spans.append((start, end))
                if ti["queued_when"]:
                    times.queued_to_running.append(start - epoch(ti["queued_when"]))
        spans.sort()
        times.gaps += [later[0] - earlier[1] for earlier, later in pairwise(spans)]
        times.first = min(times.first, epoch(run["queued_at"] or run["start_date"]))
        times.last = max(times.last, epoch(run["end_date"]))
    return times
