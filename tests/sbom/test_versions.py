"""Version ordering: Debian's as dpkg itself orders (a real ``dpkg --compare-versions`` per pair),
RPM's as rpm's own test suite (rpmvercmp.at) states it."""

from __future__ import annotations

import subprocess

import pytest

from airflow_provider_imagebuild.sbom.versions import compare, rpm_compare_evr, rpmvercmp, valid

DEBIAN_PAIRS = [
    ("3.0.9-1", "3.0.15"),  # a string comparison gets this one wrong
    ("3.0.15-1~deb12u1", "3.0.15-1"),
    ("3.0.15-1", "3.0.15-1+deb12u1"),
    ("1:1.0", "2.0"),
    ("1.9.13p3-1+deb12u1", "1.9.13p3-1+deb12u4"),
    ("1.0~rc1", "1.0"),
    ("2.30-1", "2.30-1"),
    ("6.1.176-1", "6.1.99-1"),
    ("1:9.2p1-2+deb12u10", "1:9.2p1-2+deb12u9"),
    ("0.17-44", "0.17-44+b1"),
]


@pytest.mark.parametrize(("a", "b"), DEBIAN_PAIRS)
def test_debian_ordering_is_dpkgs(a: str, b: str) -> None:
    def dpkg_says(op: str) -> bool:
        return subprocess.run(["dpkg", "--compare-versions", a, op, b], check=False).returncode == 0

    expected = -1 if dpkg_says("lt") else (1 if dpkg_says("gt") else 0)
    assert compare(a, b, "deb") == expected and compare(b, a, "deb") == -expected


# (a, b, rpmvercmp(a, b)) from rpm's tests/rpmvercmp.at
RPM_CASES = [
    ("1.0", "1.0", 0), ("1.0", "2.0", -1), ("2.0.1", "2.0", 1), ("5.5p1", "5.5p2", -1), ("5.5p10", "5.5p1", 1),
    ("10xyz", "10.1xyz", -1), ("xyz10", "xyz10.1", -1), ("1.0aa", "1.0a", 1), ("6.0.rc1", "6.0", 1),
    ("10b2", "10a1", 1), ("1.0~rc1", "1.0", -1), ("1.0~rc1", "1.0~rc2", -1), ("1.0~rc1~git123", "1.0~rc1", -1),
    ("1.0^", "1.0", 1), ("1.0^git1", "1.01", -1), ("1.0^20160101", "1.0.1", -1), ("1.0~rc1^git1", "1.0~rc1", 1),
    ("1.0^git1~pre", "1.0^git1", -1), ("2_0", "2.0", 0), ("1.0a", "1.0.1", -1),
]  # fmt: skip


@pytest.mark.parametrize(("a", "b", "expected"), RPM_CASES)
def test_rpm_ordering_is_rpmvercmps(a: str, b: str, expected: int) -> None:
    assert rpmvercmp(a, b) == expected and rpmvercmp(b, a) == -expected


def test_rpm_epoch_and_release() -> None:
    assert rpm_compare_evr("1:3.0.7-27.el9", "3.0.15-1.el9") == 1  # the epoch first
    assert rpm_compare_evr("3.0.7-27.el9", "3.0.7-25.el9") == 1
    assert rpm_compare_evr("3.0.7-27.el9", "3.0.7") == 0  # a floor without a release matches any
    assert compare("3.0.7-27.el9_4", "3.0.7-27.el9", "rpm") == 1


def test_what_no_package_manager_writes_is_not_a_version() -> None:
    assert valid("3.0.15", "deb") and not valid("three", "deb") and not valid("3.0 15", "rpm")
