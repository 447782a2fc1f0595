"""What a build still holds in its target, read from its record alone.

A build makes things in a cloud (or on this machine) and records each one the moment it exists:
the build host (metadata ``host_id``, written when the target launches it; emptied, and copied
to ``host_released``, when the publish removes it), an instance Packer kept for debugging
(``packer_kept_instance``, ``on_error: abort``), checkpoint images (a milestone's
``checkpoint_image`` output; the seal lists the ones it deleted in ``checkpoints_discarded``) and
the images made on the way to delivery (a milestone's ``image_id`` output, Packer's per-region
``images``). The record is what finds them again: once it is gone, nothing points at them. So
retention (:mod:`.retention`) asks :func:`holdings` before it removes the record of a build that
was not delivered.

Precisely, a record holds:

- its build host, while ``host_id`` is set and is not the ``host_released`` one (a host launched
  again after a release is held);
- the instance Packer kept, while ``packer_kept_instance`` is set (nothing removes it but a person);
- each checkpoint image of a completed milestone, unless the seal recorded that milestone's
  attempt as deleted (a later attempt's new image is held again);
- while the build is not delivered, each other image a completed milestone produced (the sealed
  final image, Packer's copies in other regions): staged, not published. A build that failed in
  the middle of publishing still holds its sealed image. Once the plan's last milestone (100,
  publish) is completed, those images are the delivered product, owned where they were published.
  A milestone taken from an earlier build (an attempt of kind ``reused``, #32) made nothing: an
  image its outputs name is the earlier build's, never held here; only the checkpoint it records
  is, the build's own copy of the earlier one's (``Target.adopt_checkpoint``).

What an abandon deleted, or found gone, is listed in the record's ``released`` and held no more.

What was never recorded (an image a failed attempt made before it could record it) cannot be
known here; the targets tag what they make with the build id for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_imagebuild.build.checkpoints import CHECKPOINT_OUTPUT, discarded_checkpoints
from airflow_provider_imagebuild.build.record import REUSED, BuildRecord

IMAGE_OUTPUT = "image_id"
PACKER_IMAGES_OUTPUT = "images"  # Packer's artifact per region: {"us-east-1": "ami-...", ...}
HOST_ID = "host_id"
HOST_RELEASED = "host_released"
PACKER_KEPT_INSTANCE = "packer_kept_instance"

# Kinds of holding, as ``--json`` shows them, and how a sentence names them.
KINDS = {
    "host": "build host {id}",
    "packer_instance": "instance {id} kept by Packer (on_error: abort)",
    "checkpoint": "checkpoint image {id}",
    "image": "staged image {id}",
}


@dataclass(frozen=True)
class Holding:
    """One thing a build made and recorded as existing: ``kind`` (a key of :data:`KINDS`), its id,
    and the milestone whose outputs recorded it (None for the build's metadata)."""

    kind: str
    id: str
    milestone: int | None = None

    def __str__(self) -> str:
        where = f" (milestone {self.milestone})" if self.milestone is not None else ""
        return KINDS[self.kind].format(id=self.id) + where

    def to_public(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "milestone": self.milestone}


def checkpoint_images(build: BuildRecord) -> dict[int, str]:
    """Every checkpoint image the build's completed milestones recorded (deleted ones included)."""
    return {
        code: str(ms.outputs[CHECKPOINT_OUTPUT])
        for code, ms in build.milestones.items()
        if ms.outputs.get(CHECKPOINT_OUTPUT)
    }


def holdings(build: BuildRecord) -> list[Holding]:
    """What ``build`` still holds (see the module's docstring): the host first, then checkpoint
    images and staged images in plan order, each id once (none an abandon released)."""
    released = set(build.released)
    return [h for h in _recorded(build) if h.id not in released]


def _recorded(build: BuildRecord) -> list[Holding]:
    """What the record says the build made and did not remove in the course of the build."""
    meta = build.metadata
    found: list[Holding] = []
    host = meta.get(HOST_ID, "")
    if host and host != meta.get(HOST_RELEASED, ""):
        found.append(Holding("host", host))
    if meta.get(PACKER_KEPT_INSTANCE):
        found.append(Holding("packer_instance", meta[PACKER_KEPT_INSTANCE]))
    gone = discarded_checkpoints(build)
    deleted: set[str] = set()
    for code, image in sorted(checkpoint_images(build).items()):
        if (code, build.milestones[code].attempt) in gone:
            deleted.add(image)
        else:
            found.append(Holding("checkpoint", image, code))
    if not build.delivered:
        seen = {h.id for h in found} | deleted
        for code in build.completed:
            attempt = build.completed_attempt(code)
            if attempt is not None and attempt.kind == REUSED:
                continue  # the source's images: it made them, and holds or published them
            for image in _images(build.milestones[code].outputs):
                if image not in seen:
                    seen.add(image)
                    found.append(Holding("image", image, code))
    return found


def _images(outputs: Mapping[str, Any]) -> list[str]:
    """The image ids a milestone's outputs name (its ``image_id`` and Packer's per-region ones)."""
    named = [outputs.get(IMAGE_OUTPUT)]
    per_region = outputs.get(PACKER_IMAGES_OUTPUT)
    if isinstance(per_region, Mapping):
        named.extend(per_region.values())
    return [str(image) for image in named if isinstance(image, str) and image]
