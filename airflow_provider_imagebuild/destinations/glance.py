"""Publish the sealed image file to an OpenStack Image service (Glance v2).

The image is created with the build's ownership properties (``imagebuild_key``...) and the
spec's, then its data goes up by Glance's interoperable import (``glance-direct``: staged, then
imported) where the cloud offers it, else by a plain upload. Glance computes ``checksum`` (MD5)
and ``os_hash_value`` (SHA-512 by default) of what it stored; both are compared with the file's.
A mismatch deletes the image and fails the destination (retried: a transfer went wrong).

A retry finds its own image by name, project and key: kept if it is active with the file's
SHA-512, else (an upload cut short, a stale image of an earlier seal) deleted and made again. An
image is the build's only if the login's project owns it (Glance's ``owner``, set from the token)
and it carries the build's key: the key is a digest anyone can compute, and Glance lists other
projects' public and shared images, so images of other projects are never kept, changed or deleted
(one of the same name is simply another project's). One of this project without the build's key
makes the destination fail, naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.openstack import OpenstackClients, openstack_errors
from airflow_provider_imagebuild.destinations import Upload
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.spec_publish import GlanceDestination
from airflow_provider_imagebuild.targets.base import MANAGED_BY, build_digest, file_hash
from airflow_provider_imagebuild.targets.openstack import KEY, MANAGED

log = logging.getLogger(__name__)

UPLOAD_TIMEOUT_S = 3 * 3600


class GlanceUpload(Upload[GlanceDestination]):
    def publish(self, build: BuildRecord, path: Path) -> dict[str, Any]:
        s = self.settings
        clients = OpenstackClients.from_settings(s, field_prefix=f"publish.{self.label}")
        conn = clients.conn
        key = build_digest(self.pipeline, build.build_id, 20)
        name = s.image_name or f"{self.pipeline}-{build.build_id}"
        sha512, md5 = file_hash(path, "sha512"), file_hash(path, "md5")
        with openstack_errors(f"list images {name}"):
            same_name = [i for i in conn.image.images(name=name) if i.name == name]
        for image in same_name:
            if not clients.in_project(image.owner):
                log.info("Glance image %s (%s) is another project's (%s); left alone", name, image.id, image.owner)
                continue
            if (image.properties or {}).get(KEY) != key:
                raise InvalidInput(
                    f"publish.{self.label}.image_name", f"an image {name} that is not this build's exists"
                )
            if image.status == "active" and image.hash_value == sha512:
                log.info("Glance image %s (%s) already holds this image; kept", name, image.id)
                return self._outputs(image, "kept", sha512)
            log.info("deleting Glance image %s (%s, %s): an earlier, unfinished upload", name, image.id, image.status)
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
        }  # fmt: skip
        log.info("uploading %s to Glance as %s (%s, %d bytes)", path.name, name, method, path.stat().st_size)
        with openstack_errors(f"upload image {name}"):
            image = conn.image.create_image(
                name,
                filename=str(path),
                disk_format="qcow2",
                container_format="bare",
                visibility=s.visibility,
                allow_duplicates=True,  # the name was checked above, with the build's key
                use_import=method == "glance-direct",
                meta=properties,
                md5=md5,
                sha256=file_hash(path, "sha256"),
                wait=True,
                timeout=UPLOAD_TIMEOUT_S,
            )
            image = conn.image.get_image(image.id)
        if image.checksum != md5 or (image.hash_algo == "sha512" and image.hash_value != sha512):
            with openstack_errors(f"delete image {image.id}"):
                conn.image.delete_image(image, ignore_missing=True)
            raise TargetError(
                f"Glance image {name}: stored checksum {image.checksum} / {image.hash_value} does not match the "
                f"file's {md5} / {sha512}; deleted (the upload is retried)"
            )
        log.info("Glance image %s (%s) is active; checksums verified", name, image.id)
        return self._outputs(image, method, sha512)

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
        return {
            "image_id": str(image.id),
            "image_name": str(image.name),
            "visibility": str(image.visibility),
            "method": method,
            "sha512": sha512,
        }
