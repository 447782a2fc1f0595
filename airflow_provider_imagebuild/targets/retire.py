"""The hooks a publish destination writes for ``imagebuild retention`` (as :mod:`.leaks`' for gc):
list the pipeline's published images it can prove are its own, say which of them something still
refers to, and delete one after proving it again. Which ones go is decided once for every cloud
(:func:`..build.image_retention.judge`); the command records each deletion on the build's record.

Proof, as everywhere in the targets: the image is in the target's own account / subscription /
project / folder / catalog, carries the provider's mark and this pipeline's (and its build's)
tags or labels, and is a *published* image (never a checkpoint, a staged or a sealed image not yet
published: those are the build's and gc's). An image of another pipeline or account is never
listed, so never deleted; one whose tags changed since it was listed is left alone.

Which hooks a destination has is :func:`.retirers.retirer_for`'s (it imports every cloud's, which
import this contract).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from airflow_provider_imagebuild.build.image_retention import PublishedImage
from airflow_provider_imagebuild.build.record import BuildRecord

DELETED, DEPRECATED = "deleted", "deprecated"  # what retire_image did


class ImageRetiring:
    """A destination whose published images retention can list and delete."""

    @abstractmethod
    def published_images(self, builds: Sequence[BuildRecord]) -> list[PublishedImage]:
        """Every published image of this pipeline the target can prove is its own. ``builds``: the
        pipeline's records in the store, which may name places the spec no longer lists (an AMI
        copied to a region since dropped from ``publish_regions`` is still found there)."""

    def image_references(self, images: Sequence[PublishedImage]) -> dict[str, str]:
        """Image id -> what still refers to it (a launch template version, an SSM parameter, a
        gallery's or a catalog's latest), for those ``images`` the cloud lets the target check."""
        return {}

    @abstractmethod
    def retire_image(self, image: PublishedImage) -> str:
        """Retire ``image`` after proving again that it is this pipeline's published image of that
        build: :data:`DELETED` (with what it is made of: an AMI's snapshots), :data:`DEPRECATED`
        (a cloud that deprecates before it deletes: Compute Engine), or "" when nothing was done
        (gone already, no longer provably ours, or deprecated and not yet due)."""

    def next_step(self, image: PublishedImage) -> str:
        """What :meth:`retire_image` would do to ``image`` now, for the dry run's answer."""
        return "delete"
