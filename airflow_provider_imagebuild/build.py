"""Validation of everything that names or describes a build, before anything is written.

Build ids end up in file names, S3 keys, DynamoDB keys, DAG run ids and shell variables, so
they are held to a strict pattern; the other checks exist so that every error names the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.milestone import validate_plan

BUILD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
CLOUDS = ("aws", "azure", "gcp", "openstack", "vsphere", "local")

MAX_OWNER = 256
MAX_ERROR = 8000
MAX_REASON = 2000
MAX_VALUE = 4000
MAX_LEASE_SECONDS = 7 * 24 * 3600


def check_build_id(value: object, field: str = "build_id") -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput(field, "must not be empty")
    if ".." in value:
        raise InvalidInput(field, "must not contain '..'")
    if not BUILD_ID_RE.match(value):
        raise InvalidInput(
            field,
            "must be 1-128 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit "
            f"(got {value[:40]!r}{'...' if len(value) > 40 else ''})",
        )
    return value


def check_name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be a non-empty string")
    if not NAME_RE.match(value):
        raise InvalidInput(field, f"must be 1-128 letters, digits, '.', '_' or '-' (got {value[:40]!r})")
    return value


def check_cloud(value: object, field: str = "cloud") -> str:
    if value not in CLOUDS:
        raise InvalidInput(field, f"must be one of {', '.join(CLOUDS)} (got {value!r})")
    return str(value)


def check_owner(value: object, field: str = "owner") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "must be a non-empty string naming who works on the build")
    if len(value) > MAX_OWNER or not value.isprintable():
        raise InvalidInput(field, f"must be printable and at most {MAX_OWNER} characters")
    return value


def check_lease_seconds(value: object, field: str = "lease_seconds") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer number of seconds, got {value!r}")
    if not 1 <= value <= MAX_LEASE_SECONDS:
        raise InvalidInput(field, f"must be between 1 and {MAX_LEASE_SECONDS}, got {value}")
    return value


def check_text(value: object, field: str, limit: int, required: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise InvalidInput(field, "must not be empty")
    return value if len(value) <= limit else value[: limit - 15] + " ...[truncated]"


def check_key(value: object, field: str) -> str:
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise InvalidInput(field, f"must be an identifier-like key (letters, digits, _ . -), got {value!r}")
    return value


def check_outputs(outputs: Mapping[str, Any] | None, field: str = "outputs") -> dict[str, Any]:
    """Outputs are a flat mapping of keys to JSON scalars (or lists/dicts of them)."""
    if outputs is None:
        return {}
    if not isinstance(outputs, Mapping):
        raise InvalidInput(field, "must be a mapping of key to value")
    checked: dict[str, Any] = {}
    for key, value in outputs.items():
        check_key(key, f"{field}.{key}")
        _check_json(value, f"{field}.{key}")
        checked[key] = value
    return checked


def _check_json(value: object, field: str, depth: int = 0) -> None:
    if depth > 8:
        raise InvalidInput(field, "is nested too deeply")
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if len(value) > MAX_VALUE:
            raise InvalidInput(field, f"must be at most {MAX_VALUE} characters")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{field}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise InvalidInput(field, "keys must be strings")
            _check_json(item, f"{field}.{k}", depth + 1)
        return
    raise InvalidInput(field, f"must be JSON data, got {type(value).__name__}")


def check_metadata(metadata: Mapping[str, object] | None, field: str = "metadata") -> dict[str, str]:
    """Build metadata: identifier-like keys, string values."""
    meta: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        check_key(key, f"{field}.{key}")
        if not isinstance(value, str):
            raise InvalidInput(f"{field}.{key}", "must be a string")
        meta[key] = check_text(value, f"{field}.{key}", MAX_VALUE, required=False)
    return meta


def parse_pairs(items: tuple[str, ...] | list[str], field: str) -> dict[str, str]:
    """Parse ``k=v`` pairs typed on a command line."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(field, f"expected key=value, got {item!r}")
        pairs[check_key(key.strip(), f"{field}.{key.strip()}")] = value
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

    ``rhel8-web`` + ``manual__2026-11-27T05:37:02.123+00:00`` -> ``rhel8-web.manual__2026-11-27T05-37-02.123-00-00``
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-.") or "run"
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    candidate = f"{pipeline}.{cleaned}"
    if len(candidate) > 128:
        import hashlib

        digest = hashlib.sha256(run_id.encode()).hexdigest()[:12]
        candidate = f"{candidate[: 128 - 13]}.{digest}"
    return check_build_id(candidate)
