"""A spec's ``policy:`` block: the team's rules for what an image may ship with (#33).

::

    policy:
      require: [openssh-server, sudo]          # must be installed (shell-style patterns: "linux-image-*")
      forbid: [telnetd, rsh-server, "nis*"]    # must not be installed
      versions: ["openssl >= 3.0.15"]          # floors, in the image's own version ordering (dpkg or rpm)
      licenses: [GPL-2, GPL-2+, "BSD-*", MIT]  # allow-list (every license a package declares); absent: not checked
      unlicensed: allow                        # a package that declares none: allow (default) or deny
      advisories: [advisories/osv.json]        # OSV JSON or Debian's tracker export; a path beside the spec or a URL
      ignore: [CVE-2024-0001]                  # advisories the team accepted
      release: bookworm                        # Debian's tracker: the image's release (default: its os-release)

Checked at milestone 90 (final validation) against the build host's package database, after the
milestone's own playbook; the seal (95) checks it again against its bill of materials if the
packages changed since. A violation fails the milestone with the list, as a persistent failure
(not retried). Offline by design: nothing is downloaded unless ``advisories`` names a URL.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

PATTERN_RE = re.compile(r"[A-Za-z0-9*?\[\]][A-Za-z0-9+._~:*?\[\]-]{0,199}")
FLOOR_RE = re.compile(
    r"\s*([A-Za-z0-9][A-Za-z0-9+._:-]{0,199})\s*(>=|>)\s*((?:\d+:)?[A-Za-z0-9][A-Za-z0-9.+~^_:-]{0,199})\s*"
)


def _pattern(value: str) -> str:
    if not PATTERN_RE.fullmatch(value):
        raise ValueError(f"{value[:60]!r} is not a package name or pattern (letters, digits, + . _ ~ : - and * ? [])")
    return value


def _floor(value: str) -> str:
    if not FLOOR_RE.fullmatch(value):
        raise ValueError(f"{value[:60]!r} is not a version floor like 'openssl >= 3.0.15' (operators: >=, >)")
    return value


def parse_floor(value: str) -> tuple[str, str, str]:
    """``openssl >= 3.0.15`` as (name, operator, version); the model checked it already."""
    found = FLOOR_RE.fullmatch(value)
    assert found is not None
    return found.group(1), found.group(2), found.group(3)


PackagePattern = Annotated[str, AfterValidator(_pattern)]
VersionFloor = Annotated[str, AfterValidator(_floor)]
LicenseName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\n\r]+$")]
AdvisorySource = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^\S+$")]
AdvisoryId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")]


class PolicySpec(BaseModel):
    """The rules an image's packages must keep (every list optional; an empty block checks nothing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require: list[PackagePattern] = Field(
        default_factory=list, max_length=1000, description="Packages that must be installed (names or patterns)."
    )
    forbid: list[PackagePattern] = Field(
        default_factory=list, max_length=1000, description="Packages that must not be installed (names or patterns)."
    )
    versions: list[VersionFloor] = Field(
        default_factory=list,
        max_length=1000,
        description="Version floors like 'openssl >= 3.0.15', compared as the image's package manager orders versions; "
        "a package that is not installed passes (list it under require too).",
    )
    licenses: list[LicenseName] | None = Field(
        default=None,
        max_length=1000,
        description="License allow-list (names as the image's package database gives them, patterns allowed, case "
        "ignored): every license a package declares must be on it; for 'A or B' one of them. Absent: not checked.",
    )
    unlicensed: Literal["allow", "deny"] = Field(
        default="allow", description="A package that declares no license when 'licenses' is given: allow or deny."
    )
    advisories: list[AdvisorySource] = Field(
        default_factory=list,
        max_length=20,
        description="Advisory files: OSV JSON or Debian's security tracker export, a path (relative to the spec's "
        "folder) or an http(s) URL. Nothing is downloaded unless a URL is given.",
    )
    ignore: list[AdvisoryId] = Field(
        default_factory=list, max_length=10000, description="Advisory ids the team has accepted (CVE-..., DSA-...)."
    )
    release: str = Field(
        default="",
        pattern=r"^[a-z0-9-]{0,40}$",
        description="The image's release for Debian's tracker export (bookworm...); default: its os-release.",
    )
