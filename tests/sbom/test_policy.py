"""The spec's ``policy:`` over the fixture image's inventory (data/bookworm, cut from the local
target's Debian 12 image) with advisory files made for these tests (data/osv.json, OSV;
data/debian-tracker.json, the shape of Debian's security tracker export)."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.sbom.inventory import Inventory, inventory_of_root
from airflow_provider_imagebuild.sbom.policy import check
from airflow_provider_imagebuild.spec.policy import PolicySpec

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def image() -> Inventory:
    return inventory_of_root(DATA / "bookworm")


def test_every_violation_is_listed_once(image: Inventory) -> None:
    policy = PolicySpec(
        require=["openssh-server", "sudo", "linux-image-*", "auditd"],
        forbid=["nginx", "telnet*"],
        versions=["openssl >= 3.0.21", "sudo >= 1.9.13p3-1+deb12u4", "zlib1g > 1:1.2.13.dfsg-1", "absent >= 1"],
        licenses=["Apache-2.0", "artistic", "GPL-1+", "BSD-*", "ISC", "Zlib", "public-domain"],
        unlicensed="deny",
        advisories=["osv.json", str(DATA / "debian-tracker.json")],
        ignore=["TEST-2026-0004"],
    )
    result = check(policy, image, DATA)
    assert result.violations == [
        "required package auditd is not installed",
        "forbidden package nginx 1.22.1-9+deb12u9 is installed",
        "openssl 3.0.20-1~deb12u2 is older than the floor >= 3.0.21",
        "zlib1g 1:1.2.13.dfsg-1 is older than the floor > 1:1.2.13.dfsg-1",
        "base-files 12.4+deb12u15 declares no license (policy.unlicensed: deny)",
        "libssl3 3.0.20-1~deb12u2 declares no license (policy.unlicensed: deny)",
        "linux-image-6.1.0-50-cloud-amd64 6.1.176-1 declares no license (policy.unlicensed: deny)",
        "linux-image-cloud-amd64 6.1.176-1 declares no license (policy.unlicensed: deny)",
        "nginx 1.22.1-9+deb12u9 declares no license (policy.unlicensed: deny)",
        "openssh-server 1:9.2p1-2+deb12u10 declares no license (policy.unlicensed: deny)",
        "sudo 1.9.13p3-1+deb12u4: license other is not on the allow-list",
        # OSV: openssl's advisory reaches libssl3 through its source package, openssh's
        # openssh-server; sudo is fixed already, Red Hat's is another ecosystem, nginx's ignored,
        # zlib's withdrawn, and openssh's fixed at the installed version.
        "TEST-2026-0001: libssl3 3.0.20-1~deb12u2 is affected (fixed in 3.0.21-1~deb12u1; osv.json)",
        "TEST-2026-0001: openssl 3.0.20-1~deb12u2 is affected (fixed in 3.0.21-1~deb12u1; osv.json)",
        "TEST-2026-0006: openssh-server 1:9.2p1-2+deb12u10 is affected (no fix known; osv.json)",
        # Debian's tracker, for the image's release (its os-release: bookworm)
        f"CVE-2026-1000: libssl3 3.0.20-1~deb12u2 is affected (fixed in 3.0.21-1~deb12u1; {DATA}/debian-tracker.json)",
        f"CVE-2026-1000: openssl 3.0.20-1~deb12u2 is affected (fixed in 3.0.21-1~deb12u1; {DATA}/debian-tracker.json)",
        f"CVE-2026-1002: sudo 1.9.13p3-1+deb12u4 is affected (no fix known; {DATA}/debian-tracker.json)",
    ]
    assert result.message().startswith("policy violation (17): required package auditd is not installed; ")


def test_an_image_that_keeps_the_rules_passes(image: Inventory) -> None:
    policy = PolicySpec(
        require=["openssh-server"],
        forbid=["telnetd"],
        versions=["openssl >= 3.0.15", "openssh-server >= 1:9.2p1"],
        advisories=["osv.json"],
        ignore=["TEST-2026-0001", "TEST-2026-0004", "TEST-2026-0006"],
    )
    result = check(policy, image, DATA)
    assert result.passed and result.checked["packages"] == 9 and result.checked["advisories"] == 1


def test_the_tracker_export_reads_the_release_the_policy_names(image: Inventory) -> None:
    trixie = check(PolicySpec(advisories=["debian-tracker.json"], release="trixie"), image, DATA)
    assert trixie.violations == [
        "CVE-2026-1002: sudo 1.9.13p3-1+deb12u4 is affected (fixed in 1.9.16-1; debian-tracker.json)",
        "CVE-2026-1004: nginx 1.22.1-9+deb12u9 is affected (no fix known; debian-tracker.json)",
    ]


@pytest.fixture
def advisory_server(tmp_path: Path) -> Iterator[str]:
    shutil.copy(DATA / "osv.json", tmp_path / "osv.json")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_advisory_url_is_read_and_a_bad_source_is_one_line(
    image: Inventory, advisory_server: str, tmp_path: Path
) -> None:
    by_url = check(PolicySpec(advisories=[f"{advisory_server}/osv.json?token=s3cret"]), image, DATA)
    assert [v.split(":")[0] for v in by_url.violations] == ["TEST-2026-0001"] * 2 + ["TEST-2026-0004", "TEST-2026-0006"]
    assert by_url.violations[-1].endswith(f"(no fix known; {advisory_server}/osv.json)")  # the token is not shown
    for secret in (f"{advisory_server}/missing.json?token=s3cret", advisory_server.replace("//", "//me:s3cret@")):
        with pytest.raises(InvalidInput) as hidden:
            check(PolicySpec(advisories=[secret]), image, DATA)
        assert "s3cret" not in str(hidden.value) and "cannot be read" in str(hidden.value)

    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text('"a string"')
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    events = [{"introduced": "0"}, {"fixed": "not a version"}]
    affected = [
        {"package": {"ecosystem": "Debian", "name": "sudo"}, "ranges": [{"type": "ECOSYSTEM", "events": events}]}
    ]
    bad_fix = {"id": "BAD-1", "affected": affected}
    (tmp_path / "bad-fix.json").write_text(json.dumps(bad_fix))
    tracker = {"sudo": {"CVE-1": {"releases": {"bookworm": {"status": "resolved", "fixed_version": "?"}}}}}
    (tmp_path / "bad-tracker.json").write_text(json.dumps(tracker))
    for source, reason in [
        ("deep.json", "is not JSON"),
        ("bad-fix.json", "BAD-1: Invalid version string 'not a version'"),
        ("bad-tracker.json", "CVE-1 of sudo: Invalid version string '?'"),
        (f"{advisory_server}/missing.json", "cannot be read: HTTP Error 404"),
        ("broken.json", "is not JSON"),
        ("other.json", "is neither OSV JSON nor Debian's security tracker export"),
        ("nowhere.json", "cannot be read: [Errno 2] No such file or directory"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            check(PolicySpec(advisories=[source]), image, tmp_path)
        assert str(raised.value).startswith(f"policy.advisories ({source}): {reason}")
        assert "\n" not in str(raised.value)

    no_release = Inventory(image.kind, image.packages, {})
    with pytest.raises(InvalidInput, match=r"^policy.release: .* say which release the image is"):
        check(PolicySpec(advisories=["debian-tracker.json"]), no_release, DATA)


def test_an_advisory_url_dripping_its_answer_is_cut_off_at_the_deadline(tmp_path: Path) -> None:
    """Every read of a server sending a byte at a time is within the socket's timeout: the whole
    download still ends at its deadline, one line naming the source (milestone 90 does not hang)."""
    import time

    from airflow_provider_imagebuild.sbom.advisories import read_source

    stop = threading.Event()

    class Drip(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "400")
            self.end_headers()
            for _ in range(400):
                if stop.is_set():
                    return
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.05)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        started = time.monotonic()
        url = f"http://127.0.0.1:{server.server_address[1]}/osv.json?token=s3cret"
        with pytest.raises(InvalidInput, match="did not finish within 1s") as refused:
            read_source(url, tmp_path, deadline_s=1)
        assert time.monotonic() - started < 4 and "s3cret" not in str(refused.value)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
