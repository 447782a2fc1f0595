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
import signal
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass

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
    request = urllib.request.Request(url, headers={"User-Agent": "airflow-provider-imagebuild watch"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        digest = hashlib.sha256()
        read = 0
        while chunk := response.read(65536):
            read += len(chunk)
            if read > MAX_REPOSITORY_BYTES:
                raise ValueError(f"is larger than {MAX_REPOSITORY_BYTES // (1024 * 1024)} MiB")
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


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
        data = proc.stdout.read(MAX_COMMAND_OUTPUT + 1)
        if len(data) > MAX_COMMAND_OUTPUT:
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
