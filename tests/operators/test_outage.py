"""The store goes away while a milestone runs (DynamoDB on dynalite, stopped and restarted).

The task fails with "store unreachable" instead of a traceback from deep inside boto3, Airflow
retries it, the retry takes over the dead try's lease once the server is back, and the build
completes with every milestone recorded exactly once.
"""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write
from tests.servers.process import free_port, running

KILL_STORE = (
    'if [ ! -e "$MARK" ]; then touch "$MARK"; kill -TERM "$(cat "$STORE_PID")"; sleep 1; fi; '
    'echo "$STATE" >> "$COUNTER"'
)


@pytest.mark.slow
def test_store_outage_is_retried_and_loses_nothing(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    node = shutil.which("node")
    assert node
    port = free_port()
    argv = [node, str(ROOT / "tests/servers/dynalite.js"), str(port), str(tmp_path / "leveldb")]
    url = f"dynamodb://outage-builds?region=us-east-1&endpoint_url=http://127.0.0.1:{port}"
    env_line = f"env: {{COUNTER: '{tmp_path}/counter', MARK: '{tmp_path}/mark', STORE_PID: '{tmp_path}/store.pid'}}"
    write(
        tmp_path / "pipelines/outage.yaml",
        "\n".join(
            [
                "pipeline: outage-demo",
                "cloud: local",
                "image_type: base",
                "schedule: null",
                f"store: '{url}'",
                "defaults: {retries: 2, retry_delay: 6, lease_seconds: 5}",
                "milestones:",
                f'  5: {{action: command, command: \'echo "$STATE" >> "$COUNTER"\', {env_line}}}',
                f"  15: {{action: command, command: {KILL_STORE!r}, {env_line}}}",
                f'  20: {{action: command, command: \'echo "$STATE" >> "$COUNTER"\', {env_line}}}',
            ]
        )
        + "\n",
    )
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["imagebuild_outage_demo"]

    restarted = threading.Event()
    # dynalite writes its pid to STORE_PID, where the milestone's command finds it
    with running(argv, port, tmp_path / "dynalite-1.log", env={"DYNALITE_PID_FILE": str(tmp_path / "store.pid")}):
        open_store(url).init()
        assert (tmp_path / "store.pid").read_text().isdigit()

        def restart_later() -> None:
            deadline = time.monotonic() + 120
            while not (tmp_path / "mark").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(3)  # the milestone's complete() meets a dead store meanwhile
            with running(argv, port, tmp_path / "dynalite-2.log"):
                restarted.set()
                while not stop.is_set():
                    time.sleep(0.2)

        stop = threading.Event()
        keeper = threading.Thread(target=restart_later, daemon=True)
        keeper.start()
        try:
            run = dag.test(logical_date=datetime(2026, 11, 9, tzinfo=timezone.utc), run_conf={"build_id": "outage-1"})
            assert restarted.is_set()
            assert run.state == "success"
            rec = open_store(url).get("outage-1")
        finally:
            stop.set()
            keeper.join(30)
    assert rec.delivered and rec.completed == [0, 5, 15, 20, 100]
    # try 1 could not record anything (the store was down): its lease expired, try 2 took over
    assert [a.status for a in rec.attempts_at(15)] == ["abandoned", "completed"]
    assert "try-1" in rec.attempts_at(15)[0].owner and "try-2" in rec.attempts_at(15)[1].owner
    assert all(len(rec.attempts_at(c)) == 1 for c in (0, 5, 20, 100))
    runs = (tmp_path / "counter").read_text().split()
    assert runs.count("5") == 1 and runs.count("20") == 1  # nothing before or after the outage redone
    assert runs.count("15") == 2  # the milestone itself ran again: at least once, recorded once
