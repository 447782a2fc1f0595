"""Seal (95) and publish (100): the final image, and delivering it to its users.

Seal brings the build host up to date (replaying if it had to be relaunched), optionally runs a
clean-up playbook (caches, logs, machine id, build keys), captures the final image, boots it once
and runs the verification playbook on it (``target.boot.before_publish``: the seal fails if it does
not boot, naming the check that failed and quoting the serial console, and keeps the checkpoints
for the fix), and deletes the checkpoint images the spec does not keep. The boot check belongs to
the seal, not to publish: a seal is only complete with an image that boots, so the build stops
before 100 and a cleared seal makes and checks a new image. Right before the capture, the seal
writes the image's bill of materials (CycloneDX, :mod:`.packages`) from the host's package
database, and checks the spec's ``policy:`` again if the packages are not the ones milestone 90
checked; publish, in turn, refuses a sealed
image without a passed check of that very image (its id and SHA-256), so no destination ever gets
one (a seal recorded by hand, or by a version without boot checks). Publish copies the image to the target
regions, shares and tags it, records it where consumers look (an SSM parameter per pipeline on
AWS), emits the Airflow Asset event ``imagebuild://<cloud>/<pipeline>`` so that downstream DAGs
can run on a new image, and removes the build host.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from airflow_provider_imagebuild.build.checkpoints import KEPT_FOR_REUSE
from airflow_provider_imagebuild.build.record import BuildRecord, format_ts
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, TargetError
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.operators.target import (
    BOOT_CHECKED_IMAGE,
    BOOT_CHECKED_SHA256,
    TargetMilestoneOperator,
)
from airflow_provider_imagebuild.spec.publish import PublishSpec
from airflow_provider_imagebuild.targets.base import (
    DISCARDED_METADATA,
    IMAGE_OUTPUT,
    Host,
    checkpoint_images,
    discarded_checkpoints,
)

if TYPE_CHECKING:
    from airflow_provider_imagebuild.spec.policy import PolicySpec


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
        policy: PolicySpec | None = None,
        policy_base: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.playbook = playbook
        self.extravars = dict(extravars or {})
        self.keep_checkpoints = tuple(keep_checkpoints)
        self.policy = policy
        self.policy_base = policy_base

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        host = self.ensure_host(build, session)
        outputs: dict[str, Any] = {}
        if self.playbook:
            outputs.update(self.run_playbook(Path(self.playbook), self.state, self.extravars, host, build, session))
        target = self.get_target()
        # Recorded first, so that the final image's own tags or labels can carry it.
        build = session.set_metadata(self.built_with(build), actor=f"milestone {self.state}")
        outputs.update(self.bill_of_materials(build, host, session))
        self.log_output("capturing the final image")
        outputs.update(target.capture(build, host, self.state, final=True))
        outputs.update(self.sealed_image_boot(build, outputs))  # before any checkpoint is discarded
        discard = {code: image for code, image in checkpoint_images(build).items() if code not in self.keep_checkpoints}
        if self.keeps_for_reuse():
            self.log_output(f"checkpoints kept for the next build to start from (reuse): {sorted(discard) or 'none'}")
            if discard:  # what the next delivery deletes (operators/reuse.release_earlier_checkpoints)
                kept = ",".join(f"{c}@{build.milestones[c].attempt}" for c in sorted(discard))
                session.set_metadata({KEPT_FOR_REUSE: kept}, actor=f"milestone {self.state}")
            discard = {}
        if discard:
            gone = discarded_checkpoints(build) | {(c, build.milestones[c].attempt) for c in discard}
            # Recorded before the images go: a reset later must not launch a host from them.
            listed = ",".join(f"{c}@{a}" for c, a in sorted(gone))
            session.set_metadata({DISCARDED_METADATA: listed}, actor=f"milestone {self.state}")
        outputs["discarded_checkpoints"] = target.discard(build, list(discard.values()))
        return outputs

    def keeps_for_reuse(self) -> bool:
        """Whether the spec's ``reuse.keep_checkpoints`` keeps every checkpoint past the seal (until
        the next delivered build: :func:`.reuse.release_earlier_checkpoints`)."""
        reuse = self.made_from.spec.reuse if self.made_from is not None else None
        return reuse is not None and reuse.keep_checkpoints

    def bill_of_materials(self, build: BuildRecord, host: Host, session: MilestoneSession) -> dict[str, Any]:
        """The image's packages as CycloneDX beside it, read from the host as it is captured; the
        policy checked again when they are not what milestone 90 passed (or nothing passed it)."""
        from airflow_provider_imagebuild.operators.packages import (
            checked_packages,
            policy_gate,
            read_inventory,
            write_sbom,
        )

        inventory = read_inventory(self, build, host, session)
        outputs: dict[str, Any] = {}
        if self.policy is not None and checked_packages(build) != inventory.digest():
            self.log_output("the packages changed since the policy was checked: checking it again on what is sealed")
            outputs.update(policy_gate(self, self.policy, Path(self.policy_base or "."), inventory))
        built_with = {k: v for k, v in build.metadata.items() if k.startswith("built_with.")}
        outputs.update(write_sbom(self, build, inventory, built_with))
        return outputs

    def sealed_image_boot(self, build: BuildRecord, sealed: Mapping[str, Any]) -> dict[str, Any]:
        """Boot the image just captured (from an overlay) and run the verification playbook on it;
        outputs that publish checks: passed, for this image id and SHA-256. Not where the plan has a
        launch_test milestone (it boots the image instead), nor on a target whose seal does not
        boot (a cloud: its launch test is a milestone of its own)."""
        boot = self.boot_settings()
        if boot is None or boot.before_publish is False or self.launch_test is not None:
            return {}
        if not self.get_target().seal_boots:
            return {}
        return self.boot_sealed_image(build, boot, str(sealed[IMAGE_OUTPUT]), str(sealed.get("image_sha256", "")))

    def built_with(self, build: BuildRecord) -> dict[str, str]:
        """What made the image (toolchain versions on this worker, the source image), for the
        build's metadata and what publish carries."""
        from airflow_provider_imagebuild.toolchain.versions import tool_versions

        found = tool_versions()
        s = self.target_settings
        source = (
            getattr(s, "source_image", None) or getattr(s, "template", None) or getattr(s, "source_image_family", None)
        )
        if source:
            found["built_from"] = str(source)
        return found


