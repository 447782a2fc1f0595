"""A copy of a Glance image as a new image of the same project: how a build starts from an earlier
build's checkpoint on OpenStack (#32, :meth:`.openstack.OpenstackTarget.adopt_checkpoint`).

Glance has no server-side copy of an image into a new image: the interoperable import's
``copy-image`` method copies an image's data to other *stores* of the same image (multi-store
deployments), ``glance-download`` imports from another region's Glance (off by default) and
``web-download`` needs a URL Glance reads without the caller's token. Nova has none either
(``createImage`` snapshots a server, which the checkpoint's server no longer is). So the data is
streamed: downloaded from the source (``GET /v2/images/{id}/file``) and uploaded into the new image
(``PUT /v2/images/{id}/file``) as it is read, CHUNK bytes at a time, never held whole nor written to
the worker's disk, never more than the source's ``size`` and within a deadline. Glance computes the
copy's checksum and multihash as it stores it; the copy counts only when they and its size equal
the source's, so a transfer cut short or altered anywhere on the way is found.

Besides the data, the copy gets the source's disk and container format, ``min_disk``/``min_ram``
and every custom property (``hw_*``, ``os_*``, the snapshot's ``image_type``...: what makes Nova
boot it as it booted the source) less the source's marks (``imagebuild_*``, the caller gives the
new build's) and Glance's reserved ``os_glance_*``; it is private.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from airflow_provider_imagebuild.clouds.openstack import openstack_errors
from airflow_provider_imagebuild.errors import TargetError

CHUNK = 1 << 20  # bytes relayed at a time
# What Glance models itself (glance/api/v2/images.py get_base_properties): everything else an image
# shows is a custom property. Several are read-only or refused in a create body (403).
GLANCE_BASE = frozenset({
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo", "os_hash_value",
    "owner", "size", "virtual_size", "container_format", "disk_format", "created_at", "updated_at", "tags",
    "direct_url", "min_ram", "min_disk", "self", "file", "stores", "schema", "locations",
})  # fmt: skip
# A cloud that lets projects import images only (Glance's upload_image policy) refuses a data upload
UPLOAD_REFUSED = "Glance's upload_image policy refuses this login an image's data; the build runs every milestone"
RESERVED_PREFIX = "os_glance_"  # Glance's own properties: 403 in a create body
MARK_PREFIX = "imagebuild_"  # the source build's marks: the copy gets the new build's instead


def copied_properties(source: Mapping[str, Any]) -> dict[str, str]:
    """The source's custom properties a copy keeps (its Glance JSON view)."""
    return {
        k: v
        for k, v in source.items()
        if k not in GLANCE_BASE and not k.startswith((RESERVED_PREFIX, MARK_PREFIX)) and isinstance(v, str)
    }


def same_data(source: Any, copy: Any) -> str | None:
    """Why ``copy`` (an SDK image) does not hold ``source``'s data, by the size and digests Glance
    computed of each as it stored it; None when it does."""
    if not isinstance(copy.size, int) or copy.size != source.size:
        return f"it holds {copy.size} bytes, the source {source.size}"
    if source.hash_algo and source.hash_value and copy.hash_algo == source.hash_algo:
        if copy.hash_value != source.hash_value:
            return f"its {copy.hash_algo} differs from the source's"
        return None
    if source.checksum and copy.checksum == source.checksum:  # Glance's hashing_algorithm changed meanwhile
        return None
    return "its checksum differs from the source's (or Glance gave none to compare)"


class Relay:
    """The source's download as the upload's body: iterated by the HTTP client as it sends, with the
    length announced (``Content-Length``: Glance reserves the space and refuses what its quota or
    ``image_size_cap`` cannot hold before a byte is stored). More bytes than announced, fewer at the
    end, or the deadline passed stop the upload (the client drops the connection; Glance puts
    the image back to ``queued``)."""

    def __init__(self, chunks: Iterator[bytes], size: int, deadline: float, what: str) -> None:
        self.chunks, self.size, self.deadline, self.what = chunks, size, deadline, what
        self.sent = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.sent += len(chunk)
            if self.sent > self.size:
                raise TargetError(f"{self.what}: the download holds more than the image's {self.size} bytes")
            if time.monotonic() > self.deadline:
                raise TargetError(f"{self.what}: not done within the deadline ({self.sent} of {self.size} bytes)")
            yield chunk
        if self.sent != self.size:
            raise TargetError(f"{self.what}: the download ended after {self.sent} of {self.size} bytes")


def glance_json(conn: Any, image_id: str) -> dict[str, Any]:
    """The image as Glance shows it (custom properties under their own names, which the SDK's
    model splits between attributes and ``properties``)."""
    from openstack import exceptions

    with openstack_errors(f"image {image_id}"):
        answer = conn.image.get(f"/images/{image_id}")
        exceptions.raise_from_response(answer)
    found: dict[str, Any] = answer.json()
    return found


def create_image(conn: Any, body: Mapping[str, Any]) -> str:
    """A new, empty (``queued``) image of the login's project: its id."""
    from openstack import exceptions

    with openstack_errors(f"create image {body.get('name')}"):
        answer = conn.image.post("/images", json=dict(body))
        exceptions.raise_from_response(answer)
    return str(answer.json()["id"])


def stream_data(conn: Any, source: Any, image_id: str, deadline: float) -> None:
    """Relay ``source``'s data into the queued image ``image_id`` (see :class:`Relay`)."""
    from openstack import exceptions

    what = f"copy of image {source.id}"
    with openstack_errors(f"download image {source.id}"):
        download = conn.image.get(f"/images/{source.id}/file", stream=True)
        exceptions.raise_from_response(download)
    with contextlib.closing(download):
        announced = download.headers.get("Content-Length")
        if announced is not None and announced != str(source.size):
            raise TargetError(f"{what}: Glance sends {announced} bytes, the image holds {source.size}")
        relay = Relay(download.iter_content(CHUNK), int(source.size), deadline, what)
        with openstack_errors(f"upload the {what}", {403: ("reuse", UPLOAD_REFUSED)}):
            answer = conn.image.put(
                f"/images/{image_id}/file", data=relay, headers={"Content-Type": "application/octet-stream"}
            )
            exceptions.raise_from_response(answer)
