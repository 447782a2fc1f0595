"""JSON encoding of stored documents.

Encoding and decoding the record was the largest cost of a store write (a build with 100
milestones of history is ~40 KB of JSON); orjson does it several times faster than the stdlib.
"""

from __future__ import annotations

from typing import Any

import orjson

from airflow_provider_imagebuild.errors import CorruptRecord


def dumps(doc: dict[str, Any], pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS if pretty else 0
    return orjson.dumps(doc, option=option)


def loads(data: bytes | str, what: str) -> dict[str, Any]:
    """Decode a stored document; anything but a JSON object is a :class:`CorruptRecord`."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecord(f"{what} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise CorruptRecord(f"{what} is not a JSON object")
    return doc
