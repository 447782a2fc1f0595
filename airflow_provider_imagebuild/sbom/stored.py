"""A build's bill of materials as its record points at it: found, read and proven.

The record holds the seal's outputs (``sbom_file``, ``sbom_sha256``, ``sbom_packages``), never the
document: the document is a file beside the image (and its copies in the catalog). Anyone who can
write the store can write those outputs, so a reader (``imagebuild build sbom``, the build page)
shows a file only when its name is this build's bill of materials' (:func:`own_names`), its SHA-256 is the one
recorded and it is a CycloneDX document: a hand-written path (``/etc/shadow``) is never printed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput, NotFound

MAX_BYTES = 256 << 20


@dataclass(frozen=True)
class SbomRef:
    milestone: int
    path: str
    sha256: str
    packages: int | None


def sbom_of(build: BuildRecord) -> SbomRef | None:
    """The latest completed milestone's bill of materials (the seal's), None when there is none."""
    for code in sorted(build.completed, reverse=True):
        outputs = build.milestones[code].outputs
        if outputs.get("sbom_file"):
            count = outputs.get("sbom_packages")
            return SbomRef(
                code,
                str(outputs["sbom_file"]),
                str(outputs.get("sbom_sha256") or ""),
                count if isinstance(count, int) and not isinstance(count, bool) else None,
            )
    return None


def copies_of(build: BuildRecord) -> list[str]:
    """Where publish copied the document (the local catalog's ``catalog_sbom``, as the target's
    own output or a ``catalog`` destination's): read when the seal's file is gone (the work folder
    cleaned after delivery)."""
    found: list[str] = []
    for code in sorted(build.completed, reverse=True):
        outputs = build.milestones[code].outputs
        places = [outputs, *(d for d in (outputs.get("destinations") or {}).values() if isinstance(d, dict))]
        found += [str(p["catalog_sbom"]) for p in places if isinstance(p, dict) and p.get("catalog_sbom")]
    return found


def own_names(build: BuildRecord) -> tuple[str, str]:
    """The names a build's document has wherever the provider writes it: ``<build id>.cdx.json``
    (a cloud target's work folder) and ``<pipeline>-<build id>.cdx.json`` (beside the local image,
    and its catalog copy). Another build's document, even with its right digest (published images
    are tagged with it), is not this build's: whoever writes one build's record cannot have the
    page or the API serve another pipeline's under it."""
    return f"{build.build_id}.cdx.json", f"{build.pipeline}-{build.build_id}.cdx.json"


def reused_names(build: BuildRecord, milestone: int) -> tuple[str, ...]:
    """Where the seal's result was taken from an earlier build of the pipeline (#32: nothing changed,
    the image delivered again), that build's document is this build's too: the pipeline-qualified
    name only (``<pipeline>-<source>.cdx.json``, beside the local image and in the catalog), so that
    a forged ``reused_from`` can name no other pipeline's file; the digest is proven all the same."""
    attempt = build.completed_attempt(milestone)
    if attempt is None or attempt.kind != "reused" or not attempt.reused_from:
        return ()
    return (f"{build.pipeline}-{attempt.reused_from['build_id']}.cdx.json",)


def read_sbom(build: BuildRecord) -> tuple[SbomRef, str]:
    """The reference and the document's text (the seal's file, else a published copy), proven as
    the module says."""
    ref = sbom_of(build)
    if ref is None:
        raise NotFound(f"build {build.build_id} has no bill of materials (it is written by the seal, milestone 95)")
    field = f"milestones.{ref.milestone}.outputs.sbom_file"
    for candidate in [ref.path, *copies_of(build)]:
        path = Path(candidate)
        if not path.is_absolute() or not path.name.endswith(".cdx.json") or ".." in path.parts:
            raise InvalidInput(field, f"{candidate!r} is not a bill of materials file (*.cdx.json)")
        if path.is_file():
            if path.name not in own_names(build) + reused_names(build, ref.milestone):
                raise InvalidInput(field, f"{candidate!r} is not build {build.build_id}'s bill of materials")
            return SbomRef(ref.milestone, candidate, ref.sha256, ref.packages), _proven(path, ref, field)
    raise NotFound(f"{ref.path} is not on this machine (it is kept on the worker that sealed the build)")


def _proven(path: Path, ref: SbomRef, field: str) -> str:
    with open(path, "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES or hashlib.sha256(raw).hexdigest() != ref.sha256:
        raise InvalidInput(field, f"{path} is not the document the seal recorded (its SHA-256 differs)")
    text = raw.decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):  # nested past Python's limit: no document the seal writes
        doc = None
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise InvalidInput(field, f"{path} is not a CycloneDX document")
    return text


def sbom_summary(build: BuildRecord) -> dict[str, object] | None:
    """What the build page shows of the bill of materials, from the record alone (the document may
    be on another worker's disk): the seal's package count, kernel and digest; the page links to
    ``/api/builds/<id>/sbom``, which serves the document once proven."""
    ref = sbom_of(build)
    if ref is None:
        return None
    outputs = build.milestones[ref.milestone].outputs
    return {
        "milestone": ref.milestone,
        "packages": ref.packages,
        "kernel": str(outputs.get("sbom_kernel") or ""),
        "format": str(outputs.get("sbom_format") or "CycloneDX"),
        "sha256": ref.sha256,
        "file": ref.path,
    }
