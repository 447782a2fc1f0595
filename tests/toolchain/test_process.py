"""The supervised child process: what it leaves running is killed when it exits."""

from __future__ import annotations

import os
import time

from airflow_provider_imagebuild.toolchain.process import ChildProcess


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_background_process_left_holding_the_output_is_killed() -> None:
    """`setsid sleep &` keeps the output pipe open after the shell exits: reading the output used
    to wait for the sleep (300 s here); now the stray is killed when the shell exits."""
    began = time.monotonic()
    child = ChildProcess("setsid sleep 300 & echo started $!")
    lines = list(child.lines())
    assert child.wait() == 0
    assert time.monotonic() - began < 30
    (line,) = lines
    sleeper = int(line.split()[-1])
    assert child.strays == [sleeper]
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper)


def test_a_clean_child_leaves_nothing_to_kill() -> None:
    child = ChildProcess(["sh", "-c", "echo $IMAGEBUILD_CHILD"], env={"PATH": os.environ["PATH"]})
    (marker,) = list(child.lines())
    assert child.wait() == 0
    assert marker == child.marker and child.strays == []
