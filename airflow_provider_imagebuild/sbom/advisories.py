"""Known vulnerabilities from a file the team provides: nothing is downloaded unless it says where.

Two formats, told apart by their shape:

- OSV (https://ossf.github.io/osv-schema/): one advisory object, a list of them, or an object with a
  ``vulns`` list (what OSV's query API answers). An advisory affects an installed package whose
  name is an ``affected[].package.name`` (binary or source package) of the image's ecosystem family
  (Debian and Ubuntu for dpkg; Red Hat, AlmaLinux, Rocky Linux, SUSE, openSUSE for RPM), when its
  version is listed in ``versions`` or falls in an ``ECOSYSTEM`` range (``introduced`` <= v <
  ``fixed``, or <= ``last_affected``), ordered as the package manager orders them.
- Debian's security tracker export (``https://security-tracker.debian.org/tracker/data/json``):
  source package -> CVE -> ``releases`` -> release codename -> ``status`` and ``fixed_version``.
  The image's release is the policy's ``release`` or its ``/etc/os-release`` ``VERSION_CODENAME``;
  an entry is a finding when it is ``open`` (or ``undetermined``) or the installed version is older
  than ``fixed_version``.

A source is a path (relative to the spec's folder) or an ``http(s)://`` URL, read with a time limit
and a size limit. Every problem with a source is one line naming it; a source that cannot be read
fails the check rather than passing it silently.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.sbom.inventory import DPKG, Inventory, Package
from airflow_provider_imagebuild.sbom.versions import compare

MAX_BYTES = 256 << 20  # the whole Debian tracker export is ~60 MB
URL_TIMEOUT_S = 60  # one read
URL_DEADLINE_S = 900  # the whole download (the tracker's ~60 MB on a slow link), then milestone 90 fails
ECOSYSTEMS = {
    DPKG: ("debian", "ubuntu"),
    "rpm": ("red hat", "redhat", "almalinux", "rocky linux", "suse", "opensuse"),
}


@dataclass(frozen=True)
class Finding:
    advisory: str  # CVE-2024-..., DSA-..., GHSA-...
    package: str
    installed: str
    fixed: str  # "" when no fixed version is known
    source: str  # which advisory file said so

    def describe(self) -> str:
        fix = f"fixed in {self.fixed}" if self.fixed else "no fix known"
        return f"{self.advisory}: {self.package} {self.installed} is affected ({fix}; {self.source})"


def shown(source: str) -> str:
    """A source as messages name it: a URL without its userinfo, query or fragment (a token)."""
    from airflow_provider_imagebuild.store.url import shown_url

    return shown_url(source) if source.startswith(("http://", "https://")) else source


def _download(url: str, deadline_s: float) -> bytes:
    """At most ``MAX_BYTES + 1`` bytes of ``url`` within ``deadline_s`` in all: the socket's timeout
    bounds one read only, and a server dripping a byte at a time never trips it."""
    deadline = time.monotonic() + deadline_s
    parts: list[bytes] = []
    size = 0
    with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as answer:  # the team's URL
        while size <= MAX_BYTES and (chunk := answer.read1(min(1 << 20, MAX_BYTES + 1 - size))):
            parts.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(f"did not finish within {deadline_s:g}s")
    return b"".join(parts)


def read_source(source: str, base: Path, deadline_s: float = URL_DEADLINE_S) -> Any:
    """The JSON of an advisory source (a path under ``base`` unless absolute, or a URL, read within
    ``deadline_s``)."""
    field = f"policy.advisories ({shown(source)})"
    try:
        if source.startswith(("http://", "https://")):
            raw = _download(source, deadline_s)
        else:
            path = (base / source).resolve()
            with open(path, "rb") as f:
                raw = f.read(MAX_BYTES + 1)
    except OSError as exc:  # URLError, HTTPError and timeouts are OSErrors too
        raise InvalidInput(field, f"cannot be read: {str(exc).replace(source, shown(source))}") from None
    if len(raw) > MAX_BYTES:
        raise InvalidInput(field, f"is larger than {MAX_BYTES >> 20} MB")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # nested past Python's limit: not an advisory file either
        raise InvalidInput(field, f"is not JSON: {str(exc)[:200]}") from None


def findings(inventory: Inventory, data: Any, source: str, release: str = "") -> list[Finding]:
    """The installed packages ``data`` (one source's JSON) says are vulnerable."""
    source = shown(source)
    if isinstance(data, dict) and isinstance(data.get("vulns"), list):
        data = data["vulns"]
    if isinstance(data, dict) and ("affected" in data or "schema_version" in data):
        data = [data]
    if isinstance(data, list):
        return [f for advisory in data if isinstance(advisory, dict) for f in _osv(inventory, advisory, source)]
    if isinstance(data, dict):
        codename = release or inventory.os_release.get("VERSION_CODENAME", "")
        if not codename:
            raise InvalidInput(
                "policy.release", f"{source} is Debian's tracker export: say which release the image is (bookworm...)"
            )
        return list(_debian_tracker(inventory, data, source, codename))
    raise InvalidInput(f"policy.advisories ({source})", "is neither OSV JSON nor Debian's security tracker export")


def _by_name(inventory: Inventory) -> dict[str, list[Package]]:
    """Installed packages by their name and by their source package's name."""
    found: dict[str, list[Package]] = {}
    for package in inventory.packages:
        found.setdefault(package.name, []).append(package)
        if package.source:
            found.setdefault(package.source, []).append(package)
    return found


def _osv(inventory: Inventory, advisory: dict[str, Any], source: str) -> Iterator[Finding]:
    ident = str(advisory.get("id", "?"))[:100]
    if advisory.get("withdrawn"):
        return
    families = ECOSYSTEMS.get(inventory.kind, ())
    installed = _by_name(inventory)
    seen: set[tuple[str, str]] = set()
    for affected in advisory.get("affected") or []:
        if not isinstance(affected, dict):
            continue
        package = affected.get("package") or {}
        ecosystem = str(package.get("ecosystem", "")).split(":")[0].strip().lower()
        if ecosystem not in families:
            continue
        for candidate in installed.get(str(package.get("name", "")), []):
            try:
                hit, fixed = _osv_affects(inventory.kind, candidate.version, affected)
            except ValueError as exc:  # a version no package manager writes: the file is wrong, not the image
                raise InvalidInput(f"policy.advisories ({source})", f"{ident}: {str(exc)[:200]}") from None
            if hit and (candidate.name, candidate.arch) not in seen:
                seen.add((candidate.name, candidate.arch))
                yield Finding(ident, candidate.name, candidate.version, fixed, source)


def _osv_affects(kind: str, version: str, affected: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``version`` is in the affected entry, and the fixed version of the range it is in."""
    if version in (affected.get("versions") or []):
        return True, ""
    for rng in affected.get("ranges") or []:
        if not isinstance(rng, dict) or rng.get("type") != "ECOSYSTEM":
            continue
        inside, fixed = False, ""
        for event in rng.get("events") or []:
            if not isinstance(event, dict):
                continue
            if "introduced" in event:
                start = str(event["introduced"])
                inside = start == "0" or compare(version, start, kind) >= 0
                fixed = ""
            elif "fixed" in event and inside:
                if compare(version, str(event["fixed"]), kind) < 0:
                    return True, str(event["fixed"])
                inside = False
            elif "last_affected" in event and inside:
                if compare(version, str(event["last_affected"]), kind) <= 0:
                    return True, ""
                inside = False
        if inside:
            return True, fixed
    return False, ""


def _debian_tracker(inventory: Inventory, data: dict[str, Any], source: str, release: str) -> Iterator[Finding]:
    installed = _by_name(inventory)
    for name, issues in data.items():
        if name not in installed or not isinstance(issues, dict):
            continue
        for ident, issue in issues.items():
            state = ((issue or {}).get("releases") or {}).get(release) if isinstance(issue, dict) else None
            if not isinstance(state, dict):
                continue
            status = str(state.get("status", ""))
            fixed = str(state.get("fixed_version") or "")
            if status == "not-affected" or fixed == "0":
                continue
            for package in _distinct(installed[name]):
                if status in ("open", "undetermined") and not fixed:
                    yield Finding(str(ident)[:100], package.name, package.version, "", source)
                elif fixed and _older(package.version, fixed, f"{str(ident)[:100]} of {name}", source):
                    yield Finding(str(ident)[:100], package.name, package.version, fixed, source)


def _older(installed: str, fixed: str, what: str, source: str) -> bool:
    try:
        return compare(installed, fixed, DPKG) < 0
    except ValueError as exc:  # a fixed_version no package manager writes: the file is wrong
        raise InvalidInput(f"policy.advisories ({source})", f"{what}: {str(exc)[:200]}") from None


def _distinct(packages: Iterable[Package]) -> list[Package]:
    seen: dict[tuple[str, str], Package] = {}
    for package in packages:
        seen.setdefault((package.name, package.arch), package)
    return list(seen.values())
