"""Seal (95) and publish (100): the final image, and delivering it to its users.

Seal brings the build host up to date (replaying if it had to be relaunched), optionally runs a
clean-up playbook (caches, logs, machine id, build keys), captures the final image and
deletes the checkpoint images the spec does not keep. Publish copies the image to the target
regions, shares and tags it, records it where consumers look (an SSM parameter per pipeline on
AWS), emits the Airflow Asset event ``imagebuild://<cloud>/<pipeline>`` so that downstream DAGs
can run on a new image, and removes the build host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetAlias

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.operators.target import TargetMilestoneOperator
from airflow_provider_imagebuild.targets.base import (
    DISCARDED_METADATA,
    IMAGE_OUTPUT,
    Host,
    checkpoint_images,
    discarded_checkpoints,
)


def image_asset(cloud: str, pipeline: str) -> Asset:
    """The Asset a pipeline's new images are announced on (schedule downstream DAGs on it)."""
    return Asset(uri=f"imagebuild://{cloud}/{pipeline}", name=f"imagebuild_{cloud}_{pipeline}", group="image")


def image_alias(cloud: str, pipeline: str) -> AssetAlias:
    """The publish task's declared outlet. An alias, resolved to :func:`image_asset` when the task
    runs: declaring an ``Asset`` at parse time makes Airflow load every provider's asset handlers
    (the Amazon provider's import boto3), and DAG files must not import cloud SDKs."""
    return AssetAlias(name=f"imagebuild_{cloud}_{pipeline}_images", group="image")


class SealMilestoneOperator(TargetMilestoneOperator):
    ui_color = "#fbf3e0"

    def __init__(
        self,
        *,
        playbook: str | None = None,
        extravars: Mapping[str, Any] | None = None,
        keep_checkpoints: Sequence[int] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.playbook = playbook
        self.extravars = dict(extravars or {})
        self.keep_checkpoints = tuple(keep_checkpoints)

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        host = self.ensure_host(build, session)
        outputs: dict[str, Any] = {}
        if self.playbook:
            outputs.update(self.run_playbook(Path(self.playbook), self.state, self.extravars, host, build, session))
        target = self.get_target()
        self.log_output("capturing the final image")
        outputs.update(target.capture(build, host, self.state, final=True))
        discard = {code: image for code, image in checkpoint_images(build).items() if code not in self.keep_checkpoints}
        if discard:
            gone = discarded_checkpoints(build) | {(c, build.milestones[c].attempt) for c in discard}
            # Recorded before the images go: a reset later must not launch a host from them.
            listed = ",".join(f"{c}@{a}" for c, a in sorted(gone))
            session.set_metadata({DISCARDED_METADATA: listed}, actor=f"milestone {self.state}")
        outputs["discarded_checkpoints"] = target.discard(build, list(discard.values()))
        return outputs


class PublishMilestoneOperator(TargetMilestoneOperator):
    ui_color = "#e0f4fb"

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        image = build.merged_outputs().get(IMAGE_OUTPUT)
        if not image:
            raise InvalidInput("image_id", "no final image recorded: the seal milestone (95) must capture one first")
        target = self.get_target()
        self.log_output(f"publishing image {image}")
        outputs = target.publish(build, str(image))
        host = Host.from_metadata(build.metadata)
        if host is not None:
            target.cleanup(build, host)
            session.set_metadata({"host_id": "", "host_released": host.id}, actor=f"milestone {self.state}")
        outlet_events = context.get("outlet_events")
        if outlet_events is not None:
            extra = {"build_id": build.build_id, "image_id": str(image), **outputs}
            outlet_events[image_alias(self.cloud, self.pipeline)].add(
                image_asset(self.cloud, self.pipeline), extra=extra
            )
        return {"image_id": str(image), **outputs}
