"""Field types the ``target:`` models of every cloud share, each with its one check."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue

from airflow_provider_imagebuild.build.ids import KEY_RE


def _conn_id(value: str) -> str:
    if not KEY_RE.fullmatch(value):
        raise ValueError("is not a connection id")
    return value


def _login(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value) or value == "root":
        raise ValueError(f"{value!r} is not a login name (lowercase, not root)")
    return value


ConnId = Annotated[str, AfterValidator(_conn_id)]  # an Airflow connection id
LoginName = Annotated[str, AfterValidator(_login)]  # the build host's SSH user


# -- Durations: written as people write them, wherever the spec takes seconds ------------------
# One grammar for every duration of a spec (``retry_delay: 5m``, ``execution_timeout: 1h30m``,
# ``target.boot.timeout: 90s``), the one default_args already took: a number of seconds, or
# ``<n>d<n>h<n>m<n>s`` with any of the parts, or ISO 8601 (``PT5M``) and ``HH:MM[:SS]``.
DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", re.ASCII)
DURATION_HINT = "seconds, or like 90s, 5m, 2h, 1d, 1h30m, PT5M"


def parse_duration(value: Any) -> Any:
    """``value`` with a ``1h30m``-style string turned into a timedelta (numbers, ISO 8601 and
    ``HH:MM:SS`` are left for pydantic, which reads them as durations or seconds itself)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration ({DURATION_HINT}), not a boolean")
    if isinstance(value, str):
        text = value.strip()
        found = DURATION_RE.fullmatch(text)
        if text and found and any(found.groups()):
            days, hours, minutes, seconds = (float(g) if g else 0.0 for g in found.groups())
            try:
                return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            except OverflowError:  # not a ValueError: pydantic would let it escape as a traceback
                raise ValueError(f"{text[:40]!r} is too long a duration (at most {timedelta.max.days} days)") from None
        if not re.fullmatch(r"P[0-9TDHMSW.]+|[0-9]+(:[0-9]{2}){1,2}(\.[0-9]+)?", text, re.ASCII):
            raise ValueError(f"{text[:40]!r} is not a duration ({DURATION_HINT})")
    return value


def _seconds(value: Any) -> Any:
    """A duration as a number of seconds (what the models that take seconds store)."""
    parsed = parse_duration(value)
    try:
        if isinstance(parsed, str):
            parsed = TypeAdapter(timedelta).validate_python(parsed)
        elif isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
            timedelta(seconds=parsed)  # the range a duration has (1e300 seconds has none)
    except OverflowError:
        raise ValueError(f"{str(value)[:40]!r} is too long a duration (at most {timedelta.max.days} days)") from None
    return parsed.total_seconds() if isinstance(parsed, timedelta) else parsed


def _whole_seconds(value: Any) -> Any:
    seconds = _seconds(value)
    if isinstance(seconds, float) and isinstance(value, str):
        if not seconds.is_integer():
            raise ValueError(f"{value!r} is not a whole number of seconds")
        return int(seconds)
    return seconds


class _DurationJsonSchema:
    """In the JSON Schema (spec/schema), a duration field takes its number (with its bounds) or a
    duration string, as the validator does."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        number = handler(core_schema)
        return {"anyOf": [number, {"type": "string", "pattern": DURATION_PATTERN}]}


DURATION_PATTERN = r"^(\d+d)?(\d+h)?(\d+m)?(\d+(\.\d+)?s)?$|^P[0-9TDHMSW.]+$|^[0-9]+(:[0-9]{2}){1,2}(\.[0-9]+)?$"
Seconds = Annotated[float, BeforeValidator(_seconds), _DurationJsonSchema()]  # seconds, or ``5m``, ``1h30m``
WholeSeconds = Annotated[int, BeforeValidator(_whole_seconds), _DurationJsonSchema()]
