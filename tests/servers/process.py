"""Start a test server on a free loopback port, wait until it answers, stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = START_TIMEOUT_S) -> None:
    """Poll ``url`` until any HTTP answer arrives (bounded), failing early if the server died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not answer within {timeout}s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def running(argv: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``argv`` (which must listen on 127.0.0.1:port) for the duration of the block."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc, log)
        yield url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 5) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace)


def dynalite(log: Path) -> contextlib.AbstractContextManager[str]:
    """dynalite (npm) on a free loopback port: DynamoDB whose conditional writes hold under
    concurrent clients (the store every worker shares)."""
    node = shutil.which("node")
    assert node, "node is required (installed by `make setup`)"
    assert (ROOT / "node_modules/dynalite").is_dir(), "dynalite missing: run `make setup` (npm ci)"
    port = free_port()
    return running([node, str(ROOT / "tests/servers/dynalite.js"), str(port)], port, log)
