"""Names of builds and of what describes them, checked before anything is written.

Build ids end up in file names, S3 keys, DynamoDB keys, DAG run ids, AMI names and shell
variables, so they are held to a strict pattern; names and keys likewise. Patterns are matched
whole (``fullmatch``: ``$`` would accept a trailing newline) and ASCII only (``\\d`` and
``isdigit`` accept other scripts' digits). Every error names the field.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, get_args

from airflow_provider_imagebuild.errors import InvalidInput

BUILD_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}", re.ASCII)
Cloud = Literal["aws", "azure", "gcp", "openstack", "vsphere", "local"]
CLOUDS: tuple[str, ...] = get_args(Cloud)
MAX_OWNER = 256

# C0 controls but tab and newline, DEL, C1 controls, line/paragraph separators, the bidi
# overrides that make text display differently from what it is ("trojan source"), and lone
# surrogates (category Cs: half of a UTF-16 pair, which no UTF-8 encoder writes; a shell hands
# invalid UTF-8 bytes of an argument over as \udc80-\udcff, a JSON body may say \ud800): the store's
# JSON encoder refused them with a TypeError after every check had passed.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


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


def shown(value: str) -> str:
    """A value quoted for an error message: at most 40 characters, control characters escaped."""
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
            f"(got {shown(value)})",
        )
    return value


def check_name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be a non-empty string")
    if not NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidInput(
            field, f"must be 1-128 ASCII letters, digits, '.', '_' or '-' without '..' (got {shown(value)})"
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


def check_token(value: object, field: str = "token") -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{8,64}", value):
        raise InvalidInput(field, "must be the lease token `begin` printed (hexadecimal)")
    return value


def check_key(value: object, field: str) -> str:
    if not isinstance(value, str) or not KEY_RE.fullmatch(value):
        given = shown(value) if isinstance(value, str) else repr(value)
        raise InvalidInput(field, f"must be an identifier-like key (ASCII letters, digits, _ . -), got {given}")
    return value


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
