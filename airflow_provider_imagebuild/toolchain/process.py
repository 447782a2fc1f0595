"""A supervised child process: its own session, dies with the task, stops politely then firmly,
and leaves nothing behind.

Packer must get SIGINT (not SIGKILL) so that it deletes the instance, key pair and security group
it created; a plain command gets SIGTERM. Either way, a child that ignores the first signal is
killed after a grace period, and a task process killed outright takes its child with it. What
the child leaves running when it exits (a daemon, a helper that left its session) carries a
marker in its environment and is killed then.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

KILL_GRACE_S = 10.0
REAP_TIMEOUT_S = 30.0
REAP_RESCAN_S = 10.0  # how long strays holding the output open are looked for again
CHILD_MARK_ENV = "IMAGEBUILD_CHILD"


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


def argv_of(pid: int) -> list[str]:
    """A process's command line (empty once it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except OSError:
        return []


def marked_processes(name: str, value: str) -> list[int]:
    """The processes of this machine (other than this one) whose environment has ``name=value``.

    A child's descendants inherit its environment even when they leave its process group or
    session, so a marker set when a tool starts still finds everything it forked (the way Jenkins
    finds a build's stray processes by their BUILD_ID)."""
    entry = f"{name}={value}".encode()
    found = []
    for pid_dir in os.listdir("/proc"):
        if not pid_dir.isdigit() or int(pid_dir) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid_dir}/environ", "rb") as f:
                if entry in f.read().split(b"\0"):
                    found.append(int(pid_dir))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def kill_marked(
    name: str, value: str, spare: Callable[[list[str]], bool] = lambda argv: False, passes: int = 3
) -> list[int]:
    """SIGKILL every process marked ``name=value`` except those whose argv ``spare`` accepts; a
    few passes catch a process forked while the others were being killed."""
    seen: set[int] = set()
    killed: list[int] = []
    for _ in range(passes):
        pids = [pid for pid in marked_processes(name, value) if pid not in seen]
        if not pids:
            break
        for pid in pids:
            seen.add(pid)
            if spare(argv_of(pid)):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


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
        self.marker = uuid.uuid4().hex
        self.strays: list[int] = []
        self.proc = subprocess.Popen(
            argv,
            shell=isinstance(argv, str),
            cwd=cwd,
            env={**(os.environ if env is None else env), CHILD_MARK_ENV: self.marker},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._output_closed = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="child-reaper", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        """When the child exits, kill what it left running: a background process that kept the
        output pipe open would otherwise keep :meth:`lines` (and the milestone) waiting.

        Scanned again while the output stays open: a stray caught in the middle of an ``exec``
        (its environment briefly unreadable under load) is missed by one scan, not by the next."""
        self.proc.wait()
        self.strays = kill_marked(CHILD_MARK_ENV, self.marker)
        deadline = time.monotonic() + REAP_RESCAN_S
        while not self._output_closed.wait(0.1) and time.monotonic() < deadline:
            self.strays += kill_marked(CHILD_MARK_ENV, self.marker)

    def lines(self) -> Iterator[str]:
        """The child's output lines (without the newline) until it closes its output."""
        assert self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                yield raw.rstrip("\n")
        finally:
            self._output_closed.set()

    def wait(self) -> int:
        """The exit status, once the child and anything it left running are gone."""
        code = self.proc.wait()
        self._reaper.join(REAP_TIMEOUT_S)
        return code

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
