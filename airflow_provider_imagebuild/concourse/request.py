"""A Concourse resource request, read strictly: the JSON on stdin, its params, and the files a put
names in its sources folder.

Who writes a request: whoever can set the pipeline (its ``source`` and ``params``) and whatever ran
in the steps before the put (the files in its sources). Neither gets more than a one-line error
naming the field: no traceback (deep nesting, a 5,000-digit number, bytes that are not UTF-8,
``NaN`` or ``1e400`` where a number or a string belongs), no value bent into another (``2.9``
is not 2, ``true`` is not 1, ``"٣"`` is not 3), no file read outside the sources folder (a link
leading out is refused, not followed), and no file's content quoted back in an error (it may be
anything a link pointed at).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from airflow_provider_imagebuild.build.ids import KEY_RE, shown
from airflow_provider_imagebuild.errors import InvalidInput

MAX_REQUEST_BYTES = 1 << 20  # a request is a few hundred bytes; outputs are at most 16 kB
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 32  # outputs nest at most 8 deep; nothing in a request needs more
_DIGITS_RE = re.compile(r"[0-9]{1,18}", re.ASCII)  # int() would also read " 60", "6_0" and other scripts' digits
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}", re.ASCII)


def parse_json(data: bytes | str, field: str) -> Any:
    """JSON text as Python values, refusing text that is not UTF-8, numbers too long to read and
    anything nested deeper than :data:`MAX_DEPTH` (Python's parser would hit its recursion limit
    first on a long run of brackets). ``NaN``, ``Infinity`` and ``1e400`` are read as floats and
    refused by the field that gets one (:func:`integer`, :func:`text`, the store's outputs check),
    so that the error names that field."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(field, "is not UTF-8 text") from None
    try:
        value = json.loads(data)
    except RecursionError:
        raise InvalidInput(field, f"is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:  # its message gives the place, never the text
        raise InvalidInput(field, f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError:  # Python refuses to read an integer of more than 4300 digits
        raise InvalidInput(field, "holds a number too long to read") from None
    _check_depth(value, field)
    return value


def _check_depth(value: Any, field: str) -> None:
    """Iteratively, so that the check itself cannot recurse too deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidInput(field, f"is nested deeper than {MAX_DEPTH} levels")
        children: Iterable[Any] = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)


def read_request(stream: TextIO | BinaryIO) -> dict[str, Any]:
    """The request on stdin: a JSON object of at most :data:`MAX_REQUEST_BYTES`, read as bytes so
    that text which is not UTF-8 is refused (a text stream would carry it on as surrogates)."""
    raw = getattr(stream, "buffer", stream).read(MAX_REQUEST_BYTES + 1)
    if len(raw) > MAX_REQUEST_BYTES:
        raise InvalidInput("request", f"is larger than {MAX_REQUEST_BYTES} bytes")
    request = parse_json(raw, "request")
    if not isinstance(request, dict):
        raise InvalidInput("request", "must be a JSON object")
    return request


def mapping(value: Any, field: str) -> dict[str, Any]:
    """A JSON object (absent: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(field, f"must be a mapping, got {_kind(value)}")
    return value


def known_keys(values: Mapping[str, Any], known: Iterable[str], field: str) -> None:
    """A misspelt key (``lease_second``) is refused rather than silently ignored."""
    names = sorted(known)
    for key in values:
        if key not in names:
            where = f"{field}.{key}" if KEY_RE.fullmatch(key) else f"{field}[{shown(key)}]"
            raise InvalidInput(where, f"unknown key (known: {', '.join(names)})")


def text(values: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> str | None:
    """A string (an integer is taken as its digits: YAML reads ``build_id: 20261201`` as one)."""
    value = values.get(key)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{field}.{key}", "is required (a string)")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput(f"{field}.{key}", f"must be a string, got {_kind(value)}")
    return str(value)


def integer(values: Mapping[str, Any], key: str, field: str, low: int, high: int, default: int | None = None) -> int:
    """An integer between ``low`` and ``high``: a JSON integer, a whole JSON number (``600.0``) or a
    string of ASCII digits. Refused: booleans, fractions (``2.9`` is not 2), digits of other
    scripts, signs and spaces in strings, and anything out of bounds."""
    where = f"{field}.{key}"
    value = values.get(key)
    if value is None:
        if default is None:
            raise InvalidInput(where, "is required (an integer)")
        return default
    number: int
    if isinstance(value, bool):
        raise InvalidInput(where, f"must be an integer, got {_kind(value)}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidInput(where, f"must be a whole number, got {shown(repr(value))}")
        number = int(value)
    elif isinstance(value, str) and _DIGITS_RE.fullmatch(value):
        number = int(value)
    else:
        raise InvalidInput(where, f"must be an integer (ASCII digits), got {_kind(value)}")
    if not low <= number <= high:
        raise InvalidInput(where, f"must be between {low} and {high}, got {shown(str(number))}")
    return number


def _kind(value: Any) -> str:
    """What a refused value is, without repeating a long or hostile one."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return shown(repr(value))
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else type(value).__name__


def confined_file(sources: Path, params: Mapping[str, Any], key: str) -> str | None:
    """The text of the file ``params[key]`` names inside the put's sources folder, stripped; None
    when no such file is there. The path is resolved (every link followed) and must still be inside
    the resolved sources folder: a link to a sibling input is fine, one leading out is refused. The
    content is never part of an error."""
    name = params.get(key)
    if name is None:
        return None
    field = f"params.{key}"
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidInput(field, "must be a relative path inside the put's sources folder")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise InvalidInput(field, "must be a relative path inside the put's sources folder (no '..')")
    try:
        root = sources.resolve(strict=True)
        path = (root / relative).resolve()
    except (OSError, RuntimeError):  # a link loop; a sources folder that is not there
        raise InvalidInput(field, "cannot be resolved inside the put's sources folder (a link loop?)") from None
    if not path.is_relative_to(root):
        raise InvalidInput(field, "leads out of the put's sources folder through a link; only files inside it are read")
    if not path.is_file():
        return None
    try:  # O_NOFOLLOW: the checked path cannot be swapped for a link between the check and the read
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(field, f"cannot be read ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(field, f"is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput(field, "is not UTF-8 text") from None


def write_own_file(folder: Path, name: str, content: str) -> None:
    """Write one of the resource's files into a get's destination, never through a link there."""
    try:
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        reason = "is a link; the resource writes only files of its own" if exc.errno == errno.ELOOP else exc.strerror
        raise InvalidInput("destination", f"{name} {reason}") from None
    with os.fdopen(fd, "w") as f:
        f.write(content)