class PublishMilestoneOperator(TargetMilestoneOperator):
    """Publish the sealed image to each destination of the spec's ``publish:`` list (the target's
    own publish when there is none).

    Each destination's outcome is recorded in the build's metadata the moment it succeeds
    (``published.<name>``: the image, when, and what it returned), so a try that fails at one
    destination still records the others, and the next try (a cleared task) publishes only what
    is missing. A record counts only for the same sealed image (its id and the seal's attempt): a
    build sealed again is published again everywhere. Every destination is tried even when an
    earlier one failed; the task then fails naming each failure, as bad input (not retried) if
    any was bad input, else as a transient failure that Airflow retries.
    """

    ui_color = "#e0f4fb"

    def __init__(self, *, destinations: Sequence[PublishSpec] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.destinations = tuple(destinations)

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        image = build.merged_outputs().get(IMAGE_OUTPUT)
        if not image:
            raise InvalidInput("image_id", "no final image recorded: the seal milestone (95) must capture one first")
        self.require_boot_check(build, str(image))
        target = self.get_target()
        if not self.destinations:
            self.log_output(f"publishing image {image}")
            outputs = target.publish(build, str(image))
        else:
            outputs = self.publish_each(build, session, str(image))
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

    def require_boot_check(self, build: BuildRecord, image: str) -> None:
        """Nothing is published unless this very image was booted and passed: by the seal itself or
        by the plan's launch_test milestone, whichever checked it last (:func:`boot_checks_of`).
        Their outputs name the image and the SHA-256 checked (the local catalog then verifies the
        copy against that SHA-256). Asked where a check is expected: a launch_test in the plan, or
        a seal that boots (``target.boot.before_publish`` on a target whose seal boots)."""
        boot = self.boot_settings()
        if boot is None or boot.before_publish is False:
            return
        if self.launch_test is None and not self.get_target().seal_boots:
            return
        code, sealed = sealed_outputs(build, image)
        checks = boot_checks_of(build, code, image)
        redo = self.launch_test if self.launch_test is not None else code
        if not checks:
            raise InvalidInput(
                f"milestones.{redo}.outputs.{BOOT_CHECKED_IMAGE}",
                f"the sealed image {image} has not passed its boot check (target.boot.before_publish): it is not "
                f"published; reset the build to {redo} to boot it again",
            )
        checked_by, checked = checks[-1]
        if sealed.get("image_sha256") and checked.get(BOOT_CHECKED_SHA256) != sealed.get("image_sha256"):
            raise InvalidInput(
                f"milestones.{checked_by}.outputs.{BOOT_CHECKED_SHA256}",
                f"the boot check was of another image than the sealed {image} (SHA-256 differs): it is not published",
            )

    def publish_each(self, build: BuildRecord, session: MilestoneSession, image: str) -> dict[str, Any]:
        sealed = sealed_identity(build, image)
        done: dict[str, Any] = {}
        failed: dict[str, ImageBuildError | Exception] = {}
        for destination in self.destinations:
            label = destination.label
            recorded = published_record(build, label)
            if recorded is not None and recorded.get("sealed") == sealed:
                self.log_output(f"{label}: already published by an earlier try ({recorded.get('at')}); kept")
                done[label] = recorded.get("outputs", {})
                continue
            self.log_output(f"{label}: publishing {image}")
            try:
                outputs = self.publish_to(destination, build, image)
            except Exception as exc:  # one destination's failure does not stop the others
                self.log.error("publish to %s failed: %s", label, self.redactor(str(exc)))  # a cloud's answer
                failed[label] = exc
                continue
            record = {"sealed": sealed, "at": format_ts(datetime.now(timezone.utc)), "outputs": outputs}
            actor = f"milestone {self.state}"
            session.set_metadata({f"{PUBLISHED}{label}": json.dumps(record, sort_keys=True)}, actor=actor)
            done[label] = outputs
        if failed:
            kept = f"; published (kept for the next try): {', '.join(done)}" if done else ""
            message = "publish failed at " + "; ".join(f"{label}: {exc}" for label, exc in failed.items()) + kept
            if any(isinstance(exc, InvalidInput) for exc in failed.values()):
                raise InvalidInput("publish", message)
            raise TargetError(message)
        merged: dict[str, Any] = {}
        for destination in self.destinations:  # the target's own outputs stay where they were
            if destination.kind in ("target", "catalog"):
                merged.update(done[destination.label])
        return {**merged, "destinations": done}

    def publish_to(self, destination: PublishSpec, build: BuildRecord, image: str) -> dict[str, Any]:
        target = self.get_target()
        if destination.kind in ("target", "catalog"):
            return target.publish(build, image)
        from airflow_provider_imagebuild.destinations import destination_for

        path = target.image_file(build, image)
        uploader = destination_for(destination, pipeline=self.pipeline, image_type=self.image_type)
        return uploader.publish(build, path)


PUBLISHED = "published."  # metadata key prefix of each destination's record


def sealed_outputs(build: BuildRecord, image: str) -> tuple[int, dict[str, Any]]:
    """The milestone that captured ``image`` (the seal) and its outputs."""
    for code in sorted(build.completed, reverse=True):
        if build.milestones[code].outputs.get(IMAGE_OUTPUT) == image:
            return code, dict(build.milestones[code].outputs)
    return max(build.completed, default=0), {}


def boot_checks_of(build: BuildRecord, seal: int, image: str) -> list[tuple[int, dict[str, Any]]]:
    """The passed boot checks of the sealed ``image`` recorded by the seal (milestone ``seal``) or a
    completed milestone after it (a launch test), oldest first by completion: only checks that name
    this image and completed no earlier than the seal that made it count (a check of the image a
    build had before it was sealed again does not)."""
    sealed_at = build.milestones[seal].completed_at if seal in build.milestones else None
    found: list[tuple[str, int, dict[str, Any]]] = []
    for code in sorted(build.completed):
        outputs = build.milestones[code].outputs
        if code < seal or outputs.get(BOOT_CHECKED_IMAGE) != image or not outputs.get("boot_sealed_passed"):
            continue
        done = build.milestones[code].completed_at or ""
        if sealed_at and done < sealed_at:
            continue
        found.append((done, code, dict(outputs)))
    return [(code, outputs) for _, code, outputs in sorted(found, key=lambda f: (f[0], f[1]))]


def sealed_identity(build: BuildRecord, image: str) -> str:
    """Which sealed image this is: its id and the attempt of the milestone that captured it (the
    local target's image path is the same after a new seal; the attempt is not)."""
    for code in sorted(build.completed, reverse=True):
        if build.milestones[code].outputs.get(IMAGE_OUTPUT) == image:
            return f"{image}#{code}.{build.milestones[code].attempt}"
    return image


def published_record(build: BuildRecord, label: str) -> dict[str, Any] | None:
    raw = build.metadata.get(f"{PUBLISHED}{label}")
    if not raw:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None
