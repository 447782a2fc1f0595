"""A throw-away qemu VM for boot checks: the disk behind an overlay, SSH forwarded to loopback.

- The disk is opened with ``snapshot=on``: every write of the guest goes to a temporary overlay
  that qemu drops when it exits, so the image checked is the image delivered, untouched.
- The serial console goes to a file (the kernel and the login prompt are read from there); there is
  no display, no monitor and no default device (``-nodefaults``): only the disk and one virtio NIC,
  user-mode networking with the guest's port 22 forwarded to a free port on ``127.0.0.1`` (never
  another address). The NIC has no option ROM, so a firmware that finds nothing to boot says so at
  once instead of trying a network boot.
- Acceleration: TCG (emulation) unless KVM is asked for or, with ``auto``, a short probe shows that
  KVM runs a guest here: on some machines ``/dev/kvm`` exists and a KVM guest hangs without printing
  anything (nested virtualisation). The probe's verdict is kept per host boot (``/proc``'s
  ``boot_id``) and qemu version, so it costs its seconds once.
- The process runs under :class:`~.process.ChildProcess` (its own session, killed with the task,
  stray processes found by their marker) and is always stopped when the check ends; a process of an
  earlier, killed try of the same build is found by the build's marker and killed before a new VM
  starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from airflow_provider_imagebuild.errors import InvalidInput, TargetError
from airflow_provider_imagebuild.toolchain.locate import find_tool
from airflow_provider_imagebuild.toolchain.process import ChildProcess, kill_marked

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
VM_MARK_ENV = "IMAGEBUILD_VM"  # the build's marker on every qemu it starts
KVM_PROBE_S = 8.0  # a KVM guest prints its first byte within milliseconds; TCG is never probed
STOP_GRACE_S = 5.0
# The probe's guest: a boot sector that writes "KVM-OK" to the first serial port and halts.
#   xor ax,ax; mov ds,ax; mov dx,0x3f8; mov si,msg; cld
#   next: lodsb; test al,al; jz halt; out dx,al; jmp next
#   halt: cli; hlt; msg: db "KVM-OK",0
PROBE_TEXT = b"KVM-OK"
PROBE_CODE = bytes.fromhex("31c08ed8baf803be157cfcac84c07403eeebf8faf4") + PROBE_TEXT + b"\0"


def qemu_binary() -> str:
    exe = find_tool(QEMU)
    if exe is None:
        raise InvalidInput("qemu", f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    return exe


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (qemu binds it a moment later; a lost race is retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _qemu_version(exe: str) -> str:
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False, timeout=30)
    return proc.stdout.splitlines()[0] if proc.stdout else ""


def probe_kvm(exe: str, work: Path, accel: str = "kvm") -> bool:
    """Whether a KVM guest runs here: the probe's boot sector must print within ``KVM_PROBE_S``."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    sector = bytearray(512)
    sector[: len(PROBE_CODE)] = PROBE_CODE
    sector[510:] = b"\x55\xaa"
    disk, console = work / "kvm-probe.img", work / "kvm-probe.console"
    disk.write_bytes(bytes(sector))
    console.write_bytes(b"")
    argv = [exe, "-machine", f"pc,accel={accel}", "-m", "64", "-nodefaults", "-display", "none", "-monitor", "none",
            "-serial", f"file:{console}", "-drive", f"file={disk},format=raw,if=ide"]  # fmt: skip
    child = ChildProcess(argv, stop_signal=signal.SIGKILL, grace_s=1.0)
    threading.Thread(target=lambda: deque(child.lines(), maxlen=0), name="kvm-probe-output", daemon=True).start()
    try:
        deadline = time.monotonic() + KVM_PROBE_S
        while time.monotonic() < deadline and child.proc.poll() is None:
            if PROBE_TEXT in console.read_bytes():
                return True
            time.sleep(0.1)
        return PROBE_TEXT in console.read_bytes()
    finally:
        child.stop("KVM probe over")
        child.wait()


def accelerator(setting: str, cache: Path, log: Callable[[str], None]) -> str:
    """``tcg`` or ``kvm`` for the spec's ``accel`` (``auto`` probes KVM, once per host boot)."""
    if setting in ("tcg", "kvm"):
        return setting
    exe = qemu_binary()
    key = {"boot_id": _boot_id(), "qemu": _qemu_version(exe)}
    verdict = cache / "kvm-probe.json"
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(verdict.read_text())
        if {k: known.get(k) for k in key} == key:
            return "kvm" if known.get("kvm") else "tcg"
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / f".kvm-probe-{os.getpid()}"
    work.mkdir(exist_ok=True)
    try:
        works = probe_kvm(exe, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"KVM probe: {'a KVM guest runs here' if works else 'no working KVM here'}; using {'kvm' if works else 'tcg'}")
    partial = verdict.with_name(verdict.name + f".{os.getpid()}")
    partial.write_text(json.dumps({**key, "kvm": works}))
    partial.replace(verdict)
    return "kvm" if works else "tcg"


