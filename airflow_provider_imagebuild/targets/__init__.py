"""Build targets: where the build host lives and where images go (see :mod:`.base`; the clouds
that have one are listed in :mod:`.registry`).

This package's own module imports nothing of the targets: the spec reads :mod:`.registry` at DAG
parse time, and importing it must not load the target contract (:mod:`.base`, which reads the
spec's types) nor any cloud's code. A target is imported when a milestone runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.targets.registry import TARGETS

if TYPE_CHECKING:
    from airflow_provider_imagebuild.spec.pipeline import TargetSpec
    from airflow_provider_imagebuild.targets.base import Target


def target_class(cloud: str) -> type[Target]:
    """The class of ``cloud``'s target, imported now (its module holds the cloud's SDK imports)."""
    entry = TARGETS.get(cloud)
    if entry is None:
        raise InvalidInput("cloud", f"no build target for {cloud!r} yet (available: {', '.join(TARGETS)})")
    module, _, name = entry.path.partition(":")
    target: type[Target] = getattr(importlib.import_module(module), name)
    return target


def target_for(cloud: str, settings: TargetSpec, *, pipeline: str, image_type: str) -> Target:
    """The target of ``cloud``, with clients from Airflow connections (called at run time only)."""
    return target_class(cloud).from_settings(settings, pipeline=pipeline, image_type=image_type)


__all__ = ["target_class", "target_for"]
