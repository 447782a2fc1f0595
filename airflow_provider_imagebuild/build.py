"""Validation of everything that names or describes a build, before anything is written.

Build ids end up in file names, S3 keys, DynamoDB keys, DAG run ids and shell variables, so
they are held to a strict pattern; the other checks exist so that every error names the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.milestone import validate_plan
from airflow_provider_imagebuild.redact import is_secret_key

# Patterns are matched whole (``fullmatch``: ``$`` would accept a trailing newline) and ASCII only
# (``\d`` and ``isdigit`` accept other scripts' digits).
BUILD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}", re.ASCII)
CLOUDS = ("aws", "azure", "gcp", "openstack", "vsphere", "local")

MAX_OWNER = 256
MAX_ERROR = 8000
MAX_REASON = 2000
MAX_VALUE = 4000
MAX_LEASE_SECONDS = 7 * 24 * 3600
MAX_OUTPUTS_BYTES = 16_000  # one milestone's outputs, as stored JSON
MAX_METADATA_BYTES = 16_000  # a build's metadata, as stored JSON

# Metadata that targets rely on (the build host, what Packer kept): written only by a milestone
# holding the build's lease, never by ``create --meta`` or an unleased ``set_metadata``.
RESERVED_METADATA_PREFIXES = ("host_",)
RESERVED_METADATA_KEYS = frozenset({"packer_kept_instance"})

# C0 controls but tab and newline, DEL, C1 controls, line/paragraph separators and the bidi
# overrides that make text display differently from what it is ("trojan source").
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def matches(pattern: re.Pattern[str], value: object) -> bool:
    """Whether ``value`` is a string that ``pattern`` matches as a whole."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def control_character(text: str) -> str | None:
    """The first control character of ``text`` (as ``\\xNN`` / ``\\uNNNN``), or None."""
    found = _CONTROL_RE.search(text)
    if found is None:
        return None
    return ascii(found.group(0))[1:-1]


def without_controls(text: str) -> str:
    """``text`` with control characters shown as escapes, for free text that must not be refused
    (a tool's error output): a NUL or an escape sequence never reaches the store or a terminal."""
    return _CONTROL_RE.sub(lambda m: ascii(m.group(0))[1:-1], text)


def _shown(value: str) -> str:
    return repr(value[:40]) + ("..." if len(value) > 40 else "")


def check_build_id(value: object, field: str = "build_id") -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput(field, "must not be empty")
    if ".." in value:
        raise InvalidInput(field, "must not contain '..'")
    if not BUILD_ID_RE.fullmatch(value):
        raise InvalidInput(
            field,
            "must be 1-128 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit "
            f"(got {_shown(value)})",
        )
    return value


def check_name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be a non-empty string")
    if not NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidInput(
            field, f"must be 1-128 ASCII letters, digits, '.', '_' or '-' without '..' (got {_shown(value)})"
        )
    return value


def check_cloud(value: object, field: str = "cloud") -> str:
    if value not in CLOUDS:
        raise InvalidInput(field, f"must be one of {', '.join(CLOUDS)} (got {value!r})")
    return str(value)


def check_owner(value: object, field: str = "owner") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be a non-empty string naming who works on the build")
    if len(value) > MAX_OWNER or not value.isprintable() or control_character(value):
        raise InvalidInput(field, f"must be printable and at most {MAX_OWNER} characters")
    return value


def check_lease_seconds(value: object, field: str = "lease_seconds") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer number of seconds, got {value!r}")
    if not 1 <= value <= MAX_LEASE_SECONDS:
        raise InvalidInput(field, f"must be between 1 and {MAX_LEASE_SECONDS}, got {value}")
    return value


