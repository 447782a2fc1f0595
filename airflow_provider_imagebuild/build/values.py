"""Values a build records: outputs, metadata, free text, lease lengths, and their bounds.

A value refused here is refused before anything is written, with the field named: control
characters (a NUL would poison every later command's environment), secret-looking keys (outputs
and metadata are stored in clear; :func:`~airflow_provider_imagebuild.redact.patterns.is_secret_key` is the
one rule), keys reserved for targets, and sizes that would outgrow a record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from airflow_provider_imagebuild.build.ids import KEY_RE, check_key, control_character, shown
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.redact.patterns import is_secret_key

DEFAULT_LEASE_SECONDS = 300
MAX_LEASE_SECONDS = 7 * 24 * 3600
MAX_ERROR = 8000
MAX_REASON = 2000
MAX_VALUE = 4000
MAX_OUTPUTS_BYTES = 16_000  # one milestone's outputs, as stored JSON
MAX_METADATA_BYTES = 16_000  # a build's metadata, as stored JSON
# Attempts at one milestone across every run before the store refuses another (a spec's
# milestones.N.max_attempts, ``build create --max-attempts``); a reset or ``build allow`` grants more.
DEFAULT_MAX_ATTEMPTS = 10
MAX_MAX_ATTEMPTS = 1000
# Attempts a milestone may have granted ahead of use (``build allow``, from the CLI, the API or the
# UI): one grant, or several stacked, leave at most this many unused; more once those are spent. A
# person unblocks a build with it; it is no way around the cap (a reset counts afresh, recorded too).
MAX_GRANTED_AHEAD = DEFAULT_MAX_ATTEMPTS

# Metadata that targets rely on (the build host, what Packer kept): written only by a milestone
# holding the build's lease, never by ``create --meta`` or an unleased ``set_metadata``.
RESERVED_METADATA_PREFIXES = ("host_", "published.")  # published.<destination>: the publish milestone's record
RESERVED_METADATA_KEYS = frozenset({"packer_kept_instance"})


def check_lease_seconds(value: object, field: str = "lease_seconds") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer number of seconds, got {value!r}")
    if not 1 <= value <= MAX_LEASE_SECONDS:
        raise InvalidInput(field, f"must be between 1 and {MAX_LEASE_SECONDS}, got {value}")
    return value


def check_attempts(value: object, field: str = "max_attempts") -> int:
    """A number of attempts (a cap, or attempts granted): a whole number from 1 to :data:`MAX_MAX_ATTEMPTS`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be a whole number of attempts, got {value!r}")
    if not 1 <= value <= MAX_MAX_ATTEMPTS:
        raise InvalidInput(field, f"must be between 1 and {MAX_MAX_ATTEMPTS}, got {value}")
    return value


def check_text(value: object, field: str, limit: int, required: bool = True) -> str:
    """Free text typed by a person (a reason, a title): refused with control characters or lone
    surrogates in it (:func:`~.ids.control_character`)."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidInput(field, "must not be empty")
    bad = control_character(value)
    if bad:
        raise InvalidInput(field, f"must not contain control characters or lone surrogates (found {bad})")
    return truncated(value, limit)


def truncated(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 15] + " ...[truncated]"


def _field(parent: str, key: object) -> str:
    """``outputs.image_id``, or ``outputs['bad key']`` for a key that is no identifier."""
    return f"{parent}.{key}" if isinstance(key, str) and KEY_RE.fullmatch(key) else f"{parent}[{shown(str(key))}]"


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
            raise InvalidInput(field, f"expected key=value, got {shown(item)}")
        key = check_key(key.strip(), _field(field, key.strip()))
        if key in pairs:
            raise InvalidInput(f"{field}.{key}", "is given twice")
        pairs[key] = value
    return pairs
