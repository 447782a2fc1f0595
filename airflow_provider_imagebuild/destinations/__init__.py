"""Publish destinations beyond the target's own: where a sealed image *file* is uploaded (Glance,
a vSphere content library). Each is one module with one class, ``publish(build, path) -> outputs``;
the publish milestone records each destination's outcome on its own (operators/image.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_imagebuild.build.record import BuildRecord
    from airflow_provider_imagebuild.spec.publish import PublishSpec


Settings = TypeVar("Settings")


class FileDestination(Protocol):
    def publish(self, build: BuildRecord, path: Path) -> dict[str, Any]:
        """Upload the image file (idempotent: what an earlier try finished is found and kept)."""


class Upload(Generic[Settings]):
    """What every upload knows: its settings, its name in the spec (``publish.<label>`` in
    errors), and the pipeline it publishes for (names and the build's key come from it)."""

    def __init__(self, settings: Settings, label: str, *, pipeline: str, image_type: str) -> None:
        self.settings = settings
        self.label = label
        self.pipeline = pipeline
        self.image_type = image_type


def destination_for(spec: PublishSpec, *, pipeline: str, image_type: str) -> FileDestination:
    """The uploader of a ``glance`` or ``vsphere_library`` entry (imported when publish runs)."""
    if spec.glance is not None:
        from airflow_provider_imagebuild.destinations.glance import GlanceUpload

        return GlanceUpload(spec.glance, spec.label, pipeline=pipeline, image_type=image_type)
    if spec.vsphere_library is not None:
        from airflow_provider_imagebuild.destinations.vsphere_library import LibraryUpload

        return LibraryUpload(spec.vsphere_library, spec.label, pipeline=pipeline, image_type=image_type)
    raise ValueError(f"publish destination {spec.label} uploads no file")