@dataclass(frozen=True)
class VmSettings:
    disk: Path
    disk_format: str  # raw | qcow2
    firmware: str  # uefi | bios
    accel: str  # tcg | kvm
    memory_mb: int
    cpus: int
    console: Path  # the serial console's file
    work: Path  # for the UEFI variable store's copy
    marker: str  # the build's marker (VM_MARK_ENV)


class Vm:
    """One running VM; :meth:`stop` (or leaving the ``with`` block) always ends it."""

    def __init__(self, settings: VmSettings, ssh_port: int) -> None:
        self.settings = settings
        self.ssh_port = ssh_port
        self.output: deque[str] = deque(maxlen=20)  # qemu's own messages (not the guest's)
        self._child: ChildProcess | None = None
        self._drain: threading.Thread | None = None

    def argv(self) -> list[str]:
        s = self.settings
        machine = f"q35,accel={s.accel}"
        argv = [qemu_binary(), "-machine", machine, "-m", str(s.memory_mb), "-smp", str(s.cpus),
                "-nodefaults", "-display", "none", "-monitor", "none", "-serial", f"file:{s.console}",
                "-no-reboot", "-name", f"imagebuild-boot-check,process=imagebuild-{s.marker[:12]}"]  # fmt: skip
        if s.firmware == "uefi":
            if not OVMF_CODE.is_file() or not OVMF_VARS.is_file():
                raise InvalidInput("target.boot", f"UEFI firmware {OVMF_CODE} is not installed (apt-get install ovmf)")
            variables = s.work / "OVMF_VARS.fd"
            shutil.copyfile(OVMF_VARS, variables)  # the firmware writes its variables; never into the shared file
            argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={variables}"]  # fmt: skip
        argv += [
            "-drive", f"file={s.disk},format={s.disk_format},if=virtio,snapshot=on",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
            "-device", "virtio-net-pci,netdev=net0,romfile=",
        ]  # fmt: skip
        return argv

    def start(self) -> None:
        kill_marked(VM_MARK_ENV, self.settings.marker)  # a VM an earlier, killed try left behind
        self.settings.console.write_bytes(b"")
        env = {**os.environ, VM_MARK_ENV: self.settings.marker}
        self._child = ChildProcess(self.argv(), env=env, stop_signal=signal.SIGTERM, grace_s=STOP_GRACE_S)
        self._drain = threading.Thread(target=self._read_output, name="qemu-output", daemon=True)
        self._drain.start()

    def _read_output(self) -> None:
        assert self._child is not None
        for line in self._child.lines():
            if line.strip():
                self.output.append(line.strip()[:300])

    def exited(self) -> int | None:
        """qemu's exit status once it has exited (the guest powered off, or qemu failed), else None."""
        return None if self._child is None else self._child.proc.poll()

    def stop(self) -> None:
        """End the VM and anything it started; returns once they are gone."""
        if self._child is not None:
            self._child.stop("boot check over")
            self._child.wait()
            if self._drain is not None:
                self._drain.join(5)
        kill_marked(VM_MARK_ENV, self.settings.marker)

    def __enter__(self) -> Vm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


OVMF_SINGLE = Path("/usr/share/ovmf/OVMF.fd")  # code and variables in one file, for ``-bios``


def boot_command(image: Path, firmware: str = "uefi", accel: str = "tcg", port: int = 2222) -> str:
    """The one line that boots a delivered image by hand: the serial console on the terminal (quit
    with Ctrl-a x), SSH on ``127.0.0.1:port``; ``-snapshot`` leaves the file as it was delivered."""
    argv = [QEMU, "-machine", f"q35,accel={accel}", "-m", "1024", "-nographic", "-snapshot"]
    if firmware == "uefi":
        argv += ["-bios", str(OVMF_SINGLE)]
    argv += [
        "-drive", f"file={image},if=virtio,format=qcow2",
        "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22",
    ]  # fmt: skip
    return shlex.join(argv)


PORT_TAKEN = "host forwarding rule"  # what qemu says when the forwarded port is no longer free


@contextlib.contextmanager
def running_vm(settings: VmSettings, attempts: int = 3) -> Iterator[Vm]:
    """A started VM on a free loopback port (another port when qemu lost the race for one)."""
    for attempt in range(attempts):
        vm = Vm(settings, free_loopback_port())
        vm.start()
        deadline = time.monotonic() + 2.0
        while vm.exited() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if vm.exited() is not None:
            vm.stop()
            said = " ".join(vm.output)
            if PORT_TAKEN in said and attempt < attempts - 1:
                continue
            raise TargetError(f"qemu did not start (exit status {vm.exited()}): {said[-800:]}")
        try:
            yield vm
        finally:
            vm.stop()
        return
