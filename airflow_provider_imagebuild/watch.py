"""The current value of a milestone's ``watch:`` entries (spec/watch.py), read when it starts.

A value that cannot be read (the mirror is down, the command timed out) is not an error of the
milestone: the build goes on, but the value is recorded as ``unavailable`` and its digest is
unique to this reading, so the milestone's fingerprint matches no other build's and nothing is
ever reused on the strength of a value nobody saw.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from airflow_provider_imagebuild.spec.watch import WatchSpec
from airflow_provider_imagebuild.toolchain.locate import tool_path
from airflow_provider_imagebuild.toolchain.process import die_with_parent

MAX_REPOSITORY_BYTES = 32 * 1024 * 1024  # an InRelease or repomd.xml is kilobytes; a runaway is not read
MAX_COMMAND_OUTPUT = 1024 * 1024
UNAVAILABLE = "unavailable"

# The target's verb for ``image: source``: the id its source image resolves to now (None: it cannot).
ImageResolver = Callable[[], "str | None"]


@dataclass(frozen=True)
class WatchedValue:
    """``value``: what enters the fingerprint (a checksum, an output, an image id); ``problem``: why
    it could not be read (the value is then unique to this reading)."""

    name: str
    kind: str
    value: str
    problem: str | None = None


def repository_checksum(url: str, timeout: float) -> str:
    """The SHA-256 of an ``InRelease`` or ``repomd.xml``: both are rewritten whenever the repository
    publishes, so a new package anywhere in it changes the checksum."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": "airflow-provider-imagebuild watch"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        digest = hashlib.sha256()
        read = 0
        # read1: one socket read each, so the deadline is checked between them. The socket's own
        # timeout bounds a single read only: a mirror dripping a byte at a time would never trip it.
        while chunk := response.read1(65536):
            read += len(chunk)
            if read > MAX_REPOSITORY_BYTES:
                raise ValueError(f"is larger than {MAX_REPOSITORY_BYTES // (1024 * 1024)} MiB")
            if time.monotonic() > deadline:
                raise TimeoutError(f"did not finish within {timeout:g}s")
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _read_until(stream: IO[bytes], limit: int, deadline: float) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of ``stream`` until its end or ``deadline`` (True: the deadline came
    first). Killing the command's group at its timeout is not enough: a child that escaped into a
    session of its own (``setsid``) keeps the pipe open after the command exits, and a plain read
    would wait for that child however long it runs."""
    data = bytearray()
    fd = stream.fileno()
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return bytes(data), True
        chunk = os.read(fd, min(65536, limit - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data), False


def command_output(argv: list[str], timeout: float) -> str:
    """The output of ``argv`` (no shell; only ``PATH`` in its environment, so the worker's secrets
    stay out of it), as the SHA-256 of its first MiB; a failing command is no value."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": tool_path(), "LC_ALL": "C"},
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    killed = threading.Event()

    def stop() -> None:
        killed.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(timeout, stop)
    timer.start()
    try:
        assert proc.stdout is not None
        data, late = _read_until(proc.stdout, MAX_COMMAND_OUTPUT + 1, time.monotonic() + timeout)
        if late or len(data) > MAX_COMMAND_OUTPUT:
            stop()
        rc = proc.wait()
    finally:
        timer.cancel()
        if proc.stdout is not None:
            proc.stdout.close()
    if killed.is_set():
        raise TimeoutError(
            f"did not finish within {timeout:g}s" if len(data) <= MAX_COMMAND_OUTPUT else "printed more than 1 MiB"
        )
    if rc != 0:
        raise ValueError(f"exited with status {rc}")
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def watched_value(entry: WatchSpec, resolve_image: ImageResolver | None = None) -> WatchedValue:
    """The current value of one entry; never raises (a problem makes the value unique to now)."""
    try:
        if entry.apt is not None or entry.yum is not None:
            value = repository_checksum(str(entry.apt or entry.yum), entry.timeout)
        elif entry.command is not None:
            value = command_output(entry.command, entry.timeout)
        else:
            found = resolve_image() if resolve_image is not None else None
            if not found:
                raise ValueError("the target could not resolve its source image")
            value = found
        return WatchedValue(entry.name, entry.kind, value)
    except (OSError, ValueError, TimeoutError, urllib.error.URLError, subprocess.SubprocessError) as exc:
        reason = str(getattr(exc, "reason", None) or exc or type(exc).__name__).splitlines()[0][:200]
        return WatchedValue(entry.name, entry.kind, f"{UNAVAILABLE}:{uuid.uuid4().hex}", reason)


def watched_values(entries: list[WatchSpec], resolve_image: ImageResolver | None = None) -> list[WatchedValue]:
    return [watched_value(entry, resolve_image) for entry in entries]
