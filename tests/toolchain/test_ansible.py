"""ansible-runner as the Ansible milestones use it: events streamed and counted, the lease
refreshed on progress, stats as outputs, an unreachable host told apart from a failed task, and
cancellation (``on_kill``, a lost lease) stopping a running playbook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from airflow_provider_imagebuild.toolchain.ansible import RUN_MARK_ENV, chroot_host_vars, run_playbook
from airflow_provider_imagebuild.toolchain.process import argv_of
from tests.conftest import free_port

MOTD = """
- hosts: all
  gather_facts: false
  tasks:
    - name: motd
      ansible.builtin.copy: {dest: /etc/motd, content: "build {{ imagebuild_build_id }}\\n"}
"""


def test_events_stats_and_idempotence_on_a_chroot_build_host(build_host_root: Path, tmp_path: Path) -> None:
    playbook = tmp_path / "motd.yml"
    playbook.write_text(MOTD)
    host = chroot_host_vars(build_host_root)
    lines: list[str] = []
    beats: list[float] = []
    first = run_playbook(
        playbook,
        host_vars=host,
        extravars={"imagebuild_build_id": "b-7"},
        log=lines.append,
        on_progress=lambda: beats.append(time.monotonic()),
    )
    assert (first.status, first.ok, first.changed, first.failed) == ("successful", 1, 1, 0)
    assert "TASK [motd]" in lines and "changed: [buildhost] motd" in lines
    assert len(beats) >= 2  # task start and result each refresh the lease
    assert (build_host_root / "etc/motd").read_text() == "build b-7\n"
    assert first.outputs()["ansible_changed"] == 1 and first.outputs()["ansible_duration_s"] > 0
    second = run_playbook(playbook, host_vars=host, extravars={"imagebuild_build_id": "b-7"}, log=lines.append)
    assert (second.status, second.changed) == ("successful", 0)


FAMILY = """
- hosts: all
  gather_subset: [min]
  tasks:
    - name: family
      ansible.builtin.debug: {msg: "family={{ ansible_os_family }}"}
"""


def test_facts_are_gathered_once_per_build_host(build_host_root: Path, tmp_path: Path) -> None:
    playbook = tmp_path / "family.yml"
    playbook.write_text(FAMILY)
    host = chroot_host_vars(build_host_root)
    runs = []
    for _ in range(2):
        lines: list[str] = []
        result = run_playbook(playbook, host_vars=host, extravars={}, log=lines.append, fact_cache=tmp_path / "facts")
        assert result.status == "successful" and result.failed == 0
        runs.append(lines)
    assert "TASK [Gathering Facts]" in runs[0]
    assert "TASK [Gathering Facts]" not in runs[1]  # the second milestone's playbook used the cache


def test_unreachable_host_is_reported_as_unreachable(tmp_path: Path) -> None:
    playbook = tmp_path / "p.yml"
    playbook.write_text(MOTD)
    host = {
        "ansible_connection": "ssh",
        "ansible_host": "127.0.0.1",
        "ansible_port": free_port(),
        "ansible_ssh_timeout": 3,
    }
    result = run_playbook(playbook, host_vars=host, extravars={"imagebuild_build_id": "x"}, log=lambda _: None)
    assert (result.unreachable, result.failed, result.status) == (1, 0, "failed")
    assert "UNREACHABLE" in result.failures[0] and "Connection refused" in result.failures[0]


def test_cancel_stops_a_running_playbook(tmp_path: Path) -> None:
    playbook = tmp_path / "slow.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: wait\n      ansible.builtin.pause: {seconds: 120}\n"
    )
    started = threading.Event()
    stop = threading.Event()

    def log(line: str) -> None:
        if line == "TASK [wait]":
            started.set()

    threading.Thread(target=lambda: stop.set() if started.wait(60) else None, daemon=True).start()
    began = time.monotonic()
    result = run_playbook(
        playbook, host_vars={"ansible_connection": "local"}, extravars={}, log=log, cancelled=stop.is_set
    )
    assert started.is_set() and result.status == "canceled"
    assert time.monotonic() - began < 60
    # ansible-runner kills the playbook's process group; the worker running the task had left it
    # (setsid) and used to keep running, orphaned. Nothing of this playbook may be left.
    assert _running_with(str(playbook)) == []


def _running_with(arg: str) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and arg in argv_of(int(p.name))]


def test_a_playbook_first_kills_what_an_earlier_try_left_on_its_host(tmp_path: Path) -> None:
    """A task process killed outright leaves ansible workers running on the build host; the next
    playbook for that host kills them before it starts, and spares SSH connection caches."""
    marker = "host-" + os.urandom(6).hex()
    env = {**os.environ, RUN_MARK_ENV: marker}
    worker = subprocess.Popen(["sleep", "300"], env=env, start_new_session=True)
    ssh_cache = subprocess.Popen(
        ["bash", "-c", f"exec -a ssh {sys.executable} -c 'import time; time.sleep(300)' -o ControlPersist=60s"],
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while argv_of(ssh_cache.pid)[:1] != ["ssh"] and time.monotonic() < deadline:
            time.sleep(0.05)  # until bash has exec'd into the stand-in
        playbook = tmp_path / "noop.yml"
        playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: hi}\n")
        lines: list[str] = []
        result = run_playbook(
            playbook, host_vars={"ansible_connection": "local"}, extravars={}, log=lines.append, marker=marker
        )
        assert result.status == "successful", lines
        assert worker.wait(timeout=10) == -signal.SIGKILL
        assert f"killed 1 process(es) an earlier run left on this build host: [{worker.pid}]" in lines, lines
        assert ssh_cache.poll() is None  # the connection cache lives on
    finally:
        for proc in (worker, ssh_cache):
            proc.kill()
            proc.wait()


def test_extra_variables_never_reach_a_command_line(tmp_path: Path) -> None:
    """Extra variables (a password for a playbook) are read by Ansible from a 0600 file, not from
    ansible-playbook's argv, which every local user can read in /proc while the playbook runs."""
    secret = "Xtra-" + os.urandom(8).hex()
    out = tmp_path / "seen.txt"
    playbook = tmp_path / "secret.yml"
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.copy: {{dest: {out}, content: '{{{{ db_password }}}}'}}\n"
        "    - ansible.builtin.pause: {seconds: 2}\n"
    )
    seen_in_argv: list[list[str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for pid in (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
                argv = argv_of(pid)
                if any(secret in a for a in argv):
                    seen_in_argv.append(argv)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    lines: list[str] = []
    try:
        result = run_playbook(
            playbook,
            host_vars={"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            extravars={"db_password": secret},
            log=lines.append,
        )
    finally:
        done.set()
        watcher.join(5)
    assert result.status == "successful", lines
    assert out.read_text() == secret  # the variable did reach the playbook
    assert seen_in_argv == []
