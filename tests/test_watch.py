"""A milestone's ``watch:`` values (#32), read for real: an apt ``InRelease`` and a yum
``repomd.xml`` from a repository served on loopback, a command's output, the local target's
Debian base. A value that cannot be read is recorded as unavailable and unique to that reading,
so that nothing is ever reused on a value nobody saw."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.fingerprints import FingerprintSource
from airflow_provider_imagebuild.spec.pipeline import parse_spec
from airflow_provider_imagebuild.spec.watch import WatchSpec
from airflow_provider_imagebuild.targets.source_images import local_base_id
from airflow_provider_imagebuild.watch import watched_value


class Repository:
    """A package repository on loopback: path -> bytes, changed by the test."""

    def __init__(self) -> None:
        files = self.files = {
            "/debian/dists/bookworm/InRelease": b"Origin: Debian\nDate: Sat, 05 Dec 2026 01:00:00 UTC\n",
            "/baseos/repodata/repomd.xml": b"<repomd><revision>1</revision></repomd>",
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def repo() -> Iterator[Repository]:
    found = Repository()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_a_repository_checksum_follows_what_the_repository_publishes(repo: Repository) -> None:
    apt = WatchSpec(name="debian", apt=f"{repo.url}/debian/dists/bookworm/InRelease")
    yum = WatchSpec(name="baseos", yum=f"{repo.url}/baseos/repodata/repomd.xml")
    before = watched_value(apt).value
    assert before == "sha256:" + hashlib.sha256(repo.files["/debian/dists/bookworm/InRelease"]).hexdigest()
    assert watched_value(apt).value == before  # the same repository, the same value
    repo.files["/debian/dists/bookworm/InRelease"] += b"SHA256:\n 1234 Packages\n"
    assert watched_value(apt).value != before
    assert watched_value(yum).value.startswith("sha256:") and watched_value(yum).problem is None


def test_a_value_nobody_could_read_is_unique_to_its_reading(repo: Repository) -> None:
    gone = WatchSpec(name="gone", apt=f"{repo.url}/debian/dists/trixie/InRelease", timeout=5)
    one, two = watched_value(gone), watched_value(gone)
    assert one.problem and "Not Found" in one.problem
    assert one.value.startswith("unavailable:") and one.value != two.value
    refused = watched_value(WatchSpec(name="down", apt="http://127.0.0.1:9/InRelease", timeout=5))
    assert refused.problem and refused.value.startswith("unavailable:")


def test_a_command_runs_without_a_shell_or_the_workers_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    seen = watched_value(WatchSpec(name="path", command=["printenv", "PATH"]))
    assert seen.problem is None and seen.value.startswith("sha256:")
    secret = watched_value(WatchSpec(name="secret", command=["printenv", "AWS_SECRET_ACCESS_KEY"]))
    assert secret.problem == "exited with status 1"  # not in its environment
    assert watched_value(WatchSpec(name="same", command=["echo", "a b"])).value == (
        "sha256:" + hashlib.sha256(b"a b\n").hexdigest()
    )


def test_a_command_that_hangs_or_floods_is_cut_off() -> None:
    import time

    started = time.monotonic()
    hung = watched_value(WatchSpec(name="hung", command=["sleep", "30"], timeout=0.5))
    flood = watched_value(WatchSpec(name="flood", command=["yes"], timeout=20))
    assert time.monotonic() - started < 10
    assert hung.problem == "did not finish within 0.5s" and hung.value.startswith("unavailable:")
    assert flood.problem == "printed more than 1 MiB"


def test_the_local_source_image_is_the_cached_debian_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_imagebuild.targets.rootfs import PACKAGES, SUITE, _tarball_path

    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path))
    assert local_base_id() is None  # not bootstrapped yet: nothing to name
    tarball = _tarball_path(PACKAGES, SUITE, tmp_path)
    tarball.write_bytes(b"base v1")
    first = local_base_id()
    tarball.write_bytes(b"base v2")  # the cache was made again from a newer mirror
    assert first == "sha256:" + hashlib.sha256(b"base v1").hexdigest() != local_base_id()


def test_a_milestone_fingerprints_its_watched_repository(repo: Repository, tmp_path: Path) -> None:
    raw = {
        "pipeline": "watched",
        "cloud": "local",
        "image_type": "base",
        "milestones": {
            15: {
                "action": "command",
                "command": ["true"],
                "watch": [{"name": "mirror", "apt": f"{repo.url}/debian/dists/bookworm/InRelease"}],
            },
        },
    }
    source = FingerprintSource(parse_spec(raw, base=tmp_path), str(tmp_path))
    lines: list[str] = []
    before = source.fingerprint(15, None, log=lines.append)
    repo.files["/debian/dists/bookworm/InRelease"] += b"new\n"
    after = source.fingerprint(15, None, log=lines.append)
    assert before.inputs["watch:mirror"].startswith("sha256:") and before.fingerprint != after.fingerprint
    assert lines == []
    repo.files.clear()
    source.fingerprint(15, None, log=lines.append)
    assert lines == ["watch mirror (apt) could not be read: Not Found; nothing is reused past it"]


def test_watch_entries_are_checked_when_the_spec_is_loaded() -> None:
    from airflow_provider_imagebuild.spec.pipeline import SpecError

    base = {"pipeline": "w", "cloud": "azure", "image_type": "b"}
    cases = [
        ([{"name": "m", "apt": "ftp://mirror/InRelease"}], "milestones.15.watch.0.apt: must be an http:// or https://"),
        ([{"name": "m", "apt": "http://user:pw@mirror/InRelease"}], "without credentials"),
        ([{"name": "m", "command": "cat /etc/pin | sha256sum"}], "milestones.15.watch.0.command"),
        ([{"name": "m"}], "give exactly one of command, apt, yum, image"),
        ([{"name": "m", "command": ["a"]}, {"name": "m", "command": ["b"]}], "'m' is named twice"),
        ([{"name": "m", "command": ["a"], "timeout": 3600}], "milestones.15.watch.0.timeout"),
        ([{"name": f"m{i}", "command": ["a"]} for i in range(21)], "a milestone watches at most 20"),
    ]
    for watch, expected in cases:
        with pytest.raises(SpecError) as caught:
            parse_spec({**base, "milestones": {15: {"action": "noop", "watch": watch}}})
        assert expected in str(caught.value), (watch, str(caught.value))
        assert "pw" not in str(caught.value)
    # image: source is resolved on every cloud (targets/source_images.py), so every spec may ask for it
    # (a cloud added later is refused until it resolves one: IMAGE_WATCH_CLOUDS)
    for cloud in ("aws", "azure", "gcp", "openstack", "vsphere"):
        parse_spec(
            {
                **base,
                "cloud": cloud,
                "milestones": {15: {"action": "noop", "watch": [{"name": "m", "image": "source"}]}},
            }
        )


def test_a_watch_timeout_bounds_the_whole_reading_not_each_read(repo: Repository) -> None:
    """A command whose child escapes into its own session keeps stdout open after the command exits,
    and a mirror dripping a byte at a time never lets one read time out: each is cut off at the
    entry's timeout all the same (the milestone waits at most that long for a value)."""
    import time

    dripped = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "200")
            self.end_headers()
            for _ in range(200):
                if dripped.is_set():
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        started = time.monotonic()
        slow = watched_value(WatchSpec(name="slow", apt=f"http://127.0.0.1:{server.server_address[1]}/x", timeout=1))
        assert time.monotonic() - started < 4
        assert slow.problem == "did not finish within 1s" and slow.value.startswith("unavailable:")
        started = time.monotonic()
        escaped = watched_value(WatchSpec(name="escaped", command=["setsid", "sleep", "12"], timeout=0.5))
        assert time.monotonic() - started < 4
        assert escaped.problem == "did not finish within 0.5s" and escaped.value.startswith("unavailable:")
    finally:
        dripped.set()
        server.shutdown()
        server.server_close()
