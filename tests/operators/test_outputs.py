"""Outputs the store refuses, produced by a milestone whose command succeeded: the attempt is
recorded as failed with the reason, the lease is released, and Airflow does not retry
(``AirflowFailException``). Before, the attempt stayed in progress with its lease dangling.

The command is real (a shell printing ``::output::`` lines); the operator runs with a minimal task
context, as the other operator tests do (the Airflow path is covered by test_resume.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.store import open_store
from tests.conftest import task_context


def _run(tmp_path: Path, command: str, plan: list[int] | None = None, state: int = 5) -> tuple[object, object]:
    from airflow_provider_imagebuild.operators import CommandMilestoneOperator

    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url)
    plan = plan or [0, 5, 100]
    store.create_build("out-1", pipeline="p", cloud="local", image_type="t", plan=plan)
    marker = tmp_path / "ran"
    op = CommandMilestoneOperator(
        task_id=f"s{state:03d}",
        identity=BuildIdentity("p", "local", "t", plan=tuple(plan)),
        state=state,
        store=url,
        command=f"{command}; touch {marker}",
    )
    with pytest.raises(AirflowFailException) as caught:
        op.execute(task_context("out-1", f"s{state:03d}"))
    assert marker.exists()  # the command ran to its end
    return caught.value, store.get("out-1")


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("printf '::output:: note=a\\000b\\n'", "control characters"),
        ("echo '::output:: db_password=hunter2'", "looks like a secret"),
        ("echo ::output:: big=$(head -c 5000 /dev/zero | tr '\\0' x)", "at most 4000 characters"),
        ("for i in $(seq 8); do echo ::output:: k$i=$(head -c 3000 /dev/zero | tr '\\0' x); done", "bytes as JSON"),
    ],
)
def test_refused_outputs_fail_the_attempt_cleanly(tmp_path: Path, command: str, reason: str) -> None:
    exc, rec = _run(tmp_path, command)
    assert reason in str(exc)
    attempt = rec.attempts_at(5)[-1]  # type: ignore[attr-defined]
    assert attempt.status == "failed" and reason in (attempt.error or "")
    assert rec.lease is None and rec.status == "failed"  # type: ignore[attr-defined]
    assert "hunter2" not in (attempt.error or "")


def test_outputs_that_outgrow_the_record_fail_the_attempt_cleanly(tmp_path: Path) -> None:
    """Each milestone's outputs fit, but the record cannot hold them all: the complete is refused
    after the command ran, and the attempt is recorded as failed, not left in progress."""
    plan = list(range(0, 101, 4))
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.create_build("out-1", pipeline="p", cloud="local", image_type="t", plan=plan)
    payload = {f"k{i}": "v" * 3900 for i in range(4)}
    for code in plan[1:22]:
        lease = store.begin("out-1", code, owner="filler")
        store.complete("out-1", code, token=lease.token, outputs=payload)
    command = "; ".join(f"echo ::output:: k{i}=$(head -c 3900 /dev/zero | tr '\\0' v)" for i in range(4))
    exc, rec = _run(tmp_path, command, plan=plan, state=plan[22])
    assert "would make the record of build out-1" in str(exc)
    assert rec.attempts_at(plan[22])[-1].status == "failed" and rec.lease is None  # type: ignore[attr-defined]


def test_a_failed_milestone_says_what_a_clear_will_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    with caplog.at_level(logging.INFO):
        _run(tmp_path, "printf '::output:: note=a\\000b\\n'")
    log = caplog.text + "".join(capsys.readouterr())
    assert "clear this task to resume build out-1 at milestone 5 (milestones 0..0 stay done" in log, log
    assert "imagebuild build show out-1" in log


def test_a_long_milestone_says_it_is_alive(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line at least every progress interval (30 s; 0.5 s here) with the time spent and the
    tool's latest line, while the tool itself prints nothing."""
    import logging

    from airflow_provider_imagebuild.operators import CommandMilestoneOperator

    monkeypatch.setattr(CommandMilestoneOperator, "progress_seconds", 0.5)
    url = f"sqlite:///{tmp_path}/s.db"
    open_store(url).create_build("alive-1", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    op = CommandMilestoneOperator(
        task_id="s005",
        identity=BuildIdentity("p", "local", "t", plan=(0, 5, 100)),
        state=5,
        store=url,
        command="echo 'TASK [wait for the mirror]'; sleep 1.8",
    )
    with caplog.at_level(logging.INFO):
        op.execute(task_context("alive-1", "s005"))
    log = caplog.text + "".join(capsys.readouterr())
    ticks = [line for line in log.splitlines() if "still running" in line]
    assert len(ticks) >= 2, log
    assert "latest: TASK [wait for the mirror]" in ticks[-1]


def test_a_command_finds_the_tools_the_worker_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker started without its venv on PATH (a systemd unit, ``.venv/bin/python -m ...``)
    still gives a milestone's command the venv's tools, as the provider finds its own."""
    from airflow_provider_imagebuild.operators import CommandMilestoneOperator

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url)
    store.create_build("tools-1", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    op = CommandMilestoneOperator(
        task_id="s005", identity=BuildIdentity("p", "local", "t", plan=(0, 5, 100)), state=5, store=url,
        command="ansible-playbook --version >/dev/null && imagebuild --help >/dev/null",
    )  # fmt: skip
    op.execute(task_context("tools-1", "s005"))
    assert store.get("tools-1").status == "completed"
