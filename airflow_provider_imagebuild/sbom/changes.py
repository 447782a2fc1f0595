"""Which packages changed between two builds' bills of materials: what ``imagebuild build diff``
and a failure's notice can say ("openssl 3.0.15-1~deb12u1 -> 3.0.20-1~deb12u2, nginx removed")."""

from __future__ import annotations

from dataclasses import dataclass, field

from airflow_provider_imagebuild.build.changes import add_change_source
from airflow_provider_imagebuild.build.fingerprint import InputChange
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput, NotFound
from airflow_provider_imagebuild.sbom.cyclonedx import packages_of
from airflow_provider_imagebuild.sbom.inventory import CONTROL
from airflow_provider_imagebuild.sbom.stored import read_sbom, sbom_of


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


UNKNOWN = "unknown"
MAX_WORD = 128


def package_rows(before: BuildRecord, after: BuildRecord, code: int) -> list[InputChange]:
    """The package changes between two builds, as rows of their diff at the milestone that wrote
    ``after``'s bill of materials (the seal): a :func:`build.changes.add_change_source` source, so
    ``imagebuild build diff``, a failure's notice and the failed build's page name them.

    Equal ``packages_sha256`` means no package changed, said without reading a file; a document
    that cannot be read here (kept on the worker that sealed it, or not the one recorded) is one
    ``packages unknown`` row, never a failure: the rest of the diff still stands."""
    old, new = sbom_of(before), sbom_of(after)
    if old is None or new is None or new.milestone != code:
        return []
    old_digest = before.milestones[old.milestone].outputs.get("packages_sha256")
    new_digest = after.milestones[new.milestone].outputs.get("packages_sha256")
    if old_digest and old_digest == new_digest:
        return []
    try:
        found = package_changes(read_sbom(before)[1], read_sbom(after)[1])
    except NotFound:
        return [InputChange("packages", "packages", UNKNOWN, "a bill of materials is on another worker's disk")]
    except InvalidInput as e:
        return [InputChange("packages", "packages", UNKNOWN, f"{e.field}: {e.reason}")]
    except (ValueError, AttributeError, TypeError, RecursionError) as e:  # proven by digest, yet not the seal's
        return [
            InputChange(
                "packages",
                "packages",
                UNKNOWN,
                f"a bill of materials lists no readable packages ({CONTROL.sub('', str(e))})"[:200],
            )
        ]

    def word(value: str) -> str:  # a hand-made document's escape never reaches a terminal or a notice
        return CONTROL.sub("", value)[:MAX_WORD]

    return (
        [
            InputChange(f"package:{word(name)}", "package", word(old_v), word(new_v))
            for name, old_v, new_v in found.changed
        ]
        + [InputChange(f"package:{word(name)}", "package", None, word(version)) for name, version in found.added]
        + [InputChange(f"package:{word(name)}", "package", word(version), None) for name, version in found.removed]
    )


add_change_source(package_rows)
