"""Boot checks: "boot this image and give me SSH", the verb milestone 10 and the seal use.

A target that can boot what it built implements :meth:`Target.boot_check
<airflow_provider_imagebuild.targets.base.Target.boot_check>` with a :class:`BootRequest` and
answers a :class:`BootReport`: the local target boots a disk in qemu (:func:`check_vm_boot`), a
cloud would launch a test instance from the image. The report says how far the boot got and how
long each step took, which check failed, and the tail of the serial console, which is what a person
needs to see when an image does not boot.

The checks, in order, each with its time:

1. **login prompt**: the serial console shows ``login:`` (the kernel, the init system and a getty
   on the console all came up);
2. **ssh**: the default user logs in with the build's key;
3. **sudo**: ``sudo -n true`` works for that user;
4. **network**: the guest has a default route (DHCP configured its interface: the forwarded SSH
   port reaches only an address the guest was given);
5. **playbook** (only when one is given): the verification playbook passes over that SSH.

A boot that visibly cannot succeed (GRUB found no kernel, a kernel panic, the initramfs gave up on
the root filesystem, the firmware found nothing to boot, qemu exited) ends the check at once rather
than waiting for the timeout.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.spec.boot import BootSpec
from airflow_provider_imagebuild.targets.disk import MARKER

GREEN_IMAGE, SEALED_IMAGE = "green_image", "sealed_image"
STAGE_PREFIX = {GREEN_IMAGE: "boot_green", SEALED_IMAGE: "boot_sealed"}
# getty's prompt, "<hostname> login: ", at the start of a line; a kernel message may follow it on
# the same line, so nothing is asked of the line's end.
LOGIN_PROMPT = re.compile(rb"^[^\s\[]\S* login:", re.MULTILINE)
# What a boot says when it cannot get anywhere; any of them ends the check at once.
DEAD_ENDS = (
    (MARKER.encode(), "GRUB found no kernel to boot"),
    (b"Kernel panic", "the kernel panicked"),
    (b"Gave up waiting for root", "the initramfs did not find the root filesystem"),
    (b"(initramfs) ", "the boot stopped in the initramfs shell"),
    (b"grub rescue>", "GRUB did not find its root filesystem (rescue prompt)"),
    (b"No bootable device", "the BIOS found nothing to boot"),
    (b"Boot failed: not a bootable disk", "the BIOS found no boot code on the disk"),
    (b"Shell> ", "the UEFI firmware found nothing to boot (UEFI shell)"),
)
ANSI = re.compile(r"\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")
CONSOLE_TAIL_LINES = 30
SSH_TRY_S = 20.0  # one SSH attempt (connect and run a check) under a loaded emulation
SSH_PAUSE_S = 2.0
SSH_REFUSALS = 3  # "Permission denied" this many times in a row: the key is not accepted


def _nothing(_: str) -> None:
    pass


@dataclass(frozen=True)
class BootRequest:
    """What to prove about one boot, and how long it may take."""

    stage: str  # GREEN_IMAGE or SEALED_IMAGE: what is booted, in messages and output names
    firmware: str  # uefi | bios
    timeout_s: float
    user: str  # the default user, who logs in with the build's key
    accel: str = "auto"  # auto | tcg | kvm (targets that emulate)
    memory_mb: int = 1024
    cpus: int = 1
    playbook: Path | None = None  # the verification playbook, run over SSH once the checks pass
    playbook_vars: Mapping[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = _nothing
    cancelled: Callable[[], bool] = lambda: False


@dataclass
class BootReport:
    """How a boot went: every check passed, or the first that failed and what the console said."""

    stage: str
    firmware: str
    accel: str = ""
    passed: bool = False
    failure: str = ""  # the check that failed and why
    login_prompt_s: float | None = None
    ssh_s: float | None = None
    total_s: float = 0.0
    checks: dict[str, str] = field(default_factory=dict)  # check -> "ok" or what went wrong
    console_tail: str = ""
    playbook: dict[str, Any] = field(default_factory=dict)  # the verification playbook's stats
    instance: str = ""  # a cloud's test instance (launch test), deleted by the time the report is read

    def outputs(self) -> dict[str, Any]:
        """The report as milestone outputs (``boot_green_*`` or ``boot_sealed_*``)."""
        prefix = STAGE_PREFIX.get(self.stage, f"boot_{self.stage}")
        found: dict[str, Any] = {
            f"{prefix}_passed": self.passed,
            f"{prefix}_firmware": self.firmware,
            f"{prefix}_accel": self.accel,
            f"{prefix}_total_s": round(self.total_s, 1),
        }
        if self.login_prompt_s is not None:
            found[f"{prefix}_login_prompt_s"] = round(self.login_prompt_s, 1)
        if self.ssh_s is not None:
            found[f"{prefix}_ssh_s"] = round(self.ssh_s, 1)
        if self.instance:
            found[f"{prefix}_instance"] = self.instance
        for name, value in self.playbook.items():
            found[f"{prefix}_{name}"] = value
        return found

    def error_text(self) -> str:
        """The failure as an attempt's error: what failed first, the checks, the console's tail."""
        checks = ", ".join(f"{name}: {value}" for name, value in self.checks.items())
        return (
            f"boot check of the {self.stage.replace('_', ' ')} failed ({self.firmware}, {self.accel or 'no VM'}, "
            f"{self.total_s:.0f} s): {self.failure}"
            + (f"\nchecks: {checks}" if checks else "")
            + (f"\nserial console (last lines):\n{self.console_tail}" if self.console_tail else "")
        )


def boot_request(
    boot: BootSpec,
    stage: str,
    firmware: str,
    playbook: Path | None = None,
    playbook_vars: Mapping[str, Any] | None = None,
) -> BootRequest:
    """The request for one of a spec's boots (``target.boot``)."""
    return BootRequest(
        stage=stage,
        firmware=firmware,
        timeout_s=float(boot.timeout),
        user=boot.user,
        accel=boot.accel,
        memory_mb=boot.memory_mb,
        cpus=boot.cpus,
        playbook=playbook,
        playbook_vars=dict(playbook_vars or {}),
    )


