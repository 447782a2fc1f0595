"""Retention on OpenStack (:mod:`.retire`): the pipeline's published Glance images of the login's project.

Two kinds of publish put images in a Glance, and both are retired here:

- the **openstack target** publishes its sealed image (a snapshot of the build server, marked
  ``imagebuild_role: final``) by setting ``imagebuild_published: true`` on it (then visibility and
  members): only those images are published; checkpoints and a sealed image not published are the
  build's, never retention's;
- a **glance destination** of a local pipeline (``publish: - glance: {...}``) uploads the sealed
  file as an image of its own, with the build's marks and no role: every such image is published.

Proof, as the target's and the destination's own: Glance's ``owner`` is the login's project (set
from the token: another project's look-alike, public or shared, is never listed) **and** the
image carries ``imagebuild_managed_by``, this ``imagebuild_pipeline``, the build id and its key,
read again just before the delete. Referenced: an image a server of the project was booted from
(Nova's ``image.id``), so a rebuild or an evacuation still finds it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_imagebuild.build.image_retention import PublishedImage
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.clouds.openstack import openstack_errors
from airflow_provider_imagebuild.errors import NotFound
from airflow_provider_imagebuild.targets.base import MANAGED_BY
from airflow_provider_imagebuild.targets.leaks import parse_time
from airflow_provider_imagebuild.targets.openstack import KEY, MANAGED
from airflow_provider_imagebuild.targets.retire import DELETED, ImageRetiring

log = logging.getLogger(__name__)

TARGET, DESTINATION = "target", "destination"  # whose publish made the images


class GlanceImages(ImageRetiring):
    """The published images of one pipeline in one Glance (an openstack target's or a destination's)."""

    def __init__(self, clients: Any, pipeline: str, made_by: str) -> None:
        self.clients = clients  # OpenstackClients: the connection and the login's project
        self.pipeline = pipeline
        self.made_by = made_by

    def _published(self, marks: Mapping[str, Any] | None) -> bool:
        marks = marks or {}
        if marks.get(MANAGED) != MANAGED_BY or marks.get("imagebuild_pipeline") != self.pipeline:
            return False
        if not marks.get("imagebuild_build") or not marks.get(KEY):
            return False
        if self.made_by == TARGET:
            return marks.get("imagebuild_role") == "final" and marks.get("imagebuild_published") == "true"
        return not marks.get("imagebuild_role")  # an upload of the sealed file: the published image itself

    def published_images(self, builds: Sequence[BuildRecord]) -> list[PublishedImage]:
        with openstack_errors("list images (retention)"):
            images = list(self.clients.conn.image.images())
        found = []
        for image in images:
            marks = image.properties or {}
            if self.clients.in_project(image.owner) and self._published(marks) and image.status != "deleted":
                found.append(PublishedImage(str(image.id), "", str(marks["imagebuild_build"]),
                                            parse_time(image.created_at), build_key=str(marks[KEY]),
                                            name=str(image.name or "")))  # fmt: skip
        return found

    def image_references(self, images: Sequence[PublishedImage]) -> dict[str, str]:
        wanted = {i.id for i in images}
        with openstack_errors("list servers (retention)"):
            servers = list(self.clients.conn.compute.servers(details=True))
        refs: dict[str, str] = {}
        for server in servers:
            booted = server.image  # a mapping or the SDK's image resource, by the SDK's version
            image_id = str((booted.get("id") if isinstance(booted, Mapping) else getattr(booted, "id", None)) or "")
            if image_id in wanted and self.clients.in_project(server.project_id):
                refs.setdefault(image_id, f"server {server.name} ({server.id}) booted from it")
        return refs

    def retire_image(self, image: PublishedImage) -> str:
        try:
            with openstack_errors(f"image {image.id}"):
                found = self.clients.conn.image.get_image(image.id)
        except NotFound:
            return ""
        marks = found.properties or {}
        if (
            not self.clients.in_project(found.owner)
            or not self._published(marks)
            or str(marks.get("imagebuild_build")) != image.build_id
            or str(marks.get(KEY)) != image.build_key
        ):
            log.info("Glance image %s is no longer this pipeline's published image; left alone", image.id)
            return ""
        with openstack_errors(f"delete image {image.id} (retention)"):
            self.clients.conn.image.delete_image(found, ignore_missing=True)
        log.info("retired Glance image %s (%s) of build %s", found.name, image.id, image.build_id)
        return DELETED
