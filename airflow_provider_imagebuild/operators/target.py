"""Milestones that work on a build target: the build host, its checkpoints and their replay.

The first milestone after the green image launches the build host from the latest checkpoint
and records it in the build's metadata; later milestones and retries reconnect to it. If the
recorded host is gone (terminated, reclaimed, removed), the host is relaunched from the latest
checkpoint and every completed Ansible milestone after that checkpoint is replayed on it, each
replay recorded in the history, before the milestone's own work: a build never continues on a
host that lacks earlier milestones. ``host_synced`` in the metadata says how far the current
host is, so a replay that fails half-way is finished by the next attempt.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowException

from airflow_provider_imagebuild.build.catalog import key_of
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.operators.base import MilestoneOperator
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.spec.boot import BootSpec
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import BuildStore
from airflow_provider_imagebuild.targets.base import (
    HOST_PARKED,
    HOST_PARKED_AT,
    Host,
    Target,
    latest_checkpoint,
    parked,
    resume_problem,
    synced_to,
)
from airflow_provider_imagebuild.targets.boot import GREEN_IMAGE as GREEN_IMAGE_STAGE
from airflow_provider_imagebuild.targets.boot import SEALED_IMAGE as SEALED_IMAGE_STAGE
from airflow_provider_imagebuild.targets.boot import BootRequest, boot_request

BOOT_CHECKED_IMAGE = "boot_sealed_image"  # the seal's outputs: which image its boot check passed
BOOT_CHECKED_SHA256 = "boot_sealed_sha256"


def default_verification_playbook() -> Path:
    """The shipped verification playbook (``dags/ansible/verify-boot.yml``, in the package as
    ``project/ansible``): the system is up with no failed unit, enabled services run, sshd's
    configuration is valid."""
    from airflow_provider_imagebuild.scaffold.project import shipped_root
    from airflow_provider_imagebuild.spec.boot import DEFAULT_PLAYBOOK

    return shipped_root() / "ansible" / DEFAULT_PLAYBOOK


GREEN_IMAGE = 10  # the catalog's green image: the first image that must boot


def fact_cache_for(host: Host) -> Path:
    """Ansible's fact cache of one build host on this worker (a relaunched host gets a new one).
    The readable part is cut to fit a file name; the hash keeps two hosts apart all the same."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", host.id.strip("/"))[-80:]
    digest = hashlib.sha256(host.id.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "imagebuild-facts" / f"{safe}.{digest}"


def process_marker_for(host: Host) -> str:
    """The environment marker of every Ansible process working on one build host, so that a
    playbook first kills what a killed earlier try left running on that host."""
    return hashlib.sha256(host.id.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class AnsibleStep:
    """What replaying an Ansible milestone needs: its playbook and extra variables."""

    code: int
    key: str
    playbook: str
    extravars: Mapping[str, Any] = field(default_factory=dict)


class TargetMilestoneOperator(MilestoneOperator):
    """Base of the Packer, Ansible, seal and publish milestones: one target, one build host."""

    def __init__(
        self,
        *,
        target: TargetSpec | None = None,
        checkpoints: Sequence[int] = (),
        ansible_steps: Sequence[AnsibleStep] = (),
        launch_test: int | None = None,
        park: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # The spec's on_failure.park: None is the target's default (clouds park, local keeps).
        self.park = park
        self.target_settings = target or TargetSpec()
        self.checkpoints = tuple(checkpoints)
        self.ansible_steps = tuple(ansible_steps)
        # The plan's launch_test milestone, if any: it boots the sealed image instead of the seal.
        self.launch_test = launch_test
        self._target: Target | None = None
        self._cancelled: str | None = None

    def source_image_resolver(self) -> Callable[[], str | None] | None:
        """A watch ``image: source`` asks the target what its source image resolves to now."""
        from airflow_provider_imagebuild.targets.source_images import source_image_id

        return lambda: source_image_id(self.get_target())

    def get_target(self) -> Target:
        if self._target is None:
            from airflow_provider_imagebuild.targets import target_for

            self._target = target_for(
                self.cloud, self.target_settings, pipeline=self.pipeline, image_type=self.image_type
            )
        return self._target

    def stop_action(self, reason: str) -> None:
        self._cancelled = reason

    def after_delivery(self, store: BuildStore, rec: BuildRecord) -> None:
        """The checkpoints earlier delivered builds kept for reuse go once this build is delivered
        (:func:`.reuse.release_earlier_checkpoints`), whether or not this build's spec reuses."""
        from airflow_provider_imagebuild.operators.reuse import release_earlier_checkpoints

        try:
            release_earlier_checkpoints(self, store, rec, self.get_target())
        except Exception as exc:  # the build is delivered; what it could not delete, gc finds
            self.log.warning("earlier builds' checkpoints kept for reuse were not deleted: %s", exc)

    # -- the build host ------------------------------------------------------------------------
    def record_host(self, session: MilestoneSession, build: BuildRecord, host: Host) -> None:
        session.set_metadata(host.to_metadata(), actor=f"milestone {self.state}")

    def failed_for_good(self, session: MilestoneSession) -> None:
        """Park the build host (:meth:`Target.park_host`: stopped, deallocated, shelved, powered
        off) unless the spec's ``on_failure.park`` says false or the target keeps hosts by default,
        and record how in the build's metadata. A park that fails is logged and never hides the
        milestone's own failure."""
        try:
            build = session.store.get(session.build_id)  # this attempt may have launched the host
            host = Host.from_metadata(build.metadata)
            if host is None or parked(build.metadata):
                return
            target = self.get_target()
            if not (target.parks_by_default if self.park is None else self.park):
                self.log.info("build host %s is kept as it is (on_failure.park)", host.id)
                return
            how = target.park_host(build, host)
            if not how:
                self.log.info("build host %s is kept as it is: the %s target does not park it", host.id, target.name)
                return
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            session.set_metadata({HOST_PARKED: how, HOST_PARKED_AT: now}, actor=f"milestone {self.state} (parked)")
            self.log.warning(
                "milestone %s failed for good: build host %s parked (%s); the next attempt starts it again",
                self.state,
                host.id,
                how,
            )
        except Exception as exc:  # the failure being recorded matters more than the park
            self.log.warning("the build host was not parked: %s", exc)

    def unpark(self, build: BuildRecord, session: MilestoneSession, host: Host) -> Host:
        """A parked host started again and recorded as running; a parked host that is gone is
        returned as recorded, so that :meth:`ensure_host` relaunches it from the checkpoint."""
        how = parked(build.metadata)
        woken = self.get_target().unpark_host(build, host)
        cleared = {HOST_PARKED: "", HOST_PARKED_AT: ""}
        if woken is None:
            session.set_metadata(cleared, actor=f"milestone {self.state}")
            return host
        self.log.info("started build host %s again (it was %s after a failure)", woken.id, how)
        session.set_metadata({**woken.to_metadata(), **cleared}, actor=f"milestone {self.state} (unparked)")
        return woken

    def ensure_host(self, build: BuildRecord, session: MilestoneSession) -> Host:
        """The build host, with every completed milestone before this one applied to it."""
        target = self.get_target()
        host = Host.from_metadata(build.metadata)
        if host is not None and parked(build.metadata):
            host = self.unpark(build, session, host)
        if host is not None and target.alive(build, host):
            self.log.info(
                "reconnecting to build host %s (%s), synced through milestone %d", host.id, host.address, host.synced
            )
        else:
            checkpoint = latest_checkpoint(build, self.state)
            if checkpoint is None:
                raise InvalidInput(
                    "checkpoints",
                    resume_problem(build, self.state)
                    or f"no image to launch a build host from before milestone {self.state}: "
                    "a packer milestone (the green image) must come first",
                )
            if host is not None:
                self.log.warning(
                    "build host %s is gone; relaunching from the checkpoint of milestone %d (%s)",
                    host.id,
                    checkpoint.code,
                    checkpoint.image,
                )
            else:
                self.log.info(
                    "launching the build host from the checkpoint of milestone %d (%s)",
                    checkpoint.code,
                    checkpoint.image,
                )
            host = target.launch(build, checkpoint)
            self.record_host(session, build, host)
        for step in self.ansible_steps:
            if host.synced < step.code < self.state and build.reached(step.code):  # not what was skipped
                self.log.info("replaying milestone %d (%s) on build host %s", step.code, step.key, host.id)
                started = time.monotonic()
                result = self.run_playbook(Path(step.playbook), step.code, step.extravars, host, build, session)
                hours = round((time.monotonic() - started) / 3600, 6)  # the replay's own host time (cost)
                session.record_replay(step.code, result, {"host_size": self.host_size(), "host_hours": hours})
                host = synced_to(host, step.code)
                self.record_host(session, build, host)
        return host

    def playbook_variables(self, build: BuildRecord, code: int, extravars: Mapping[str, Any]) -> dict[str, Any]:
        """What every playbook of a milestone gets: the build's identity, the target's variables
        (the build's SSH key...) and the milestone's ``extravars``."""
        return {
            "imagebuild_build_id": build.build_id,
            "imagebuild_milestone": code,
            "imagebuild_milestone_key": key_of(code) if code in self.plan else str(code),
            "imagebuild_pipeline": self.pipeline,
            "imagebuild_cloud": self.cloud,
            "imagebuild_image_type": self.image_type,
            "imagebuild_os": self.os_name,
            **self.get_target().playbook_vars(build),
            **extravars,
        }

    # -- boot checks -----------------------------------------------------------------------------
    def boot_settings(self) -> BootSpec | None:
        """The spec's ``target.boot`` where the target can boot what it built, else None."""
        boot = getattr(self.target_settings, "boot", None)
        if boot is None or not self.get_target().boot_checks:
            return None
        return boot

    def green_image_boot(self, build: BuildRecord, host: Host) -> dict[str, Any]:
        """Milestone 10's proof that the green image boots (``target.boot.green_image``)."""
        boot = self.boot_settings()
        if self.state != GREEN_IMAGE or boot is None or boot.green_image is False:
            return {}
        return self.boot_check(build, host, boot_request(boot, GREEN_IMAGE_STAGE, boot.green_image))

    def boot_sealed_image(self, build: BuildRecord, boot: BootSpec, image: str, sha256: str) -> dict[str, Any]:
        """Boot the sealed ``image`` (the seal's own check, or a launch_test milestone's) and run the
        verification playbook on it: the report's outputs plus which image (id and SHA-256) passed,
        which is what publish's gate reads."""
        playbook = Path(boot.playbook) if boot.playbook else default_verification_playbook()
        variables = self.playbook_variables(build, self.state, getattr(self, "extravars", {}))
        firmware = boot.before_publish or "uefi"
        request = replace(
            boot_request(boot, SEALED_IMAGE_STAGE, firmware, playbook, variables), user=self.boot_user(boot)
        )
        outputs = self.boot_check(build, image, request)
        return {**outputs, BOOT_CHECKED_IMAGE: image, BOOT_CHECKED_SHA256: sha256}

    def boot_user(self, boot: BootSpec) -> str:
        """Who logs in to a booted image: ``target.boot.user`` when given; else, on a cloud, the
        target's ``ssh_user`` (the user its images are logged in to with the spec's key), and on the
        local target the default user its green image makes (``boot.user``'s default)."""
        if "user" in boot.model_fields_set or self.cloud == "local":
            return boot.user
        return str(getattr(self.target_settings, "ssh_user", None) or boot.user)

    def boot_check(self, build: BuildRecord, what: Host | str, request: BootRequest) -> dict[str, Any]:
        """Boot ``what`` through the target; the report's figures as outputs, or a
        :class:`TargetError` with what failed and the console's tail (the attempt's error)."""
        request = replace(request, log=self.log_output, cancelled=lambda: self._cancelled is not None)
        report = self.get_target().boot_check(build, what, request)
        if self._cancelled:
            raise AirflowException(f"boot check stopped: {self._cancelled}")
        if not report.passed:
            raise TargetError(report.error_text())
        self.log_output(
            f"{request.stage}: booted and checked in {report.total_s:.0f} s ({request.firmware}, {report.accel}): "
            + ", ".join(f"{name} {value}" for name, value in report.checks.items())
        )
        return report.outputs()

    def run_playbook(
        self,
        playbook: Path,
        code: int,
        extravars: Mapping[str, Any],
        host: Host,
        build: BuildRecord,
        session: MilestoneSession,
    ) -> dict[str, Any]:
        """Run one playbook on the build host; its stats as outputs, or an exception naming failures."""
        from airflow_provider_imagebuild.toolchain.ansible import run_playbook

        variables = self.playbook_variables(build, code, extravars)
        result = run_playbook(
            playbook,
            host_vars=self.get_target().ansible_vars(host),
            extravars=variables,
            log=self.log_output,
            on_progress=session.beat,
            cancelled=lambda: self._cancelled is not None,
            fact_cache=fact_cache_for(host),
            marker=process_marker_for(host),
        )
        if self._cancelled:
            raise AirflowException(f"playbook {playbook.name} stopped: {self._cancelled}")
        if result.unreachable:
            raise AirflowException(
                f"build host {host.id} unreachable in playbook {playbook.name} (transient; retried): "
                + "; ".join(result.failures[-3:])
            )
        if result.status != "successful" or result.failed:
            detail = "; ".join(result.failures[-3:]) or f"ansible-runner status {result.status}, rc {result.rc}"
            raise AirflowException(f"playbook {playbook.name} failed: {detail}")
        return result.outputs()
