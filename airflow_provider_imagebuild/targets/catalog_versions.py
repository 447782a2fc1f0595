"""Retention of the local image catalog: the versions ``<catalog>/<pipeline>/versions/<build_id>/``
the local target's publish made (:mod:`.local`), listed and deleted for ``imagebuild retention``.

A version is the pipeline's when it is a real folder (no symlink) directly under the pipeline's
``versions`` folder whose ``metadata.json`` names this pipeline and that build id, which is what
publish writes. The version ``latest`` points at is referenced, so it stays. A version's time is
when its ``metadata.json`` was written (its publish). ``target.catalog_keep`` (publish drops the
oldest beyond N at once) still works; retention is the same idea with ``keep_days`` and a record
of each deletion, run when the operator asks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.image_retention import PublishedImage
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import TargetError
from airflow_provider_imagebuild.targets.retire import DELETED, ImageRetiring

log = logging.getLogger(__name__)

VERSIONS = "versions"  # as targets/local.py's
LATEST = "latest"


class CatalogVersions(ImageRetiring):
    """The published versions of one pipeline in one local catalog folder."""

    def __init__(self, catalog: Path, pipeline: str) -> None:
        self.folder = catalog / pipeline
        self.pipeline = pipeline

    @classmethod
    def of(cls, target: Any) -> CatalogVersions:
        """The catalog of a local target (its ``catalog`` folder and pipeline)."""
        return cls(Path(target.catalog), str(target.pipeline))

    def _version(self, build_id: str) -> Path | None:
        """The version folder of ``build_id`` when it is what publish made (see the module's
        docstring), else None."""
        version = self.folder / VERSIONS / build_id
        if build_id in ("", ".", "..") or "/" in build_id or version.is_symlink() or not version.is_dir():
            return None
        try:
            meta = json.loads((version / "metadata.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("pipeline") != self.pipeline or meta.get("build_id") != build_id:
            return None
        return version

    def published_images(self, builds: Sequence[BuildRecord]) -> list[PublishedImage]:
        versions = self.folder / VERSIONS
        if versions.is_symlink() or not versions.is_dir():
            return []
        found = []
        for entry in sorted(versions.iterdir()):
            version = self._version(entry.name)
            if version is not None:
                written = datetime.fromtimestamp((version / "metadata.json").stat().st_mtime, timezone.utc)
                found.append(PublishedImage(str(version), "", entry.name, written, name=entry.name))
        return found

    def _latest(self) -> str:
        """The version folder ``latest`` points at ("" when it points nowhere)."""
        latest = self.folder / LATEST
        if not latest.is_symlink():
            return ""
        return str(self.folder / VERSIONS / Path(os.readlink(latest)).name)

    def image_references(self, images: Sequence[PublishedImage]) -> dict[str, str]:
        latest = self._latest()
        return {i.id: f"the catalog's {self.folder / LATEST}" for i in images if latest and i.id == latest}

    def retire_image(self, image: PublishedImage) -> str:
        version = self._version(image.build_id)
        if version is None or str(version) != image.id or str(version) == self._latest():
            log.info("catalog version %s is gone, not this pipeline's, or latest; left alone", image.id)
            return ""
        from airflow_provider_imagebuild.targets.local_leaks import has_mount_inside

        if has_mount_inside(version):  # a share mounted to serve the image: rmtree would empty it
            raise TargetError(f"{version} has a file system mounted inside; left alone (unmount it first)")
        try:
            shutil.rmtree(version)
        except OSError as exc:  # part of it may be gone: said, and the next run finishes it
            raise TargetError(f"{version} could not be deleted whole: {exc.strerror or exc}") from None
        log.info("retired catalog version %s", version)
        return DELETED
