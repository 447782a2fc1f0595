"""The small index object of the S3 and JSON-file backends: what a listing needs of each build
(pipeline, cloud, status, updated_at) without reading every record.

Each entry carries the *stamp* of the record it describes (the S3 object's ETag; the file's
modification time and size). A listing lists the records' names and stamps (one cheap request per
thousand S3 keys; a ``stat`` per file) and skips a record only when its index entry has the same
stamp and does not match the filter; every other record is read as before. So the index can be
behind (a writer that died between the record and the index, a lost race on the index) without a
listing ever being wrong: it is only slower for the records whose entries are missing or stale.
The index is named ``_index``: build ids start with a letter or digit, so none can take its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_imagebuild.store.base import Doc, ListFilter

INDEX_NAME = "_index"
FIELDS = ("pipeline", "cloud", "status", "updated_at")
CAS_ATTEMPTS = 5


def entry(doc: Doc, stamp: str) -> dict[str, Any]:
    return {"stamp": stamp, **{field: doc.get(field) for field in FIELDS}}


def filtering(flt: ListFilter) -> bool:
    """Whether the filter can skip anything (listing everything reads everything)."""
    return bool(flt.status or flt.cloud or flt.pipeline or flt.updated_before or flt.updated_after)


def skippable(found: Mapping[str, Any] | None, stamp: str, flt: ListFilter) -> bool:
    """The record need not be read: its entry describes exactly this version and fails the filter."""
    return found is not None and found.get("stamp") == stamp and not flt.matches(found)
