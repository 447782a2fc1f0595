"""Publish the sealed image file to an OpenStack Image service (Glance v2).

The image is created with the build's ownership properties (``imagebuild_key``...) and the
spec's, then its data goes up by Glance's interoperable import (``glance-direct``: staged, then
imported) where the cloud offers it, else by a plain upload. An import runs as a task after the
call returns: the image is ``importing`` (no checksums yet) until the task stores the data, and
back to ``queued`` if the task failed (the task's message says why), so the upload waits for it.
Glance's digests of what it stored are then checked against the file (destinations/glance_data.py:
the file's own, or its disk content's where Glance's ``image_conversion`` plugin converted it). A
mismatch deletes the image and fails the destination (retried: a transfer went wrong).

A retry finds its own image by name, project and key: kept if it is active and holds the file
(by the same check), else (an upload cut short, a stale image of an earlier seal) deleted and made
again. An image is the build's only if the login's project owns it (Glance's ``owner``, set from
the token) and it carries the build's key: the key is a digest anyone can compute, and Glance lists
other projects' public and shared images, so images of other projects are never kept, changed or
deleted (one of the same name is simply another project's). One of this project without the build's
key makes the destination fail, naming it.

``visibility: public`` needs Glance's ``publicize_image`` policy, admin only by default: a refusal
is one line naming ``publish.<label>.visibility``, not retried.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.openstack import PUBLICIZE_NEEDS, OpenstackClients, openstack_errors
from airflow_provider_imagebuild.destinations import Upload
from airflow_provider_imagebuild.destinations.glance_data import SENT_FORMAT, SentImage, stored_mismatch
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec.publish import GlanceDestination
from airflow_provider_imagebuild.targets.base import MANAGED_BY, file_hash, sbom_tags
from airflow_provider_imagebuild.targets.openstack import KEY, MANAGED
from airflow_provider_imagebuild.targets.openstack_names import OpenstackNames

log = logging.getLogger(__name__)

UPLOAD_TIMEOUT_S = 3 * 3600
STORING = ("saving", "uploading", "importing")  # Glance is still writing the data


class GlanceUpload(Upload[GlanceDestination]):
    poll_s = 2.0  # between reads while an import runs (tests lower it)

    def publish(self, build: BuildRecord, path: Path) -> dict[str, Any]:
        s = self.settings
        where = f"publish.{self.label}"
        clients = OpenstackClients.from_settings(s, field_prefix=where)
        conn = clients.conn
        names = OpenstackNames(self.pipeline, build)
        key, name = names.key, names.published(s.image_name, f"{where}.image_name")
        sent = SentImage(path)
        sha512 = file_hash(path, "sha512")
        with openstack_errors(f"list images {name}"):
            same_name = [i for i in conn.image.images(name=name) if i.name == name]
        for image in same_name:
            if not clients.in_project(image.owner):
                log.info("Glance image %s (%s) is another project's (%s); left alone", name, image.id, image.owner)
                continue
            if (image.properties or {}).get(KEY) != key:
                raise InvalidInput(f"{where}.image_name", f"an image {name} that is not this build's exists")
            why = stored_mismatch(conn, image, sent) if image.status == "active" else f"it is {image.status}"
            if why is None:
                log.info("Glance image %s (%s) already holds this image; kept", name, image.id)
                return self._outputs(image, "kept", sha512)
            log.info("deleting Glance image %s (%s): an earlier, unfinished upload (%s)", name, image.id, why)
            with openstack_errors(f"delete image {image.id}"):
                conn.image.delete_image(image, ignore_missing=True)
        method = self._method(conn)
        properties = {
            **s.properties,
            KEY: key,
            MANAGED: MANAGED_BY,
            "imagebuild_build": build.build_id,
            "imagebuild_pipeline": self.pipeline,
            "imagebuild_image_type": self.image_type,
            **{f"imagebuild_{k.removeprefix('built_with.')}_version": v
               for k, v in build.metadata.items() if k.startswith("built_with.")},
            **{f"imagebuild_{k.lower()}": v for k, v in sbom_tags(build).items()},  # the SBOM's digest (#33)
        }  # fmt: skip
        log.info("uploading %s to Glance as %s (%s, %d bytes)", path.name, name, method, path.stat().st_size)
        refused = {403: (f"{where}.visibility", PUBLICIZE_NEEDS)} if s.visibility == "public" else None
        with openstack_errors(f"upload image {name}", refused):
            image = conn.image.create_image(
                name,
                filename=str(path),
                disk_format=SENT_FORMAT,
                container_format="bare",
                visibility=s.visibility,
                allow_duplicates=True,  # the name was checked above, with the build's key
                use_import=method == "glance-direct",
                meta=properties,
                md5=file_hash(path, "md5"),
                sha256=file_hash(path, "sha256"),
                timeout=UPLOAD_TIMEOUT_S,
            )
        image = self._stored(conn, image, name)
        why = stored_mismatch(conn, image, sent)
        if why is not None:
            with openstack_errors(f"delete image {image.id}"):
                conn.image.delete_image(image, ignore_missing=True)
            raise TargetError(f"Glance image {name}: {why}; deleted (the upload is retried)")
        converted = f", converted by Glance to {image.disk_format}" if image.disk_format != SENT_FORMAT else ""
        log.info("Glance image %s (%s) is active%s; its data verified", name, image.id, converted)
        return self._outputs(image, method, sha512)

    def _stored(self, conn: Any, image: Any, name: str) -> Any:
        """The image once Glance has stored its data: an import is a task that runs after the
        call (the image ``importing``, without checksums, until it is done); a failed one leaves
        the image ``queued`` and says why in the task, and the image is deleted."""
        deadline, delay = time.monotonic() + UPLOAD_TIMEOUT_S, self.poll_s / 4  # a small image is quick
        while True:
            with openstack_errors(f"image {name}"):
                image = conn.image.get_image(image.id)
            if image.status == "active":
                return image
            failed = (image.properties or {}).get("os_glance_failed_import")
            if image.status in STORING and not failed and time.monotonic() < deadline:
                time.sleep(delay)
                delay = min(self.poll_s, delay * 2)
                continue
            reason = self._import_failure(conn, image) or f"it is {image.status}"
            if failed:
                reason += f"; the import failed at {failed}"
            with openstack_errors(f"delete image {image.id}"):
                conn.image.delete_image(image, ignore_missing=True)
            raise TargetError(f"Glance image {name}: its data was not stored ({reason}); deleted (retried)")

    @staticmethod
    def _import_failure(conn: Any, image: Any) -> str:
        """The message of the image's last failed import task (Glance image API 2.12), if any."""
        try:
            with openstack_errors(f"tasks of image {image.id}"):
                tasks = list(conn.image.image_tasks(image))
        except (TargetError, InvalidInput):
            return ""
        failed = [t for t in tasks if t.status == "failure"]
        return f"import task: {failed[-1].message}" if failed else ""

    def _method(self, conn: Any) -> str:
        """How the data goes up: the spec's choice, or import where Glance lists glance-direct."""
        if self.settings.method != "auto":
            return self.settings.method
        try:
            with openstack_errors("Glance import methods"):
                offered = conn.image.get_import_info().import_methods.get("value", [])
        except TargetError:
            return "upload"
        return "glance-direct" if "glance-direct" in offered else "upload"

    def _outputs(self, image: Any, method: str, sha512: str) -> dict[str, Any]:
        """What was published; ``sha512`` is the file's, ``stored_*`` what Glance holds (another
        format and digest where Glance converted it)."""
        return {
            "image_id": str(image.id),
            "image_name": str(image.name),
            "visibility": str(image.visibility),
            "method": method,
            "sha512": sha512,
            "disk_format": str(image.disk_format),
            "converted": image.disk_format != SENT_FORMAT,
            "stored_hash_algo": str(image.hash_algo or ""),
            "stored_hash": str(image.hash_value or ""),
        }
