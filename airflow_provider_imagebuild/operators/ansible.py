"""The ``ansible`` action: a playbook on the build host, through ansible-runner.

Every task event goes to the task log as it happens and refreshes the lease; the play's stats
(ok, changed, failed, unreachable, duration) become the milestone's outputs. Unreachable hosts
raise a retryable error; failed tasks fail the milestone under the spec's retry policy. At the
green image (10) the target boots the host's image and proves it (``target.boot``). At final
validation (90) the spec's ``policy:`` is checked on the host's packages after the playbook
(:mod:`.packages`). After a milestone the spec lists under ``checkpoints``, the host is captured as
a checkpoint image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.operators.target import TargetMilestoneOperator
from airflow_provider_imagebuild.targets.base import synced_to

if TYPE_CHECKING:
    from airflow_provider_imagebuild.spec.policy import PolicySpec


class AnsibleMilestoneOperator(TargetMilestoneOperator):
    template_fields: Sequence[str] = ("extravars",)
    ui_color = "#f1e6fb"

    def __init__(
        self,
        *,
        playbook: str,
        extravars: Mapping[str, Any] | None = None,
        policy: PolicySpec | None = None,
        policy_base: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.playbook = playbook
        self.extravars = dict(extravars or {})
        self.policy = policy  # the spec's policy: checked by milestone 90 only (the factory passes it there)
        self.policy_base = policy_base  # the spec's folder: where relative advisory paths are

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        if not Path(self.playbook).is_file():  # before any host is launched for it
            raise InvalidInput("playbook", f"{self.playbook} not found")
        host = self.ensure_host(build, session)
        outputs = self.run_playbook(Path(self.playbook), self.state, self.extravars, host, build, session)
        self.log.info("playbook %s: %s", Path(self.playbook).name, outputs)
        self.record_host(session, build, synced_to(host, self.state))
        outputs.update(self.green_image_boot(build, host))  # milestone 10: the green image must boot
        if self.policy is not None:
            from airflow_provider_imagebuild.operators.packages import policy_gate, read_inventory

            inventory = read_inventory(self, build, host, session)
            outputs.update(policy_gate(self, self.policy, Path(self.policy_base or "."), inventory))
        if self.state in self.checkpoints:
            self.log_output(f"capturing the checkpoint after milestone {self.state}")
            outputs.update(self.get_target().capture(build, host, self.state, final=False))
        return outputs
