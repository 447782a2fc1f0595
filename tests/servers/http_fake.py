"""Serving a cloud API fake (tests/servers/azure_arm.py, gce.py) over real HTTP on loopback: a
threaded server in the test process, JSON in and out, the fake's own state a call away."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (method, path with query, lower-cased headers, body) -> (status, headers, JSON answer, bytes or None)
Handle = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], Any]]


def _handler(handle: Handle) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, extra, answer = handle(self.command, self.path, headers, body)
            except Exception as exc:  # a bug of the fake: say so, do not hang the client
                error = {"code": 500, "message": f"fake: {type(exc).__name__}: {exc}"}
                status, extra, answer = 500, {}, {"error": error}
            # bytes go as they are (an XML API), anything else as JSON
            data = answer if isinstance(answer, bytes) else b"" if answer is None else json.dumps(answer).encode()
            self.send_response(status)
            if "Content-Type" not in extra:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", str(uuid.uuid4()))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@contextlib.contextmanager
def serving_http(handle: Handle, name: str) -> Iterator[str]:
    """Serve ``handle`` on a free loopback port for the duration of the block; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(handle))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
