"""The launch test milestone (``action: launch_test``, typically 97): boot the sealed image before
it is published, as a milestone of its own.

It does what the seal's own boot does (``target.boot``'s timeout, verification playbook and user,
:meth:`~.target.TargetMilestoneOperator.boot_sealed_image`) through the target's one boot verb,
``Target.boot_check(build, sealed_image_id, request)`` at the sealed-image stage, and records the
same ``boot_sealed_*`` outputs with the checked image id and SHA-256, so publish's gate accepts the
newest passed check of the sealed image from the seal or from here alike.

Why a milestone of its own: on a cloud the check is a test instance launched from the image
(:mod:`..targets.launch`), which takes minutes and fails for reasons of its own (capacity, a
flaky network); as part of the seal, a cleared seal would capture the image again. Here a retried
launch test relaunches only the test instance. With a launch test in the plan the seal does not
boot the image itself. On the local target it is the same qemu boot the seal would do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.operators.image import sealed_outputs
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.operators.target import TargetMilestoneOperator
from airflow_provider_imagebuild.targets.base import IMAGE_OUTPUT


class LaunchTestMilestoneOperator(TargetMilestoneOperator):
    ui_color = "#e8f6e0"

    def __init__(self, *, extravars: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extravars = dict(extravars or {})

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        image = build.merged_outputs().get(IMAGE_OUTPUT)
        if not image:
            raise InvalidInput(IMAGE_OUTPUT, f"no sealed image recorded: a seal must capture one before {self.state}")
        boot = self.boot_settings()
        if boot is None:
            raise InvalidInput("action", f"the {self.cloud} target has no launch test (boot checks)")
        _, sealed = sealed_outputs(build, str(image))
        self.log_output(f"launch test of the sealed image {image}")
        return self.boot_sealed_image(build, boot, str(image), str(sealed.get("image_sha256", "")))
