"""Milestone fingerprints: one SHA-256 over everything that decides what a milestone produces.

A milestone's inputs are named components (``spec``, ``file:../ansible/15-base-config.yml``,
``var:http_port``, ``tool:ansible-core``, ``watch:debian_mirror``, ``source_image``,
``previous``...). The fingerprint is the SHA-256 of a canonical JSON of the components' full
digests and of the previous milestone's fingerprint, so a milestone's fingerprint changes when
anything before it changes (a chain): a build may reuse another build's checkpoint at milestone N
only when their fingerprints at N are equal, which then holds for every milestone up to N.

What is recorded beside the fingerprint is each component's *display* value (:class:`Inputs`):
short enough to keep in every completed attempt, and chosen so that ``imagebuild build diff`` can
say what changed: a file's git blob id (so that the diff can show the two contents from the
checkout's git history), a version or an image id as it is, a variable's value only as a short
digest (a variable may be a secret). The fingerprint never depends on the display values.

Everything here is plain data: paths are the spec's relative paths (never the checkout's absolute
one), no modification times, bytes as stored, so that two checkouts of the same commit on two
machines compute the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.errors import InvalidInput

# A stored ``inputs`` map is bounded: at most this many components (files past it are folded into
# their folders: :func:`folded`), names and values of bounded length, printable ASCII-safe names.
MAX_INPUTS = 400
MAX_INPUT_NAME = 300
MAX_INPUT_VALUE = 128
FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
_SAFE_VALUE_RE = re.compile(rf"[A-Za-z0-9._:/@+=-]{{1,{MAX_INPUT_VALUE}}}")
_NAME_RE = re.compile(rf"[A-Za-z0-9._:/@+=~ -]{{1,{MAX_INPUT_NAME}}}")

# Component name prefixes, read by the diff to say what kind of input changed.
FILE = "file:"
FOLDER = "folder:"
VAR = "var:"
ENV = "env:"
TOOL = "tool:"
WATCH = "watch:"
PREVIOUS = "previous"
SECRET = "secret"  # what is recorded for a secret-named variable: no digest at all
SOURCE_IMAGE = "source_image"


def canonical_json(value: Any) -> bytes:
    """The one byte string a value hashes as: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def value_digest(value: Any) -> str:
    """The digest of a JSON-able value (a variable, a spec entry)."""
    return sha256_hex(canonical_json(value))


def git_blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes (``git hash-object``): recorded for files so that
    the diff can read both versions back from the checkout's history (``git cat-file``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def shown(value: str) -> str:
    """What is recorded for a value: itself when it is short and plain (a version, an image id, a
    checksum), else a 16-hex prefix of its digest."""
    return value if _SAFE_VALUE_RE.fullmatch(value) else sha256_hex(value.encode())[:16]


@dataclass(frozen=True)
class Component:
    """One input: ``digest`` enters the fingerprint, ``display`` is what the record keeps."""

    name: str
    digest: str
    display: str


def file_component(name: str, data: bytes) -> Component:
    return Component(f"{FILE}{name}", sha256_hex(data), git_blob_id(data))


def value_component(name: str, value: Any) -> Component:
    """A JSON-able value recorded by digest only (variables, spec entries). A variable whose name
    says it is a secret (``db_password``: redact's ``is_secret_key``) is not even recorded by digest:
    a short digest of a short password can be looked up; it enters the fingerprint only."""
    from airflow_provider_imagebuild.redact.patterns import is_secret_key

    digest = value_digest(value)
    secret = name.startswith((VAR, ENV)) and is_secret_key(name.split(":", 1)[1])
    return Component(name, digest, SECRET if secret else digest[:16])


def plain_component(name: str, value: str) -> Component:
    """A value that is no secret (a version, an image id, a checksum): recorded as it is when short."""
    return Component(name, sha256_hex(value.encode()), shown(value))


@dataclass(frozen=True)
class MilestoneFingerprint:
    """A milestone's fingerprint and its inputs' display values (what the attempt records)."""

    code: int
    fingerprint: str
    inputs: dict[str, str] = field(default_factory=dict)


def fingerprint_of(components: Iterable[Component], previous: str | None) -> str:
    """The SHA-256 over the components' full digests and the previous milestone's fingerprint."""
    doc = {"components": {c.name: c.digest for c in components}, PREVIOUS: previous or ""}
    return sha256_hex(canonical_json(doc))


