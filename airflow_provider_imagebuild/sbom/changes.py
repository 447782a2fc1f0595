"""Which packages changed between two builds' bills of materials: what ``imagebuild build diff``
and a failure's notice can say ("openssl 3.0.15-1~deb12u1 -> 3.0.20-1~deb12u2, nginx removed")."""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_provider_imagebuild.sbom.cyclonedx import packages_of


@dataclass
class PackageChanges:
    added: list[tuple[str, str]] = field(default_factory=list)  # (name, version)
    removed: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (name, before, after)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def lines(self) -> list[str]:
        return (
            [f"{name} {old} -> {new}" for name, old, new in self.changed]
            + [f"{name} {version} added" for name, version in self.added]
            + [f"{name} {version} removed" for name, version in self.removed]
        )


def package_changes(before: str, after: str) -> PackageChanges:
    """The changes from the CycloneDX document ``before`` to ``after`` (package and architecture
    are one key: a multiarch library's i386 copy is its own package)."""
    old = {(name, arch): version for name, version, arch in packages_of(before)}
    new = {(name, arch): version for name, version, arch in packages_of(after)}
    found = PackageChanges()
    for key in sorted(old.keys() | new.keys()):
        name = key[0] if not key[1] or key[1] in ("all", "amd64", "x86_64", "noarch") else f"{key[0]}:{key[1]}"
        if key not in new:
            found.removed.append((name, old[key]))
        elif key not in old:
            found.added.append((name, new[key]))
        elif old[key] != new[key]:
            found.changed.append((name, old[key], new[key]))
    return found
