"""Which retention hooks (:mod:`.retire`) a publish destination has: the target's own, the local
catalog's, or a Glance or vSphere library destination's from its own settings. Apart from the
contract, which each cloud's hooks import: this module imports each of them, when a retention runs.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_imagebuild.targets.retire import ImageRetiring


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
