"""``airflow standalone`` (scheduler, dag-processor, triggerer, API server; LocalExecutor on
SQLite) on a free loopback port, driven through the REST API as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.servers.process import ROOT, free_port, stop

PASSWORD = "imagebuild-test"
# Simple auth manager users (name: role) and their passwords: an admin acts, a viewer only reads.
USERS = {"admin": "admin", "viewer": "viewer"}
PASSWORDS = {"admin": PASSWORD, "viewer": "imagebuild-viewer"}


class Airflow:
    def __init__(self, url: str, home: Path, token: str) -> None:
        self.url, self.home = url, home
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def token_for(self, user: str) -> str:
        answer = httpx.post(f"{self.url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30)
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["access_token"])

    def as_user(self, user: str | None) -> httpx.Client:
        """A client for ``user`` (None: anonymous)."""
        headers = {"Authorization": f"Bearer {self.token_for(user)}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/api/v2{path}", **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text[:500]}"
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.get(f"/api/v2/dags/{dag_id}").status_code == 200:
                return
            time.sleep(1)
        raise AssertionError(f"DAG {dag_id} did not appear within {timeout}s; see {self.home}/standalone.log")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, states: set[str], timeout: float = 240) -> str:
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in states:
                return str(state)
            time.sleep(1)
        raise AssertionError(f"run {run_id} still {state} after {timeout}s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        data = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return {ti["task_id"]: ti["state"] for ti in data["task_instances"]}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """A task try's log as Airflow serves it (structured lines joined as JSON text)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        return json.dumps(self.api("GET", path, params={"full_content": True}, headers={"Accept": "application/json"}))

    def clear_failed(self, dag_id: str, run_id: str, task_ids: list[str]) -> Any:
        return self.api(
            "POST",
            f"/dags/{dag_id}/clearTaskInstances",
            json={
                "dag_run_id": run_id,
                "task_ids": task_ids,
                "dry_run": False,
                "only_failed": True,
                "include_downstream": True,
            },
        )


@dataclass(frozen=True)
class Deployment:
    """The test session's one ``airflow standalone``, shared by every test of the real scheduler,
    API server and UI (tests/standalone/, which one xdist worker runs, so Airflow starts once).
    Tests add their own pipelines to ``pipelines``: the dag-processor lists the folder every few
    seconds and ``Airflow.wait_for_dag`` waits for the DAG. Every pipeline uses ``store_url``,
    which is also the deployment-wide store the plugin reads."""

    airflow: Airflow
    folder: Path
    pipelines: Path
    store_url: str

    def add_pipeline(self, name: str, text: str) -> Path:
        path = self.pipelines / f"{name}.yaml"
        tmp = path.with_suffix(".tmp")  # the DAG file reads *.yaml: never half a spec
        tmp.write_text(text)
        tmp.replace(path)
        return path


# Drills of the UI test (the first attempt at 85 fails, as a mirror timeout would): deployment-wide,
# as an operator sets them on workers; no other shared pipeline has a milestone 85.
SHARED_FAIL_AT = "85@1"


@contextmanager
def shared_deployment(folder: Path) -> Iterator[Deployment]:
    pipelines = folder / "pipelines"
    pipelines.mkdir(parents=True)
    store_url = f"sqlite:///{folder}/state.db"
    env = {
        "IMAGEBUILD_STORE": store_url,
        "IMAGEBUILD_WORK": str(folder / "work"),
        "IMAGEBUILD_CATALOG": str(folder / "catalog"),
        "IMAGEBUILD_FAIL_AT": SHARED_FAIL_AT,
        # pipelines written after the start are parsed within seconds, not Airflow's 30
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3",
    }
    with standalone(folder / "airflow", pipelines, env) as airflow:
        yield Deployment(airflow, folder, pipelines, store_url)


@contextmanager
def standalone(home: Path, pipelines: Path, extra_env: dict[str, str] | None = None) -> Iterator[Airflow]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(PASSWORDS))
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # Airflow's log servers bind every interface on fixed ports; free ports avoid collisions.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in USERS.items()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "IMAGEBUILD_PIPELINES_DIR": str(pipelines),
        # standalone starts its components as `airflow ...` from PATH: use this venv's
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        **(extra_env or {}),
    }
    log = open(home / "standalone.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("airflow")), "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=home,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        token = None
        while time.monotonic() < deadline and token is None:
            assert proc.poll() is None, f"standalone exited: {(home / 'standalone.log').read_text()[-3000:]}"
            try:
                health = httpx.get(f"{url}/api/v2/monitor/health", timeout=2)
                if health.status_code == 200 and health.json()["scheduler"]["status"] == "healthy":
                    answer = httpx.post(f"{url}/auth/token", json={"username": "admin", "password": PASSWORD})
                    if answer.status_code in (200, 201):
                        token = answer.json()["access_token"]
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            if token is None:
                time.sleep(1)
        assert token, f"standalone did not become healthy: {(home / 'standalone.log').read_text()[-3000:]}"
        yield Airflow(url, home, token)
    finally:
        stop(proc, grace=20)
        log.close()
