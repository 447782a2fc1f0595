"""Build targets: where the build host lives and where images go (see :mod:`.base`; the clouds
that have one are listed in :mod:`.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.targets.base import Checkpoint, Host, Target, latest_checkpoint
from airflow_provider_imagebuild.targets.registry import TARGETS

if TYPE_CHECKING:
    from airflow_provider_imagebuild.spec import TargetSpec


def target_for(cloud: str, settings: TargetSpec, *, pipeline: str, image_type: str) -> Target:
    """The target of ``cloud``, with clients from Airflow connections (called at run time only)."""
    entry = TARGETS.get(cloud)
    if entry is None:
        raise InvalidInput("cloud", f"no build target for {cloud!r} yet (available: {', '.join(TARGETS)})")
    return entry.load().from_settings(settings, pipeline=pipeline, image_type=image_type)


__all__ = ["Checkpoint", "Host", "Target", "latest_checkpoint", "target_for"]
