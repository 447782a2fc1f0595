"""Publish the sealed image file to a vSphere content library, as an OVF template item.

The qcow2 is converted to a stream-optimized VMDK with an OVF descriptor and manifest
(:mod:`.ovf`), then uploaded through the vSphere Automation API's update session: the item is
created (type ``ovf``), a session opened on it, each file added as a ``PUSH`` source with its
size and SHA-256 and PUT to the upload endpoint vCenter returns, the session validated and
completed (vCenter checks each file against the SHA-256 given when it was added). The item's
description carries ``[imagebuild.key=<digest>]`` (the build's key), and what it holds:
``[imagebuild.image_sha256=...]`` (the sealed qcow2 the package was made from) and
``[imagebuild.vmdk_sha256=...]`` (the disk uploaded).

A retry finds the item by name and keeps it only if it is the build's, was made from this very
image (the recorded image checksum is the sealed file's) and holds every file of the package; else
(an upload cut short, or an image sealed again since) it is deleted and made again
(:mod:`~airflow_provider_imagebuild.targets.library_items`, shared with the vSphere target's own
publish). Checksums, not sizes: an image sealed again can have the very size of the one before, and
so can every file of its package. The checksum is the one recorded at upload, because the content
library API's file ``checksum_info`` is optional (govmomi's simulator gives none) and a new
conversion's VMDK differs from the uploaded one in any case (its header carries a random content
id). An item of that name without the build's key is never touched and fails the destination,
naming it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.vsphere import VsphereClients, rest_answer, vsphere_errors
from airflow_provider_imagebuild.destinations import Upload
from airflow_provider_imagebuild.destinations.ovf import OvfPackage, ovf_package
from airflow_provider_imagebuild.errors import TargetError
from airflow_provider_imagebuild.spec.publish import VsphereLibraryDestination
from airflow_provider_imagebuild.targets.base import build_digest, file_hash
from airflow_provider_imagebuild.targets.library_items import (
    ITEMS,
    find_library,
    item_description,
    item_records,
    reusable_item,
)

log = logging.getLogger(__name__)

SESSIONS = "/com/vmware/content/library/item/update-session"
SESSION_FILES = "/com/vmware/content/library/item/updatesession/file"
UPLOAD_TIMEOUT_S = 3 * 3600


class LibraryUpload(Upload[VsphereLibraryDestination]):
    def publish(self, build: BuildRecord, path: Path) -> dict[str, Any]:
        s = self.settings
        where = f"publish.{self.label}"
        clients = VsphereClients.from_connection(s.vsphere_conn_id, where=f"{where}.vsphere_conn_id")
        rest = clients.rest()
        key = build_digest(self.pipeline, build.build_id, 20)
        name = s.item_name or f"{self.pipeline}-{build.build_id}"
        library = find_library(rest, s.library, f"{where}.library")
        image_sha256 = file_hash(path)
        with tempfile.TemporaryDirectory(prefix="imagebuild-ovf-", dir=path.parent) as tmp:
            package = ovf_package(path, Path(tmp), name, s.cpus, s.memory_mb, s.network)
            item = reusable_item(
                rest, library, name, key=key, holds={"image_sha256": image_sha256}, field=f"{where}.item_name",
                finished=lambda item_id: self._holds(rest, item_id, package),
            )  # fmt: skip
            if item is not None:
                recorded = item_records(str(item.get("description", "")))
                return self._outputs(str(item["id"]), package, "kept", image_sha256, recorded.get("vmdk_sha256"))
            vmdk_sha256 = file_hash(package.disk)
            records = {"key": key, "image_sha256": image_sha256, "vmdk_sha256": vmdk_sha256}
            description = item_description(f"{self.pipeline} build {build.build_id}", records)
            spec = {"library_id": library, "name": name, "description": description, "type": "ovf"}
            with vsphere_errors(f"create item {name}"):
                item_id = str(rest_answer(rest.post(ITEMS, json={"create_spec": spec}), f"create item {name}"))
            self._upload(rest, item_id, package)
            log.info("published %s to content library %s as item %s (%s)", path.name, s.library, name, item_id)
            return self._outputs(item_id, package, "uploaded", image_sha256, vmdk_sha256)

    @staticmethod
    def _holds(rest: Any, item_id: str, package: OvfPackage) -> bool:
        """Whether the item has every file of the package, each at its size: that the upload was
        finished (which image it is, the recorded checksum says)."""
        with vsphere_errors("content library files"):
            files = rest_answer(rest.get("/com/vmware/content/library/item/file", params={"library_item_id": item_id}),
                                "item files") or []  # fmt: skip
        sizes = {str(f.get("name")): int(f.get("size") or 0) for f in files}
        return all(sizes.get(p.name) == p.stat().st_size for p in package.files)

    @staticmethod
    def _upload(rest: Any, item_id: str, package: OvfPackage) -> None:
        with vsphere_errors("content library upload"):
            session = rest_answer(
                rest.post(SESSIONS, json={"create_spec": {"library_item_id": item_id}}), "open an update session"
            )
            try:
                for part in package.files:
                    spec = {"name": part.name, "source_type": "PUSH", "size": part.stat().st_size,
                            "checksum_info": {"algorithm": "SHA256", "checksum": file_hash(part)}}  # fmt: skip
                    added = rest_answer(
                        rest.post(f"{SESSION_FILES}/id:{session}", params={"~action": "add"}, json={"file_spec": spec}),
                        f"add {part.name}",
                    )
                    uri = (added or {}).get("upload_endpoint", {}).get("uri")
                    if not uri:
                        raise TargetError(f"vSphere: no upload endpoint for {part.name}")
                    with open(part, "rb") as data:
                        put = rest.put(uri, content=data, headers={"Content-Type": "application/octet-stream"},
                                       timeout=UPLOAD_TIMEOUT_S)  # fmt: skip
                    if put.status_code >= 300:
                        raise TargetError(f"vSphere: upload of {part.name} failed: HTTP {put.status_code}")
                rest_answer(
                    rest.post(f"{SESSIONS}/id:{session}", params={"~action": "complete"}), "complete the upload"
                )
            except BaseException:
                rest.post(
                    f"{SESSIONS}/id:{session}", params={"~action": "fail"}, json={"client_error_message": "aborted"}
                )
                raise

    def _outputs(
        self, item_id: str, package: OvfPackage, how: str, image_sha256: str, vmdk_sha256: str | None
    ) -> dict[str, Any]:
        return {
            "library": self.settings.library,
            "library_item_id": item_id,
            "item_name": package.descriptor.stem,
            "files": [p.name for p in package.files],
            "image_sha256": image_sha256,
            "vmdk_sha256": vmdk_sha256 or file_hash(package.disk),
            "upload": how,
        }
