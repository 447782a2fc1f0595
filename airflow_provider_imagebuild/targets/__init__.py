"""Build targets: where the build host lives and where images go (see :mod:`.base`)."""

from __future__ import annotations

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec import TargetSpec
from airflow_provider_imagebuild.targets.base import Checkpoint, Host, Target, latest_checkpoint


def target_for(cloud: str, settings: TargetSpec, *, pipeline: str, image_type: str) -> Target:
    """The target of ``cloud``, with clients from Airflow connections (called at run time only)."""
    if cloud == "aws":
        from airflow_provider_imagebuild.targets.aws import AwsTarget

        return AwsTarget.from_connection(settings, pipeline=pipeline, image_type=image_type)
    if cloud == "local":
        from airflow_provider_imagebuild.targets.local import LocalTarget

        return LocalTarget(settings, pipeline=pipeline, image_type=image_type)
    raise InvalidInput("cloud", f"no build target for {cloud!r} yet (available: aws, local)")


__all__ = ["Checkpoint", "Host", "Target", "latest_checkpoint", "target_for"]
