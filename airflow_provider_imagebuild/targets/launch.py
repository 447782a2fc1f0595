"""The launch test on a cloud: one test instance from the sealed image, checked and always deleted.

:class:`LaunchTestTarget` is a template method: :meth:`LaunchTestTarget.boot_check` does the same
steps on every cloud, and a cloud writes only its API calls, five hooks:

- :meth:`~LaunchTestTarget.leftover_test_instances`: this build's test instances that still exist
  (a lost worker's, or a delete that failed), found by ownership: the target's own account /
  project / folder, the build's tags or labels, and the role ``launch-test`` (:data:`ROLE`). A
  resource with the same tags in another account or project is never returned, so never deleted;
- :meth:`~LaunchTestTarget.launch_test_instance`: launch ONE instance from the sealed image, tagged
  or labelled as the build's with the role ``launch-test``, and return its id at once (no waiting);
- :meth:`~LaunchTestTarget.test_instance`: its state and address now (None: it is gone);
- :meth:`~LaunchTestTarget.test_instance_console`: the console output so far (EC2
  GetConsoleOutput, Nova os-getConsoleOutput, GCE getSerialPortOutput), or None where the cloud
  has none: the login-prompt check is then reported as not available;
- :meth:`~LaunchTestTarget.delete_test_instance`: delete it, idempotently (gone is fine), without
  waiting for the deletion to finish.

The steps (all bounded by the request's timeout, from the first call to the last check):

1. the image must be provably the build's (:meth:`Target.owns_image`): nothing is launched from an
   image the store merely names;
2. the build's leftover test instances are deleted (a lost worker's try left one running);
3. one test instance is launched; the instance's id is logged at once, so a person can find it;
4. wait until it runs and has an address (a failed or vanished instance ends the check);
5. the checks of :func:`~.boot.check_guest` over SSH, as the spec's boot user (``target.ssh_user``
   unless ``target.boot.user`` says otherwise) with ``target.ssh_private_key_file``: SSH, sudo,
   network, then the verification playbook; the console is read alongside for a dead end (kernel
   panic...) and the login prompt, and its tail goes into a failure's error;
6. finally, whatever happened (a failure, a cancel, an exception), the instance is deleted; a delete
   that fails fails the milestone (its retry deletes the instance as a leftover first).

``target.boot.ssh_address`` (host:port) replaces the instance's address for SSH and Ansible only:
the instance is still launched, waited for, read and deleted. It exists for a jump host that
forwards a port, and for the tests, whose cloud fakes run no guest: they point it at a local qemu
VM of the same kind of image (tests/servers/guest.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, TargetError
from airflow_provider_imagebuild.targets.base import Host, Target
from airflow_provider_imagebuild.targets.boot import (
    BootReport,
    BootRequest,
    SshEndpoint,
    check_guest,
    console_tail,
    playbook_verifier,
)

log = logging.getLogger(__name__)

ROLE = "launch-test"  # the role tag/label value of a test instance (Role=launch-test on AWS)
RUNNING, PENDING, STOPPED = "running", "pending", "stopped"
WAIT_POLL_S = 3.0  # between state reads while the instance starts
STATE_POLL_S = 10.0  # between state reads during the checks (a vanished instance ends them)
CONSOLE_POLL_S = 10.0  # between console reads: a cloud's console API is rate-limited and lags anyway


@dataclass(frozen=True)
class TestInstance:
    """A test instance as the cloud describes it now."""

    id: str
    state: str  # RUNNING, PENDING, or STOPPED (stopped, failed, being deleted: it will not come up)
    address: str = ""  # the address SSH reaches (private where the worker is inside, else public)
    detail: str = ""  # the cloud's words on a STOPPED instance (a fault, a state reason)


class Throttled:
    """A cloud read made at most every ``period`` seconds; between reads, the last answer."""

    def __init__(self, read: Callable[[], Any], period: float) -> None:
        self.read = read
        self.period = period
        self.at = -float("inf")
        self.value: Any = None

    def __call__(self) -> Any:
        if time.monotonic() - self.at >= self.period:
            self.value = self.read()
            self.at = time.monotonic()
        return self.value


class LaunchTestTarget(Target):
    """A cloud target whose boot check is a launch test (see the module's docstring)."""

    boot_checks = True
    settings: Any  # the target's spec settings (``target:``): ssh_private_key_file, boot

    # -- the hooks each cloud writes ----------------------------------------------------------------
    @abstractmethod
    def leftover_test_instances(self, build: BuildRecord) -> list[str]:
        """Ids of this build's test instances that still exist (role launch-test, the build's tags,
        in the target's own account/project/folder only)."""

    @abstractmethod
    def launch_test_instance(self, build: BuildRecord, image: str) -> str:
        """Launch one test instance from ``image`` (already proven the build's), tagged as the
        build's with role launch-test; return its id without waiting for it to run."""

    @abstractmethod
    def test_instance(self, build: BuildRecord, instance_id: str) -> TestInstance | None:
        """The instance's state and address now; None when it is gone."""

    def test_instance_console(self, build: BuildRecord, instance_id: str) -> bytes | None:
        """The instance's console output so far (b"" while there is none yet); None: this cloud
        has no console output to read."""
        return None

    @abstractmethod
    def delete_test_instance(self, build: BuildRecord, instance_id: str) -> None:
        """Delete the instance if it is this build's test instance; gone already is fine."""

    # -- what the template asks of the target's settings -------------------------------------------
    def launch_test_key(self) -> Path:
        """The private key the test instance accepts (``target.ssh_private_key_file``)."""
        key = getattr(self.settings, "ssh_private_key_file", None)
        if not key:
            raise InvalidInput("target.ssh_private_key_file", "the launch test logs in to its test instance with it")
        return Path(key)

    # -- the template ------------------------------------------------------------------------------
    def boot_check(self, build: BuildRecord, what: Host | str, request: BootRequest) -> BootReport:
        if isinstance(what, Host):
            raise InvalidInput(
                "target.boot.green_image",
                f"the {self.name} target boots images in a launch test, not a build host (which is running already)",
            )
        if not self.owns_image(build, what):
            raise InvalidInput(
                "image_id", f"{what} is not build {build.build_id}'s image; a test instance is launched only from it"
            )
        key = self.launch_test_key()
        # The firmware is the image's and the cloud's choice (AMI boot mode, Hyper-V generation...),
        # not the spec's: recorded as "cloud" rather than a qemu firmware name that was never used.
        report = BootReport(request.stage, "cloud", accel=f"{self.name} test instance")
        started = time.monotonic()
        deadline = started + request.timeout_s
        for leftover in self.leftover_test_instances(build):
            request.log(f"{request.stage}: deleting test instance {leftover}, left over by an earlier try")
            self.delete_test_instance(build, leftover)
        instance_id = self.launch_test_instance(build, what)
        report.instance = instance_id
        request.log(f"{request.stage}: launched test instance {instance_id} from {what}")
        console: Callable[[], bytes | None] = Throttled(lambda: self._console(build, instance_id), CONSOLE_POLL_S)
        try:
            running = self._wait_running(build, instance_id, request, report, deadline)
            if running is None:
                return report
            ssh = self._endpoint(running, request.user, key)
            request.log(f"{request.stage}: {instance_id} runs at {running.address}; checking it over SSH at {ssh.host}")
            remaining = max(deadline - time.monotonic(), 1.0)
            check = replace(request, timeout_s=remaining)
            # One marker per run: each try launches an instance of its own (the leftovers of an
            # earlier try are deleted above, which ends their SSH sessions), and two runs naming
            # the same instance (tests sharing a build id, a lease taken over) must not kill each
            # other's ansible-playbook, as a marker derived from the instance alone would.
            marker = hashlib.sha256(f"launch/{instance_id}/{uuid.uuid4()}".encode()).hexdigest()[:24]
            stopped = Throttled(lambda: self._stopped(build, instance_id), STATE_POLL_S)
            check_guest(console, ssh, check, report, stopped, playbook_verifier(check, f"launch-{marker}"),
                        prompt_first=False)  # fmt: skip
            return report
        finally:
            report.total_s = time.monotonic() - started
            self._delete_launched(build, instance_id, request, report)

    def _endpoint(self, running: TestInstance, user: str, key: Path) -> SshEndpoint:
        override = self.settings.boot.ssh_endpoint()
        if override is not None:
            return SshEndpoint(override[1], user, key, override[0])
        return SshEndpoint(22, user, key, running.address)

    def _wait_running(
        self, build: BuildRecord, instance_id: str, request: BootRequest, report: BootReport, deadline: float
    ) -> TestInstance | None:
        """The instance once it runs with an address; None (the report says why) when it stopped,
        vanished, or did not come up in time."""
        while True:
            if request.cancelled():
                report.failure = "stopped: the milestone was cancelled"
                return None
            found = self.test_instance(build, instance_id)
            if found is None or found.state == STOPPED:
                why = "vanished" if found is None else f"stopped ({found.detail or 'no reason given'})"
                report.checks["launch"] = why
                report.failure = f"the test instance {instance_id} {why} before it ran"
                self._console_tail(build, instance_id, report)
                return None
            if found.state == RUNNING and found.address:
                report.checks["launch"] = "ok"
                return found
            if time.monotonic() > deadline:
                report.checks["launch"] = "timed out"
                report.failure = (
                    f"timed out after {request.timeout_s:.0f} s waiting for test instance {instance_id} to run "
                    f"with an address (state {found.state})"
                )
                self._console_tail(build, instance_id, report)
                return None
            time.sleep(WAIT_POLL_S)

    def _stopped(self, build: BuildRecord, instance_id: str) -> str | None:
        found = self.test_instance(build, instance_id)
        if found is None:
            return f"test instance {instance_id} vanished"
        if found.state == STOPPED:
            return f"test instance {instance_id} stopped: {found.detail or 'no reason given'}"
        return None

    def _console(self, build: BuildRecord, instance_id: str) -> bytes | None:
        """The console so far; a console API that fails is logged and read as empty (it is
        evidence, not a check: the checks go on over SSH)."""
        try:
            return self.test_instance_console(build, instance_id)
        except ImageBuildError as exc:
            log.warning("console output of test instance %s not read: %s", instance_id, exc)
            return b""

    def _console_tail(self, build: BuildRecord, instance_id: str, report: BootReport) -> None:
        report.console_tail = console_tail(self._console(build, instance_id) or b"")

    def _delete_launched(self, build: BuildRecord, instance_id: str, request: BootRequest, report: BootReport) -> None:
        try:
            self.delete_test_instance(build, instance_id)
        except Exception as exc:
            report.checks["delete"] = f"failed: {exc}"
            raise TargetError(
                f"the launch test could not delete its test instance {instance_id} (deleted as a leftover by the "
                f"next try): {exc}"
            ) from exc
        report.checks["delete"] = "ok"
        request.log(f"{request.stage}: deleted test instance {instance_id}")
