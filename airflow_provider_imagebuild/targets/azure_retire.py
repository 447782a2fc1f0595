"""Retention on Azure (:mod:`.retire`): the pipeline's versions in its Compute Gallery image.

Published images are the versions of ``target.gallery``/``target.gallery_image`` in the target's
own subscription and resource group (the only gallery listed) tagged ``ManagedBy``, this
``Pipeline``, a ``BuildId`` and ``Role: published``, which is what publish writes. A version's
replicas in ``replication_regions`` are part of it and go with it. Its source, the build's sealed
managed image (kept by abandon and discard as "the source of a gallery version"), is deleted after
the version when it is in the same group and carries the same build's tags.

Referenced: the gallery's ``latest``, which resolves to a version not excluded from latest. Which
one exactly is Azure's to say (the highest version number, the docs say, and a deployment may rely
on the newest by publishing date): both are kept, whichever pipeline's the other versions are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow_provider_imagebuild.build.image_retention import PublishedImage
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.targets.base import MANAGED_BY
from airflow_provider_imagebuild.targets.leaks import parse_time
from airflow_provider_imagebuild.targets.retire import DELETED, ImageRetiring

log = logging.getLogger(__name__)

PUBLISHED = "published"


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


class AzurePublishedImages(ImageRetiring):
    """The gallery image versions of one Azure target's pipeline."""

    def __init__(self, target: Any) -> None:
        self.target = target  # an AzureTarget: its clients, group, settings, api and waits

    @property
    def gallery(self) -> tuple[str, str] | None:
        s = self.target.settings
        return (s.gallery, s.gallery_image) if s.gallery and s.gallery_image else None

    def _in_group(self, resource_id: str) -> bool:
        from airflow_provider_imagebuild.targets.azure import parse_id

        parts = parse_id(resource_id) or {}
        return (
            parts.get("subscription", "").lower() == self.target.clients.subscription_id.lower()
            and parts.get("resource_group", "").lower() == self.target.group.lower()
        )

    def _ours(self, resource: Any, build_id: str | None = None, roles: tuple[str, ...] = (PUBLISHED,)) -> bool:
        from airflow_provider_imagebuild.targets.azure import _get

        tags = _get(resource, "tags") or {}
        return (
            tags.get("ManagedBy") == MANAGED_BY
            and tags.get("Pipeline") == self.target.pipeline
            and tags.get("Role") in roles
            and bool(tags.get("BuildId"))
            and (build_id is None or tags.get("BuildId") == build_id)
            and self._in_group(str(_get(resource, "id") or ""))
        )

    def _versions(self) -> list[Any]:
        """Every version of the gallery image, any pipeline's (the ``latest`` is chosen among all)."""
        if self.gallery is None:
            return []
        gallery, image = self.gallery
        with self.target.api(f"list versions of gallery image {gallery}/{image} (retention)"):
            return list(self.target.compute.gallery_image_versions.list_by_gallery_image(self.target.group, gallery,
                                                                                        image))  # fmt: skip

    def published_images(self, builds: Sequence[BuildRecord]) -> list[PublishedImage]:
        from airflow_provider_imagebuild.targets.azure import _get

        found = []
        for version in self._versions():
            if not self._ours(version):
                continue
            published = parse_time(_get(version, "properties", "publishingProfile", "publishedDate"))
            found.append(PublishedImage(str(_get(version, "id")), "", str(_get(version, "tags")["BuildId"]), published,
                                        name=str(_get(version, "name"))))  # fmt: skip
        return found

    def image_references(self, images: Sequence[PublishedImage]) -> dict[str, str]:
        from airflow_provider_imagebuild.targets.azure import _get

        live = [v for v in self._versions()
                if not _get(v, "properties", "publishingProfile", "excludeFromLatest")]  # fmt: skip
        if not live or self.gallery is None:
            return {}
        what = f"the latest of gallery image {'/'.join(self.gallery)}"
        highest = max(live, key=lambda v: _version_key(str(_get(v, "name"))))
        newest = max(live, key=lambda v: str(_get(v, "properties", "publishingProfile", "publishedDate") or ""))
        latest = {str(_get(highest, "id")).lower(), str(_get(newest, "id")).lower()}
        return {i.id: what for i in images if i.id.lower() in latest}

    def retire_image(self, image: PublishedImage) -> str:
        from airflow_provider_imagebuild.targets.azure import _get

        if self.gallery is None:
            return ""
        gallery, definition = self.gallery
        versions = self.target.compute.gallery_image_versions
        with self.target.maybe_missing(f"GET gallery image version {image.name}") as found:
            found.append(versions.get(self.target.group, gallery, definition, image.name))
        same = bool(found) and str(_get(found[0], "id")).lower() == image.id.lower()
        if not same or not self._ours(found[0], image.build_id):
            log.info("gallery version %s is gone or no longer this pipeline's; left alone", image.id)
            return ""
        source = str(_get(found[0], "properties", "storageProfile", "source", "id") or "")
        with self.target.maybe_missing(f"DELETE gallery image version {image.name}") as done:
            done.append(self.target._wait(versions.begin_delete(self.target.group, gallery, definition, image.name)))
        log.info("retired gallery image version %s of build %s", image.id, image.build_id)
        self._delete_source(source, image.build_id)
        return DELETED

    def _delete_source(self, source: str, build_id: str) -> None:
        """The version's source managed image, when it is the same build's in the target's group."""
        from airflow_provider_imagebuild.targets.azure import parse_id

        parts = parse_id(source) or {}
        if parts.get("type", "").lower() != "images" or parts.get("children"):
            return
        images = self.target.compute.images
        with self.target.maybe_missing(f"GET image {parts.get('name')}") as found:
            found.append(images.get(self.target.group, parts["name"]))
        if not found or not self._ours(found[0], build_id, roles=("final", PUBLISHED)):
            log.info("source %s of the version is gone or not build %s's; left alone", source, build_id)
            return
        with self.target.maybe_missing(f"DELETE image {parts['name']}") as done:
            done.append(self.target._wait(images.begin_delete(self.target.group, parts["name"])))
        log.info("deleted the version's source image %s", source)
