"""A supervised child process: its own session, dies with the task, stops politely then firmly.

Packer must get SIGINT (not SIGKILL) so that it deletes the instance, key pair and security group
it created; a plain command gets SIGTERM. Either way, a child that ignores the first signal is
killed after a grace period, and a task process killed outright takes its child with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

KILL_GRACE_S = 10.0


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _load_prctl()  # resolved in the parent: the child between fork and exec must not import
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child: get SIGTERM when the task process dies, even by SIGKILL (Linux prctl).

    The child runs in its own session so that a stop can signal its whole process group; without
    this, a worker killed outright would leave Packer or Ansible running unsupervised.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildProcess:
    """One running child whose combined stdout/stderr is read line by line."""

    def __init__(
        self,
        argv: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stop_signal: int = signal.SIGTERM,
        grace_s: float = KILL_GRACE_S,
    ) -> None:
        self.stop_signal = stop_signal
        self.grace_s = grace_s
        self.stopped: str | None = None
        self.proc = subprocess.Popen(
            argv,
            shell=isinstance(argv, str),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def lines(self) -> Iterator[str]:
        """The child's output lines (without the newline) until it closes its output."""
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            yield raw.rstrip("\n")

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self, reason: str) -> None:
        """Signal the child's process group; escalate to SIGKILL if it outlives the grace period.

        Returns at once (it may be called from a signal handler or the lease thread)."""
        proc = self.proc
        if proc.poll() is not None:
            return
        self.stopped = reason
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, self.stop_signal)

        def _escalate() -> None:
            try:
                proc.wait(self.grace_s)
                return
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(max(self.grace_s / 2, 1.0))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

        threading.Thread(target=_escalate, name="child-stop", daemon=True).start()
