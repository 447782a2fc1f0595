"""Retention on Google Cloud (:mod:`.retire`): the pipeline's published images, deprecated first.

Published images are the sealed image in the pipeline's family (label ``imagebuild-role: final``:
publish shares it and copies it, it does not relabel it) and its copies in ``copy_locations``
(``copy``), in the target's project only (another project's are never listed), labelled
``managed-by`` and this pipeline's ``imagebuild-pipeline``, each found back to its build by its
``imagebuild-key`` label: only an image whose key is one of the pipeline's builds' (or a pruned
build's its description names) is listed, since the pipeline label alone is a lossy copy of the name
another pipeline's may share (:meth:`GcpPublishedImages.published_images`). A ``final`` image of a
build not delivered is that build's staged image: the rules keep it
(:func:`..build.image_retention.judge`).

Compute Engine deprecates before it deletes, and so does retention: an image past the policy is
first deprecated (state ``DEPRECATED``, the family's current image as its replacement, and
``deleted`` set :data:`DEPRECATED_FOR` ahead: users of the image see the warning and the date);
a later run deletes it once that date has passed. An image the publish deprecated already
(``deprecate_previous``) keeps its state and replacement and gets the date if it had none. The
family's current image (its newest image not deprecated, what ``images.getFromFamily`` resolves)
is referenced, so it stays.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_imagebuild.build.image_retention import PublishedImage
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.targets.base import MANAGED_BY
from airflow_provider_imagebuild.targets.gcp_names import label_value
from airflow_provider_imagebuild.targets.leaks import parse_time
from airflow_provider_imagebuild.targets.retire import DELETED, DEPRECATED, ImageRetiring

log = logging.getLogger(__name__)

PUBLISHED_ROLES = ("final", "copy")
DEPRECATED_STATES = ("DEPRECATED", "OBSOLETE", "DELETED")
# How long an image stays deprecated before a retention run deletes it: people launching it are
# warned (and see the date) for a week first.
DEPRECATED_FOR = timedelta(days=7)


class GcpPublishedImages(ImageRetiring):
    """The published images of one Google Cloud target's pipeline, in its project."""

    def __init__(self, target: Any, now: datetime | None = None) -> None:
        self.target = target  # a GcpTarget: its compute client, project, calls and waits
        self.now = now or datetime.now(timezone.utc)

    def _labels_ours(self, image: Mapping[str, Any] | None, key: str | None = None) -> bool:
        labels = (image or {}).get("labels") or {}
        return (
            labels.get("managed-by") == MANAGED_BY
            and labels.get("imagebuild-pipeline") == label_value(self.target.pipeline)
            and labels.get("imagebuild-role") in PUBLISHED_ROLES
            and bool(labels.get("imagebuild-key"))
            and (key is None or labels.get("imagebuild-key") == key)
        )

    def _listed(self) -> list[dict[str, Any]]:
        images = self.target.compute.images()
        flt = (f'(labels.managed-by = "{MANAGED_BY}") '
               f'(labels.imagebuild-pipeline = "{label_value(self.target.pipeline)}")')  # fmt: skip
        request = images.list(project=self.target.project, filter=flt)
        found: list[dict[str, Any]] = []
        while request is not None:
            page = self.target.call("images.list (retention)", request)
            found.extend(page.get("items") or [])
            request = images.list_next(request, page)
        return found

    def published_images(self, builds: Sequence[BuildRecord]) -> list[PublishedImage]:
        """The labelled images whose build key is one of the pipeline's builds' (or a pruned build's,
        :meth:`_pruned_build`). The pipeline label alone proves nothing: it is the name lowercased,
        other characters as ``_``, cut at 63, so ``Web.App``'s and ``web_app``'s images carry the same;
        the key, a digest of the whole pipeline name and the build id, tells them apart."""
        keys = {self.target.names.key_of(r.build_id): r.build_id for r in builds}
        found = []
        for image in self._listed():
            if not self._labels_ours(image):
                continue
            labels = image.get("labels") or {}
            key = str(labels["imagebuild-key"])
            build_id = keys.get(key) or self.target.names.described_build(image, key)
            if not build_id:
                log.info("image %s: its key is no build's of %s; left alone", image.get("name"), self.target.pipeline)
                continue
            where = ",".join(image.get("storageLocations") or [])  # "" : the project's default
            found.append(PublishedImage(str(image["selfLink"]), where, build_id,
                                        parse_time(image.get("creationTimestamp")),
                                        build_key=key, name=str(image["name"]),
                                        detail={"family": str(image.get("family") or "")}))  # fmt: skip
        return found

    def _current(self, family: str) -> dict[str, Any] | None:
        """The family's current image: its newest image not deprecated (any pipeline's)."""
        live = [i for i in self.target._family_images(family) if not (i.get("deprecated") or {}).get("state")]
        return max(live, key=lambda i: i.get("creationTimestamp", ""), default=None)

    def image_references(self, images: Sequence[PublishedImage]) -> dict[str, str]:
        refs: dict[str, str] = {}
        for family in sorted({i.detail.get("family", "") for i in images} - {""}):
            current = self._current(family)
            if current is not None:
                refs[str(current["selfLink"])] = f"the current image of family {family}"
        return {i.id: refs[i.id] for i in images if i.id in refs}

    def _due(self, image: Mapping[str, Any]) -> datetime | None:
        """When a deprecated image may be deleted (its deprecation's ``deleted`` date), or None."""
        status = image.get("deprecated") or {}
        if status.get("state") not in DEPRECATED_STATES:
            return None
        return parse_time(status["deleted"]) if status.get("deleted") else None

    def next_step(self, image: PublishedImage) -> str:
        found = self.target._image(image.name)
        status = (found or {}).get("deprecated") or {}
        due = self._due(found or {})
        if status.get("state") not in DEPRECATED_STATES or due is None:
            return f"deprecate (deleted from {(self.now + DEPRECATED_FOR).date()})"
        if due > self.now:
            return f"wait: deprecated, deleted from {due.date()}"
        return "delete"

    def retire_image(self, image: PublishedImage) -> str:
        found = self.target._image(image.name)
        if found is None or str(found.get("selfLink")) != image.id or not self._labels_ours(found, image.build_key):
            log.info("image %s is gone or no longer this pipeline's published image; left alone", image.id)
            return ""
        status = dict(found.get("deprecated") or {})
        due = self._due(found)
        if due is not None and due <= self.now:
            request = self.target.compute.images().delete(project=self.target.project, image=image.name)
            with self.target.maybe_missing() as done:
                done.append(self.target.wait(f"images.delete {image.name}",
                                             self.target.call(f"images.delete {image.name}", request)))  # fmt: skip
            log.info("retired image %s (deprecated, due since %s)", image.name, due)
            return DELETED if done else ""
        if due is not None:
            log.info("image %s is deprecated; deleted from %s", image.name, due)
            return ""
        if status.get("state") not in DEPRECATED_STATES:
            current = self._current(image.detail.get("family", "")) if image.detail.get("family") else None
            status = {"state": "DEPRECATED"}
            if current is not None and current.get("selfLink") != image.id:
                status["replacement"] = current["selfLink"]
        status["deleted"] = (self.now + DEPRECATED_FOR).isoformat(timespec="seconds")
        request = self.target.compute.images().deprecate(project=self.target.project, image=image.name, body=status)
        self.target.wait(f"images.deprecate {image.name}", self.target.call(f"images.deprecate {image.name}", request))
        log.info("deprecated image %s; a retention run deletes it from %s", image.name, status["deleted"])
        return DEPRECATED
