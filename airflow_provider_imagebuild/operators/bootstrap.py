"""The ``bootstrap`` action (kickstart without Packer): the target installs the OS into a new
build host, here debootstrap of Debian from the cached base, and the host is recorded so that
the following milestones (the green image first) configure it."""

from __future__ import annotations

from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.operators.target import TargetMilestoneOperator


class BootstrapMilestoneOperator(TargetMilestoneOperator):
    ui_color = "#e6f6ee"

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        target = self.get_target()
        self.log_output(f"bootstrapping a new build host for build {build.build_id}")
        host, outputs = target.bootstrap(build, self.state)
        self.record_host(session, build, host)
        self.log.info("build host %s ready", host.id)
        if self.state in self.checkpoints:
            self.log_output(f"capturing the checkpoint after milestone {self.state}")
            outputs.update(target.capture(build, host, self.state, final=False))
        return outputs