def folded(components: list[Component], limit: int = MAX_INPUTS) -> list[Component]:
    """At most ``limit`` components: past it, the files of the deepest folders are folded into one
    ``folder:`` component each (its digest over its files' digests), until they fit. The
    fingerprint is computed from the unfolded list; only what is recorded is folded."""
    found = list(components)
    while len(found) > limit:
        files = [c for c in found if c.name.startswith((FILE, FOLDER))]
        if not files:
            break
        deepest = max(files, key=lambda c: c.name.split(":", 1)[1].count("/"))
        rel = deepest.name.split(":", 1)[1]
        parent = rel.rsplit("/", 1)[0] if "/" in rel else "."
        inside = [c for c in files if _folder_of(c) == parent]
        if len(inside) < 2 and parent == ".":
            break
        kept = [c for c in found if c not in inside]
        digest = value_digest({c.name: c.digest for c in inside})
        name = f"{FOLDER}{parent}"
        found = [*kept, Component(name, digest, digest[:16])]
    return found


def _folder_of(component: Component) -> str:
    rel = component.name.split(":", 1)[1]
    return rel.rsplit("/", 1)[0] if "/" in rel else "."


def milestone_fingerprint(code: int, components: list[Component], previous: str | None) -> MilestoneFingerprint:
    """The fingerprint of milestone ``code`` from its components, chained on ``previous``."""
    names = [c.name for c in components]
    if len(set(names)) != len(names):
        raise ValueError(f"milestone {code}: an input is named twice")  # a bug of the caller, not input
    fp = fingerprint_of(components, previous)
    inputs = {c.name: c.display for c in folded(sorted(components, key=lambda c: c.name))}
    inputs[PREVIOUS] = previous or ""
    return MilestoneFingerprint(code, fp, inputs)


def check_fingerprint(value: object, field_name: str) -> str:
    """A recorded fingerprint: 64 lowercase hex digits."""
    if isinstance(value, str) and FINGERPRINT_RE.fullmatch(value):
        return value
    raise InvalidInput(field_name, "must be a SHA-256 fingerprint (64 lowercase hex digits)")


def check_inputs(value: object, field_name: str) -> dict[str, str]:
    """A recorded ``inputs`` map: at most :data:`MAX_INPUTS` (+1, ``previous``) names of bounded
    length, each with a short display value. Names are spec-relative paths and component names, so
    a record written by hand cannot smuggle control characters or a page's markup through them."""
    if not isinstance(value, Mapping):
        raise InvalidInput(field_name, "must be a mapping of input name to digest")
    if len(value) > MAX_INPUTS + 1:
        raise InvalidInput(field_name, f"must name at most {MAX_INPUTS} inputs")
    checked: dict[str, str] = {}
    for name, digest in value.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise InvalidInput(field_name, "input names must be printable paths or names of at most 300 characters")
        if not isinstance(digest, str) or not (digest == "" or _SAFE_VALUE_RE.fullmatch(digest)):
            raise InvalidInput(f"{field_name}.{name}", "must be a short digest, version or id")
        checked[name] = digest
    return checked


# -- what changed --------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputChange:
    """One input that differs between two milestones: ``before``/``after`` None where absent."""

    name: str
    kind: str  # file, folder, variable, environment, tool, watch, source_image, spec, previous, ...
    before: str | None
    after: str | None

    def to_public(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "before": self.before, "after": self.after}


def kind_of(name: str) -> str:
    for prefix, kind in (
        (FILE, "file"),
        (FOLDER, "folder"),
        (VAR, "variable"),
        (ENV, "environment"),
        (TOOL, "tool"),
        (WATCH, "watch"),
    ):
        if name.startswith(prefix):
            return kind
    return name  # spec, target, publish, pipeline, source_image, previous


def changed_inputs(before: Mapping[str, str] | None, after: Mapping[str, str] | None) -> list[InputChange]:
    """The inputs that differ, named; ``previous`` last (it only says an earlier milestone changed)."""
    old, new = dict(before or {}), dict(after or {})
    changes = [
        InputChange(name, kind_of(name), old.get(name), new.get(name))
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]
    return sorted(changes, key=lambda c: (c.name == PREVIOUS, c.name))


def relative_name(path: Path, base: Path) -> str:
    """A file's name as the fingerprint knows it: relative to the spec's folder, with ``/``, ``..``
    where it lies outside (a checkout's layout is the same everywhere, its absolute path is not)."""
    import os

    return Path(os.path.relpath(path, base)).as_posix()