def check_text(value: object, field: str, limit: int, required: bool = True) -> str:
    """Free text typed by a person (a reason): refused with control characters in it."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidInput(field, "must not be empty")
    bad = control_character(value)
    if bad:
        raise InvalidInput(field, f"must not contain control characters (found {bad})")
    return truncated(value, limit)


def truncated(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 15] + " ...[truncated]"


def check_token(value: object, field: str = "token") -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{8,64}", value):
        raise InvalidInput(field, "must be the lease token `begin` printed (hexadecimal)")
    return value


def check_key(value: object, field: str) -> str:
    if not isinstance(value, str) or not KEY_RE.fullmatch(value):
        shown = _shown(value) if isinstance(value, str) else repr(value)
        raise InvalidInput(field, f"must be an identifier-like key (ASCII letters, digits, _ . -), got {shown}")
    return value


def _field(parent: str, key: object) -> str:
    """``outputs.image_id``, or ``outputs['bad key']`` for a key that is no identifier."""
    return f"{parent}.{key}" if isinstance(key, str) and KEY_RE.fullmatch(key) else f"{parent}[{_shown(str(key))}]"


def _refuse_secret_key(key: str, field: str) -> None:
    if is_secret_key(key):
        raise InvalidInput(
            field,
            "looks like a secret; outputs and metadata are stored in clear and shown to anyone who can "
            "read the store: keep secrets in a secrets backend (an Airflow connection or variable) and "
            "record a reference instead",
        )


def check_outputs(outputs: Mapping[str, Any] | None, field: str = "outputs") -> dict[str, Any]:
    """Outputs: identifier-like keys that do not look secret, JSON values without control
    characters, at most :data:`MAX_OUTPUTS_BYTES` in all."""
    if outputs is None:
        return {}
    if not isinstance(outputs, Mapping):
        raise InvalidInput(field, "must be a mapping of key to value")
    checked: dict[str, Any] = {}
    for key, value in outputs.items():
        where = _field(field, key)
        check_key(key, where)
        _refuse_secret_key(key, where)
        _check_json(value, where)
        checked[key] = value
    _check_size(checked, field, MAX_OUTPUTS_BYTES)
    return checked


def _check_size(value: Mapping[str, Any], field: str, limit: int) -> None:
    size = len(orjson.dumps(value))
    if size > limit:
        raise InvalidInput(field, f"take {size} bytes as JSON; at most {limit} are stored per milestone or build")


def _check_json(value: object, field: str, depth: int = 0) -> None:
    if depth > 8:
        raise InvalidInput(field, "is nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise InvalidInput(field, "must be a 64-bit integer")
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidInput(field, "must be a finite number")
        return
    if isinstance(value, str):
        if len(value) > MAX_VALUE:
            raise InvalidInput(field, f"must be at most {MAX_VALUE} characters")
        bad = control_character(value)
        if bad:
            raise InvalidInput(field, f"must not contain control characters (found {bad})")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{field}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str) or control_character(k) or len(k) > 256:
                raise InvalidInput(field, "keys must be printable strings of at most 256 characters")
            _refuse_secret_key(k, _field(field, k))
            _check_json(item, _field(field, k), depth + 1)
        return
    raise InvalidInput(field, f"must be JSON data, got {type(value).__name__}")


def is_reserved_metadata(key: str) -> bool:
    return key.startswith(RESERVED_METADATA_PREFIXES) or key in RESERVED_METADATA_KEYS


def check_metadata(
    metadata: Mapping[str, object] | None, field: str = "metadata", reserved: bool = False
) -> dict[str, str]:
    """Build metadata: identifier-like keys that do not look secret, string values without
    control characters. Reserved keys (the build host...) only with ``reserved=True``: the store
    allows that only to a milestone holding the build's lease."""
    meta: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        where = _field(field, key)
        check_key(key, where)
        _refuse_secret_key(key, where)
        if not reserved and is_reserved_metadata(key):
            raise InvalidInput(
                where, "is reserved for the build target (written by the milestone holding the build's lease)"
            )
        if not isinstance(value, str):
            raise InvalidInput(where, "must be a string")
        if len(value) > MAX_VALUE:
            raise InvalidInput(where, f"must be at most {MAX_VALUE} characters")
        bad = control_character(value)
        if bad:
            raise InvalidInput(where, f"must not contain control characters (found {bad})")
        meta[key] = value
    _check_size(meta, field, MAX_METADATA_BYTES)
    return meta


def parse_pairs(items: tuple[str, ...] | list[str], field: str) -> dict[str, str]:
    """Parse ``k=v`` pairs typed on a command line."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(field, f"expected key=value, got {_shown(item)}")
        key = check_key(key.strip(), _field(field, key.strip()))
        if key in pairs:
            raise InvalidInput(f"{field}.{key}", "is given twice")
        pairs[key] = value
    return pairs


@dataclass(frozen=True)
class BuildParams:
    """What identifies a build's purpose; creating the same id again must repeat these exactly."""

    build_id: str
    pipeline: str
    cloud: str
    image_type: str
    os: str = ""
    plan: tuple[int, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def checked(
        cls,
        build_id: object,
        pipeline: object,
        cloud: object,
        image_type: object,
        os: object = "",
        plan: object = None,
        metadata: Mapping[str, object] | None = None,
    ) -> BuildParams:
        from airflow_provider_imagebuild.milestone import STANDARD_PLAN

        if os and not isinstance(os, str):
            raise InvalidInput("os", "must be a string")
        if os:
            check_name(os, "os")
        plan_codes = STANDARD_PLAN if plan is None else plan
        if isinstance(plan_codes, (str, bytes)) or not hasattr(plan_codes, "__iter__"):
            raise InvalidInput("plan", "must be a list of milestone codes")
        return cls(
            build_id=check_build_id(build_id),
            pipeline=check_name(pipeline, "pipeline"),
            cloud=check_cloud(cloud),
            image_type=check_name(image_type, "image_type"),
            os=str(os or ""),
            plan=validate_plan(plan_codes),
            metadata=check_metadata(metadata),
        )


def derive_build_id(pipeline: str, run_id: str) -> str:
    """The build id every task of one DAG run agrees on when the run's conf names none.

    ``rhel8-web`` + ``manual__2026-11-27T05:37:02.123+00:00`` ->
    ``rhel8-web.manual__2026-11-27T05-37-02.123-00-00.3c1f0e9a2b``: the run id made safe for a
    build id, then a hash of the pipeline and the *original* run id, so that two runs whose ids
    clean to the same text (``a:b`` and ``a-b``, ``..`` and a newline) never share a build.
    """
    digest = hashlib.sha256(f"{pipeline}\0{run_id}".encode()).hexdigest()[:10]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id, flags=re.ASCII).strip("-.") or "run"
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    room = 128 - len(pipeline) - len(digest) - 2
    if room < 1:
        return check_build_id(f"{pipeline[: 128 - len(digest) - 1]}.{digest}")
    return check_build_id(f"{pipeline}.{cleaned[:room].rstrip('-.') or 'run'}.{digest}")
