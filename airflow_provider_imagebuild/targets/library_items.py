"""A build's item in a vSphere content library: found by name, kept only if it records what it holds.

Both ways an image reaches a content library go through here: the vSphere target's own publish
(the final template captured as an OVF item) and the ``vsphere_library`` destination (the sealed
file uploaded as one). Each names its item after the build, so the name stays the same when the
build is sealed again, and a name proves nothing about which image an item holds. So the item's
description records it when the item is made, as ``[imagebuild.<name>=<value>]`` marks: ``key``
(the build's digest: the item is the build's) and what identifies the sealed image it was made
from (the image file's SHA-256; the template's seal). A retry keeps the build's item only if every
recorded value is the sealed image's (and, where the caller can tell, its upload was finished);
any other item of the build's is deleted and made again. An item of that name without the build's
key is never touched: publishing fails, naming the field.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_imagebuild.clouds.vsphere import rest_answer, vsphere_errors
from airflow_provider_imagebuild.errors import InvalidInput

log = logging.getLogger(__name__)

LIBRARIES = "/com/vmware/content/library"
ITEMS = "/com/vmware/content/library/item"
RECORD = re.compile(r"\[imagebuild\.([a-z0-9_]+)=([^\]\s]+)\]")


def item_records(description: str) -> dict[str, str]:
    """What an item's description records (``key``, ``image_sha256``, ``seal``...). A name given
    twice with different values records nothing: which one would be the item's is anyone's guess."""
    found: dict[str, str] = {}
    ambiguous: set[str] = set()
    for name, value in RECORD.findall(description):
        if found.setdefault(name, value) != value:
            ambiguous.add(name)
    return {name: value for name, value in found.items() if name not in ambiguous}


def item_description(text: str, records: Mapping[str, str]) -> str:
    """``text`` followed by the records (the build's ``key`` and what identifies its image)."""
    return " ".join([text, *(f"[imagebuild.{name}={value}]" for name, value in records.items())])


def find_library(rest: Any, name: str, field: str) -> str:
    """The id of the content library ``name``; one that does not exist is bad input at ``field``."""
    with vsphere_errors("content library"):
        found = rest_answer(
            rest.post(LIBRARIES, params={"~action": "find"}, json={"spec": {"name": name}}), f"find library {name}"
        )
    if not found:
        raise InvalidInput(field, f"{name} is not a content library of the vCenter")
    return str(found[0])


def find_item(rest: Any, library: str, name: str) -> dict[str, Any] | None:
    """The library's item named ``name`` (whoever made it), or None."""
    with vsphere_errors("content library"):
        find = {"spec": {"library_id": library, "name": name}}
        for item_id in rest_answer(rest.post(ITEMS, params={"~action": "find"}, json=find), f"find item {name}") or []:
            item = rest_answer(rest.get(f"{ITEMS}/id:{item_id}"), f"item {item_id}")
            if item and item.get("name") == name:
                return dict(item)
    return None


def reusable_item(
    rest: Any,
    library: str,
    name: str,
    *,
    key: str,
    holds: Mapping[str, str],
    field: str,
    finished: Callable[[str], bool] | None = None,
) -> dict[str, Any] | None:
    """The build's item ``name`` if it holds this sealed image, else None (a stale item of the
    build's is deleted first, so the caller makes the item again).

    ``key`` is the build's digest, ``holds`` what the item must record of the image (all of it,
    each value exactly), ``finished`` whether an upload into the item (by id) was completed, for
    callers that can tell. An item of that name that is not the build's fails at ``field``."""
    item = find_item(rest, library, name)
    if item is None:
        return None
    recorded = item_records(str(item.get("description", "")))
    if recorded.get("key") != key:
        raise InvalidInput(field, f"an item {name} that is not this build's exists")
    item_id = str(item["id"])
    same_image = all(recorded.get(record) == value for record, value in holds.items())
    if same_image and (finished is None or finished(item_id)):
        log.info("content library item %s (%s) already holds this image; kept", name, item_id)
        return item
    why = "an earlier, unfinished upload" if same_image else "it holds another image (sealed before this one)"
    log.info("deleting content library item %s (%s): %s", name, item_id, why)
    with vsphere_errors(f"delete item {name}"):
        rest_answer(rest.delete(f"{ITEMS}/id:{item_id}"), f"delete item {name}")
    return None
