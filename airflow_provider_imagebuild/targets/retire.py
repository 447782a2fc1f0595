"""The hooks a publish destination writes for ``imagebuild retention`` (as :mod:`.leaks`' for gc):
list the pipeline's published images it can prove are its own, say which of them something still
refers to, and delete one after proving it again. Which ones go is decided once for every cloud
(:func:`..build.image_retention.judge`); the command records each deletion on the build's record.

Proof, as everywhere in the targets: the image is in the target's own account / subscription /
project / folder / catalog, carries the provider's mark and this pipeline's (and its build's)
tags or labels, and is a *published* image (never a checkpoint, a staged or a sealed image not yet
published: those are the build's and gc's). An image of another pipeline or account is never
listed, so never deleted; one whose tags changed since it was listed is left alone.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

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


def retirer_for(cloud: str, kind: str, target: Any, destination: Any = None) -> ImageRetiring | None:
    """The retention hooks of a publish destination of ``kind`` (``target``, ``catalog``,
    ``glance``...) on ``cloud``: over the pipeline's target, or over the destination's own settings
    (``destination``, a ``publish:`` entry); None where retention of it is not available yet. Each
    cloud's hooks live beside its target (imported here, when a retention runs)."""
    if isinstance(target, ImageRetiring) and kind == "target":
        return target
    if cloud == "local" and kind in ("target", "catalog"):
        from airflow_provider_imagebuild.targets.catalog_versions import CatalogVersions

        return CatalogVersions.of(target)
    if kind == "glance" and destination is not None and destination.glance is not None:
        from airflow_provider_imagebuild.clouds.openstack import OpenstackClients
        from airflow_provider_imagebuild.targets.glance_retire import DESTINATION, GlanceImages

        clients = OpenstackClients.from_settings(destination.glance, field_prefix=f"publish.{destination.label}")
        return GlanceImages(clients, target.pipeline, DESTINATION)
    if kind == "vsphere_library" and destination is not None and destination.vsphere_library is not None:
        from airflow_provider_imagebuild.clouds.vsphere import VsphereClients
        from airflow_provider_imagebuild.targets.vsphere_retire import LibraryItems

        where = f"publish.{destination.label}"
        settings = destination.vsphere_library
        session = VsphereClients.from_connection(settings.vsphere_conn_id, where=f"{where}.vsphere_conn_id")
        return LibraryItems(session, settings.library, f"{where}.library", target.pipeline)
    if kind != "target":
        return None
    if cloud == "aws":
        from airflow_provider_imagebuild.targets.aws_retire import AwsPublishedImages

        return AwsPublishedImages(target)
    if cloud == "gcp":
        from airflow_provider_imagebuild.targets.gcp_retire import GcpPublishedImages

        return GcpPublishedImages(target)
    if cloud == "azure":
        from airflow_provider_imagebuild.targets.azure_retire import AzurePublishedImages

        return AzurePublishedImages(target)
    if cloud == "openstack":
        from airflow_provider_imagebuild.targets.glance_retire import TARGET, GlanceImages

        return GlanceImages(target.clients, target.pipeline, TARGET)
    if cloud == "vsphere" and target.settings.content_library:
        from airflow_provider_imagebuild.targets.vsphere_retire import LibraryItems

        library = target.settings.content_library
        return LibraryItems(target.clients, library, "target.content_library", target.pipeline, target)
    return None
