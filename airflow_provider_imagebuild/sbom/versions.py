"""Version ordering as the image's package manager sees it.

Debian: python-debian's :class:`~debian.debian_support.Version` (epoch, upstream, revision, ``~``
before anything: ``3.0.15-1~deb12u1 < 3.0.15-1``). RPM: ``rpmvercmp`` (alternating digit and
letter segments, digits newer than letters, ``~`` older and ``^`` newer than the end) with the
epoch and release compared as ``rpm -q --whatprovides`` would. A plain string comparison orders
``3.0.9`` after ``3.0.15``: a version floor checked that way lets an old OpenSSL through.
"""

from __future__ import annotations

import re

from debian.debian_support import Version

from airflow_provider_imagebuild.sbom.inventory import DPKG


def compare(a: str, b: str, kind: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b``."""
    if kind == DPKG:
        left, right = Version(a), Version(b)
        return (left > right) - (left < right)
    return rpm_compare_evr(a, b)


def valid(version: str, kind: str) -> bool:
    """Whether ``version`` is one the package manager could have written."""
    if kind == DPKG:
        try:
            Version(version)
        except ValueError:
            return False
        return bool(re.fullmatch(r"(\d+:)?[0-9][A-Za-z0-9.+~:-]*", version))
    return bool(re.fullmatch(r"(\d+:)?[A-Za-z0-9._+~^-]+", version))


def _split_evr(value: str) -> tuple[int, str, str]:
    epoch, sep, rest = value.partition(":")
    if not sep or not epoch.isdigit():
        epoch, rest = "0", value
    version, _, release = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch), version, release


def rpm_compare_evr(a: str, b: str) -> int:
    """``[epoch:]version[-release]`` ordering: a side without a release matches any release."""
    ea, va, ra = _split_evr(a)
    eb, vb, rb = _split_evr(b)
    if ea != eb:
        return (ea > eb) - (ea < eb)
    found = rpmvercmp(va, vb)
    if found or not ra or not rb:
        return found
    return rpmvercmp(ra, rb)


_SEGMENT = re.compile(r"(~|\^|[0-9]+|[A-Za-z]+)")


def rpmvercmp(a: str, b: str) -> int:
    """RPM's segment-wise comparison of one version or release string."""
    if a == b:
        return 0
    sa, sb = _SEGMENT.findall(a), _SEGMENT.findall(b)
    for x, y in zip(sa, sb, strict=False):
        if x != y and "~" in (x, y):  # a tilde is older than anything
            return -1 if x == "~" else 1
        if x != y and "^" in (x, y):  # a caret is older than anything but a tilde and the end
            return -1 if x == "^" else 1
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        if x.isdigit():
            xi, yi = int(x), int(y)
            if xi != yi:
                return (xi > yi) - (xi < yi)
        elif x != y:
            return (x > y) - (x < y)
    rest_a, rest_b = sa[len(sb) :], sb[len(sa) :]
    if not rest_a and not rest_b:
        return 0
    rest = rest_a or rest_b
    sign = 1 if rest_a else -1
    if rest[0] == "~":
        return -sign  # 1.0~rc1 < 1.0
    if rest[0] == "^":
        return sign  # 1.0^post > 1.0
    return sign
