"""Airflow's CeleryExecutor for real, on loopback: PostgreSQL (the metadata DB), Redis (the broker),
and Airflow 3's api-server, scheduler, dag-processor and Celery workers as separate processes.

The Airflow settings come from ``deploy/celery.env`` (the file ``docker-compose.yaml`` reads too),
with only the addresses filled in here, so the compose file cannot drift from what was run.
PostgreSQL refuses to run as root: its cluster is made and started as the ``postgres`` user in a
directory that user owns.
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path

import httpx

from tests.servers.process import ROOT, free_port, stop
from tests.servers.standalone import PASSWORD, PASSWORDS, USERS, Airflow

ENV_FILE = ROOT / "deploy/celery.env"
START_TIMEOUT_S = 180


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


@contextlib.contextmanager
def redis(work: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    log = open(work / "redis.log", "wb")  # noqa: SIM115 - closed below
    argv = [tool("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_tcp(port, proc, "redis")
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        stop(proc)
        log.close()


@dataclass
class Cluster:
    airflow: Airflow
    env: dict[str, str]
    home: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
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

    def kill(self, name: str) -> None:
        """SIGKILL a component's whole process group (a machine that dies)."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def worker(self, name: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        """A Celery worker with a hostname and a log server port of its own (two on one machine)."""
        own = {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        argv = ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", str(concurrency)]
        return self.start(name, argv, own)


@contextlib.contextmanager
def celery_cluster(
    work: Path, pipelines: Path, workers: int = 2, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    home = work / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    (home / "simple_auth_manager_passwords.json.generated").write_text(__import__("json").dumps(PASSWORDS))
    with postgres() as db, redis(work) as (broker, _redis):
        port = free_port()
        env = {
            **os.environ,
            **deploy_env(),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db,
            "AIRFLOW__CELERY__BROKER_URL": broker,
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
        cluster = Cluster(Airflow(f"http://127.0.0.1:{port}", home, ""), env, home)
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
