"""The spec's ``policy:`` checked against an inventory: every violation, one line each.

Pure but for the advisory sources it reads (:mod:`.advisories`). The list is complete (a person
fixing an image wants every problem at once, not one per try) and sorted by rule, then package.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_provider_imagebuild.sbom.advisories import findings, read_source
from airflow_provider_imagebuild.sbom.inventory import Inventory, Package
from airflow_provider_imagebuild.sbom.versions import compare, valid

if TYPE_CHECKING:
    from airflow_provider_imagebuild.spec.policy import PolicySpec

SHOWN = 30  # violations quoted in the failure's text; the log has all of them


@dataclass
class PolicyResult:
    violations: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # rule -> how many items it looked at

    @property
    def passed(self) -> bool:
        return not self.violations

    def message(self) -> str:
        """The failure's text: how many, and the first :data:`SHOWN`."""
        shown = "; ".join(self.violations[:SHOWN])
        more = f"; and {len(self.violations) - SHOWN} more" if len(self.violations) > SHOWN else ""
        return f"policy violation ({len(self.violations)}): {shown}{more}"


def _matches(pattern: str, name: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern)


def check(policy: PolicySpec, inventory: Inventory, base: Path) -> PolicyResult:
    """Every rule of ``policy`` over ``inventory``; advisory paths are relative to ``base``."""
    from airflow_provider_imagebuild.spec.policy import parse_floor

    result = PolicyResult()
    names = sorted({p.name for p in inventory.packages})
    for pattern in policy.require:
        if not any(_matches(pattern, name) for name in names):
            result.violations.append(f"required package {pattern} is not installed")
    for pattern in policy.forbid:
        for package in inventory.packages:
            if _matches(pattern, package.name):
                result.violations.append(f"forbidden package {package.name} {package.version} is installed")
    for floor in policy.versions:
        name, operator, minimum = parse_floor(floor)
        if not valid(minimum, inventory.kind):
            result.violations.append(f"version floor {floor!r}: {minimum} is not a {inventory.kind} version")
            continue
        for package in inventory.named(name):
            order = compare(package.version, minimum, inventory.kind)
            if order < 0 or (operator == ">" and order == 0):
                result.violations.append(
                    f"{package.name} {package.version} is older than the floor {operator} {minimum}"
                )
    if policy.licenses is not None:
        allowed = [a.lower() for a in policy.licenses]
        for package in inventory.packages:
            result.violations.extend(_license_problems(package, allowed, policy.unlicensed == "deny"))
    ignored = set(policy.ignore)
    for source in policy.advisories:
        for finding in findings(inventory, read_source(source, base), source, policy.release):
            if finding.advisory not in ignored:
                result.violations.append(finding.describe())
    result.checked = {
        "packages": len(inventory.packages),
        "require": len(policy.require),
        "forbid": len(policy.forbid),
        "versions": len(policy.versions),
        "licenses": len(inventory.packages) if policy.licenses is not None else 0,
        "advisories": len(policy.advisories),
    }
    return result


def _license_allowed(name: str, allowed: list[str]) -> bool:
    """``A or B``: one alternative allowed; ``A and B`` (or ``A, B``): each; else the name itself."""
    alternatives = re.split(r"\s+or\s+|\s*\|\s*", name.strip(), flags=re.IGNORECASE)
    for alternative in alternatives:
        parts = re.split(r"\s+and\s+|\s*,\s*|\s*&\s*", alternative.strip("() "), flags=re.IGNORECASE)
        if all(any(fnmatch.fnmatchcase(part.strip("() ").lower(), a) for a in allowed) for part in parts if part):
            return True
    return False


def _license_problems(package: Package, allowed: list[str], deny_unlicensed: bool) -> list[str]:
    if not package.licenses:
        return [f"{package.name} {package.version} declares no license (policy.unlicensed: deny)"] * deny_unlicensed
    refused = [name for name in package.licenses if not _license_allowed(name, allowed)]
    if not refused:
        return []
    return [f"{package.name} {package.version}: license {', '.join(refused)} is not on the allow-list"]