def console_tail(raw: bytes, lines: int = CONSOLE_TAIL_LINES) -> str:
    """The last lines of a serial console, without terminal escapes and carriage returns."""
    text = ANSI.sub("", raw[-64 * 1024 :].decode("utf-8", errors="replace")).replace("\r", "")
    kept = [line.rstrip()[:200] for line in text.split("\n") if line.strip()]
    return "\n".join(kept[-lines:])


def dead_end(console: bytes) -> str | None:
    for needle, what in DEAD_ENDS:
        if needle in console:
            return what
    return None


@dataclass(frozen=True)
class SshEndpoint:
    """The booted guest's SSH: ``user@host:port`` with the build's private key. ``host`` is the
    loopback address of a qemu guest's forwarded port (the local target), or a cloud test
    instance's address (or what ``target.boot.ssh_address`` says to use instead)."""

    port: int
    user: str
    key: Path
    host: str = "127.0.0.1"

    def argv(self, command: str) -> list[str]:
        return [
            "ssh", "-p", str(self.port), "-i", str(self.key),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            f"{self.user}@{self.host}", command,
        ]  # fmt: skip

    def run(self, command: str, timeout: float = SSH_TRY_S) -> tuple[int, str]:
        try:
            proc = subprocess.run(self.argv(command), capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return 255, f"no answer within {timeout:.0f} s"
        return proc.returncode, (proc.stdout + proc.stderr).strip()[-300:]

    def ansible_vars(self) -> dict[str, Any]:
        """Ansible's connection to the guest: the same SSH, without a host key remembered for a
        port that another VM gets tomorrow. An emulated guest makes every task cost seconds, so
        the connection is reused (its cache ends when the VM does) and modules are piped to
        Python rather than copied first (Debian's sudo needs no tty)."""
        return {
            "ansible_host": self.host,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_become": True,
            "ansible_pipelining": True,
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_args": "-o ControlMaster=auto -o ControlPersist=30s -o IdentitiesOnly=yes "
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=30",
        }


NETWORK_CHECK = "awk '$2 == \"00000000\" {found = 1} END {exit !found}' /proc/net/route"


ConsoleSource = Path | Callable[[], bytes | None]
NO_CONSOLE = "not available (the target has no console output to read)"


def read_console(console: ConsoleSource) -> bytes | None:
    """What a console shows so far: a qemu guest's serial log file, or a cloud's console output
    API through a callable (None: the target has no console to read)."""
    if isinstance(console, Path):
        return console.read_bytes() if console.exists() else b""
    return console()


def check_guest(
    console: ConsoleSource,
    ssh: SshEndpoint,
    request: BootRequest,
    report: BootReport,
    exited: Callable[[], int | str | None],
    run_playbook: PlaybookRunner | None = None,
    *,
    prompt_first: bool = True,
) -> BootReport:
    """Watch a started guest through ``console`` and ``ssh`` until every check passed, one failed,
    ``exited()`` says the VM is gone (an exit status, or a cloud's word for the instance's state),
    or the request's time is up. Fills and returns ``report``.

    ``prompt_first`` (qemu): SSH is tried only once the serial console showed the login prompt,
    which a local serial log shows the moment getty writes it. A cloud's console output is a
    snapshot taken now and then (EC2 updates it at intervals, some clouds have none), so a cloud
    test instance is tried over SSH from the start (``prompt_first=False``) and the console is read
    alongside: a dead end there still ends the check at once, and the login prompt is recorded
    when seen, else reported as not shown (not a failure: SSH and sudo answering prove more).

    ``run_playbook(ssh, stop)`` runs the verification playbook and stops it when ``stop()`` says
    so (the milestone was cancelled, or the boot's time is up); it answers (passed, why not, stats)."""
    started = time.monotonic()
    deadline = started + request.timeout_s

    def fail(why: str) -> BootReport:
        report.failure = why
        return report

    def elapsed() -> float:
        return time.monotonic() - started

    def seen_prompt(raw: bytes | None) -> None:
        if report.login_prompt_s is None and raw and LOGIN_PROMPT.search(raw.replace(b"\r", b"")):
            report.login_prompt_s = elapsed()
            report.checks["login_prompt"] = "ok"
            request.log(f"{request.stage}: login prompt on the console after {report.login_prompt_s:.1f} s")

    refusals = 0
    raw: bytes | None = b""
    try:
        while report.ssh_s is None:
            if request.cancelled():
                return fail("stopped: the milestone was cancelled")
            raw = read_console(console)
            problem = dead_end(raw or b"")
            if problem:
                report.checks["login_prompt"] = "never shown"
                return fail(problem)
            status = exited()
            if status is not None:
                return fail(f"the VM stopped ({_stopped(status)}) before the checks passed")
            if time.monotonic() > deadline:
                waiting = prompt_first and report.login_prompt_s is None
                missing = "a login prompt on the serial console" if waiting else "SSH"
                report.checks["login_prompt" if waiting else "ssh"] = "timed out"
                return fail(f"timed out after {request.timeout_s:.0f} s waiting for {missing}")
            seen_prompt(raw)
            if report.login_prompt_s is not None or not prompt_first:
                code, said = ssh.run("true", timeout=min(SSH_TRY_S, max(deadline - time.monotonic(), 1.0)))
                if code == 0:
                    report.ssh_s = elapsed()
                    report.checks["ssh"] = "ok"
                    request.log(f"{request.stage}: SSH as {ssh.user} with the build's key after {report.ssh_s:.1f} s")
                    break
                report.checks["ssh"] = said.splitlines()[-1] if said else f"exit status {code}"
                refusals = refusals + 1 if "Permission denied" in said else 0
                if refusals >= SSH_REFUSALS:  # sshd answers and says no: waiting changes nothing
                    return fail(f"SSH refused the build's key for user {ssh.user} ({report.checks['ssh']})")
            time.sleep(SSH_PAUSE_S if report.login_prompt_s is not None or not prompt_first else 0.5)
        if report.login_prompt_s is None:  # SSH came first (a cloud): one more look at the console
            raw = read_console(console)
            seen_prompt(raw)
            if report.login_prompt_s is None:
                report.checks["login_prompt"] = NO_CONSOLE if raw is None else "not shown on the console output"
        for name, command, why in (
            ("sudo", "sudo -n true", f"{ssh.user} has no passwordless sudo"),
            ("network", NETWORK_CHECK, "the guest has no default route: DHCP did not configure its network"),
        ):
            code, said = ssh.run(command)
            if code != 0:
                report.checks[name] = said or f"exit status {code}"
                return fail(f"{why} ({said or f'exit status {code}'})")
            report.checks[name] = "ok"
        if run_playbook is not None and request.playbook is not None:
            request.log(f"{request.stage}: running the verification playbook {request.playbook.name} over SSH")
            ok, detail, stats = run_playbook(ssh, lambda: request.cancelled() or time.monotonic() > deadline)
            if not ok and time.monotonic() > deadline:
                detail = f"did not finish within the boot's {request.timeout_s:.0f} s ({detail})"
            report.playbook = stats
            report.checks["playbook"] = "ok" if ok else detail
            if not ok:
                return fail(f"the verification playbook {request.playbook.name} failed: {detail}")
        report.passed = True
        return report
    finally:
        report.total_s = elapsed()
        if not report.passed:
            with contextlib.suppress(Exception):  # once more: a cloud's console may have caught up
                raw = read_console(console)
            report.console_tail = console_tail(raw or b"")


def _stopped(status: int | str) -> str:
    return f"qemu exit status {status}" if isinstance(status, int) else status


PlaybookRunner = Callable[[SshEndpoint, Callable[[], bool]], tuple[bool, str, dict[str, Any]]]


def playbook_verifier(request: BootRequest, marker: str) -> PlaybookRunner:
    """The verification playbook over a guest's SSH (ansible-runner), as :func:`check_guest` runs
    it: the local target's qemu guests and the clouds' test instances alike. ``marker`` tags the
    runner's processes so that a killed earlier try's are found and stopped."""

    def verify(ssh: SshEndpoint, stop: Callable[[], bool]) -> tuple[bool, str, dict[str, Any]]:
        from airflow_provider_imagebuild.toolchain.ansible import run_playbook

        assert request.playbook is not None
        result = run_playbook(
            request.playbook,
            host_vars=ssh.ansible_vars(),
            extravars=dict(request.playbook_vars),
            log=request.log,
            cancelled=stop,
            marker=marker,
        )
        ok = result.status == "successful" and not result.failed and not result.unreachable
        killed = " (ansible-playbook was killed by a signal)" if result.rc == -1 else ""
        detail = "; ".join(result.failures[-3:]) or f"ansible-runner status {result.status}, rc {result.rc}{killed}"
        return ok, "" if ok else detail, {f"playbook_{k.removeprefix('ansible_')}": v
                                           for k, v in result.outputs().items()}  # fmt: skip

    return verify
