"""Reuse on Google Cloud (#32): an earlier build's checkpoint image made a new build's own, by a copy.

Compute Engine copies an image within a project with ``images.insert`` and a ``sourceImage``
(compute.v1 ``Image.sourceImage``: one of the sources an image is made from). So the new build gets
an image of its own, named, labelled and described as everything it makes, and the source build
keeps its checkpoint: claiming it instead (relabelling it the new build's) would take it from the
source, whose reset or redo could then no longer launch from it, and whose retention and the next
delivery would no longer find it.

Before anything is copied, the image is proven the source build's checkpoint after that milestone
as this target proves any image its build's (never on the record's word alone): in the target's
project, labelled ``managed-by`` and with the source's ``imagebuild-key`` (a digest of the whole
pipeline name and build id, :meth:`.gcp_names.GcpNames.key`), ``imagebuild-role: checkpoint`` and
``imagebuild-milestone`` of that milestone, and READY.

The copy is named after the new build and the milestone (:meth:`.gcp_names.GcpNames.checkpoint`,
the name a capture of that milestone gives) and described as a capture is (``<pipeline> <build>
after milestone N``: what proves it the pipeline's once the store no longer has the build), so a
retried adoption finds what an earlier attempt made: a copy of the same source image (its
``sourceImageId``, which tells the image from a later one given the same name) is taken as it is,
waited for while it is PENDING; a FAILED one, or one of another image, is deleted and made again;
an image of that name that is not provably the new build's is never touched and refuses the
adoption. The insert carries a ``requestId``, so the client's own retry of an insert whose answer
was lost does not make a second image (Compute Engine answers it with the first one's operation).
A copy that fails half-way (the operation ends in an error, never finishes within the bounded
wait, or the image never becomes READY) is deleted before the error is raised: no image is left
that no record names. (Should Compute Engine refuse that delete too, the image keeps the new
build's labels and description: the leak collector finds it as that build's.)
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.targets.base import Checkpoint

log = logging.getLogger(__name__)

ROLE = "checkpoint"  # what capture and claim_images label a checkpoint image, and so its copy
# An image found PENDING (an earlier attempt's copy, its operation unknown) is read again every
# POLL_S seconds for at most READY_WAIT_S: a copy of a large image takes minutes, not hours.
POLL_S = 10.0
READY_WAIT_S = 3600.0


class CheckpointCopy:
    """Copies of checkpoint images into a new build's ownership on one Google Cloud target."""

    def __init__(self, target: Any) -> None:
        self.target = target  # the GcpTarget (named, not imported: targets/gcp.py imports this module)

    def adopt(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """The new build's READY copy of ``source``'s checkpoint image (the image resource)."""
        t = self.target
        original = self.proven_checkpoint(build, source, checkpoint)
        name = t.names.checkpoint(build, checkpoint.code)
        existing = t._image(name)
        if existing is not None:
            if not t.is_builds(build, existing):
                raise InvalidInput(
                    "reuse",
                    f"an image {name} already exists in project {t.project} and is not build {build.build_id}'s "
                    "(labels imagebuild-key, managed-by): the checkpoint is not copied over it, and it is left alone",
                )
            if self._copy_of(existing, original, checkpoint.code) and existing.get("status") in ("READY", "PENDING"):
                log.info("image %s, build %s's copy of %s, was made by an earlier attempt", name, build.build_id,
                         original["name"])  # fmt: skip
                return self._ready_or_removed(build, name)
            log.info("image %s of build %s is not a usable copy of %s (%s): deleted, copied again", name,
                     build.build_id, original["name"], existing.get("status"))  # fmt: skip
            t._delete_image(build, name)
        body: dict[str, Any] = {
            "name": name,
            "sourceImage": original["selfLink"],
            "family": t.names.staging_family(),
            "description": f"{t.pipeline} {build.build_id} after milestone {checkpoint.code}",
            "labels": t.build_labels(build, checkpoint.code, ROLE),
        }
        if original.get("storageLocations"):  # where the source is kept, the copy is (not the default one)
            body["storageLocations"] = list(original["storageLocations"])
        request = t.compute.images().insert(project=t.project, body=body, requestId=str(uuid.uuid4()))
        try:
            t.wait(f"images.insert {name}", t.call(f"images.insert {name}", request))
        except BaseException:
            self._remove(build, name)
            raise
        copy = self._ready_or_removed(build, name)
        log.info("copied build %s's checkpoint %s after milestone %d to %s, build %s's", source.build_id,
                 original["name"], checkpoint.code, name, build.build_id)  # fmt: skip
        return copy

    def proven_checkpoint(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """``checkpoint.image`` if it is provably ``source``'s checkpoint after ``checkpoint.code``
        and READY (see the module's docstring); InvalidInput (TargetError: not READY) otherwise."""
        t = self.target
        where = f"milestones.{checkpoint.code}.outputs.checkpoint_image"
        if source.pipeline != t.pipeline:
            raise InvalidInput(
                "reuse", f"build {source.build_id} is of pipeline {source.pipeline!r}, not {t.pipeline!r}"
            )
        if source.build_id == build.build_id:
            raise InvalidInput("reuse", f"build {build.build_id} cannot start from its own checkpoint")
        found = t._owned_image(source, checkpoint.image)
        labels = (found or {}).get("labels") or {}
        if found is None or labels.get("imagebuild-role") != ROLE:
            raise InvalidInput(
                where,
                f"{checkpoint.image} is not a checkpoint image of build {source.build_id} (missing, in another "
                "project, or without that build's labels); it is not copied",
            )
        if labels.get("imagebuild-milestone") != f"m{checkpoint.code:03d}":
            shown = str(labels.get("imagebuild-milestone") or "").removeprefix("m")
            raise InvalidInput(
                where,
                f"{checkpoint.image} is build {source.build_id}'s checkpoint after milestone "
                f"{int(shown) if shown.isdigit() else shown or '?'}, not after {checkpoint.code}; it is not copied",
            )
        if found.get("status") != "READY":
            raise TargetError(f"Compute Engine: checkpoint image {found['name']} is {found.get('status')}, not READY")
        return found

    @staticmethod
    def _copy_of(image: dict[str, Any], original: dict[str, Any], code: int) -> bool:
        """Whether ``image`` was made from ``original`` itself (not an earlier image of its name) as
        the checkpoint after ``code``."""
        labels = image.get("labels") or {}
        return (
            bool(original.get("id"))
            and str(image.get("sourceImageId") or "") == str(original["id"])
            and labels.get("imagebuild-role") == ROLE
            and labels.get("imagebuild-milestone") == f"m{code:03d}"
        )

    def _ready_or_removed(self, build: BuildRecord, name: str) -> dict[str, Any]:
        """The copy once READY; one that fails, or is not READY within :data:`READY_WAIT_S`, is deleted."""
        try:
            return self._ready(build, name)
        except BaseException:
            self._remove(build, name)
            raise

    def _ready(self, build: BuildRecord, name: str) -> dict[str, Any]:
        t = self.target
        deadline = time.monotonic() + READY_WAIT_S
        while True:
            image = t._image(name)
            if image is None or not t.is_builds(build, image):
                raise TargetError(f"Compute Engine images.insert {name}: done, but the image is not there")
            status = image.get("status")
            if status == "READY":
                return image
            if status != "PENDING":
                raise TargetError(f"Compute Engine images.insert {name}: the copy is {status}")
            if time.monotonic() >= deadline:
                raise TargetError(
                    f"Compute Engine images.insert {name}: the copy is not READY after {READY_WAIT_S:.0f} s"
                )
            time.sleep(POLL_S)

    def _remove(self, build: BuildRecord, name: str) -> None:
        """Delete what a failed copy left (only if it is the build's); its error matters more."""
        try:
            if self.target._delete_image(build, name):
                log.info("deleted %s, a copy that failed half-way", name)
        except Exception as exc:
            log.warning("image %s, a copy that failed half-way, was not deleted: %s", name, exc)
