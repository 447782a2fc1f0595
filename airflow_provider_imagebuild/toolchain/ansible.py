"""One playbook run through ansible-runner, with every task event streamed and counted.

``run_async`` with an event handler: each task start / ok / changed / failed / unreachable is
written to the task log as it happens and calls ``on_progress`` (the operator refreshes its lease
there), and ``cancel_callback`` lets ``on_kill`` or a lost lease stop the run. The play's stats
(ok, changed, failed, unreachable, duration) become the milestone's outputs.

ansible-playbook's workers call ``setsid()``, so the process-group kill ansible-runner does on a
cancel leaves a worker running its task on the build host, and a task process killed outright
leaves them all. Every run therefore carries a marker in its environment (one per build host):
what is still marked after a run is killed, and so is what an earlier, killed try left behind
before the next playbook touches the same host.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.toolchain.locate import tool_path
from airflow_provider_imagebuild.toolchain.private import private_json
from airflow_provider_imagebuild.toolchain.process import kill_marked

HOST = "buildhost"
RUN_MARK_ENV = "IMAGEBUILD_ANSIBLE_HOST"


def _ssh_connection_cache(argv: list[str]) -> bool:
    """An SSH ControlPersist master: a connection cache that exits by itself when idle, and that
    the next playbook on the same host reuses. It is spared; workers and their tasks are not."""
    return bool(argv) and os.path.basename(argv[0]) == "ssh" and any("ControlPersist" in a for a in argv)


@dataclass
class PlaybookResult:
    status: str  # successful | failed | canceled | timeout
    rc: int
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    duration_s: float = 0.0
    failures: list[str] = field(default_factory=list)

    def outputs(self) -> dict[str, Any]:
        return {
            "ansible_ok": self.ok,
            "ansible_changed": self.changed,
            "ansible_failed": self.failed,
            "ansible_unreachable": self.unreachable,
            "ansible_duration_s": round(self.duration_s, 2),
        }


def chroot_host_vars(root: Path | str) -> dict[str, str]:
    """Inventory variables that reach a root filesystem tree over ``community.general.chroot``."""
    return {
        "ansible_connection": "community.general.chroot",
        "ansible_host": str(root),
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def _host_count(stats: Mapping[str, Any] | None, key: str) -> int:
    return int(sum((stats or {}).get(key, {}).values()))


def describe_event(event: Mapping[str, Any]) -> str | None:
    """A one-line log entry for the events an operator watches; None for the rest."""
    kind = event.get("event", "")
    data = event.get("event_data", {})
    task = data.get("task", "")
    host = data.get("host", "")
    if kind == "playbook_on_task_start":
        return f"TASK [{task}]"
    if kind == "runner_on_ok":
        return f"{'changed' if data.get('res', {}).get('changed') else 'ok'}: [{host}] {task}"
    if kind == "runner_on_skipped":
        return f"skipping: [{host}] {task}"
    if kind == "runner_on_failed":
        if data.get("ignore_errors"):
            return f"failed (ignored): [{host}] {task}"
        return f"FAILED: [{host}] {task}: {_message(data)}"
    if kind == "runner_on_unreachable":
        return f"UNREACHABLE: [{host}] {task}: {_message(data)}"
    if kind == "playbook_on_play_start":
        return f"PLAY [{data.get('play', '')}]"
    return None


def _message(data: Mapping[str, Any]) -> str:
    res = data.get("res", {}) or {}
    msg = res.get("msg") or res.get("stderr") or res.get("module_stderr") or ""
    return str(msg).strip()[:2000]


def private_dir(path: Path) -> Path:
    """A directory only this user can write (facts steer playbooks: in a shared /tmp, another
    local user must not be able to plant them), refused if someone else made it first."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if path.is_symlink() or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise InvalidInput("fact_cache", f"{path} is not a private directory of this user; remove it")
    return path


def write_extravars(private_data_dir: Path, extravars: Mapping[str, Any]) -> Path:
    """Extra variables in ``env/extravars``, readable by this user only: ansible-runner passes
    them as ``-e @file``. Given as its ``extravars`` argument they would be a JSON literal on
    ansible-playbook's command line, which every local user can read in the process list."""
    env_dir = private_data_dir / "env"
    env_dir.mkdir(mode=0o700, exist_ok=True)
    return private_json(env_dir / "extravars", extravars)


def run_playbook(
    playbook: Path,
    *,
    host_vars: Mapping[str, Any],
    extravars: Mapping[str, Any],
    log: Callable[[str], None],
    on_progress: Callable[[], None] = lambda: None,
    cancelled: Callable[[], bool] = lambda: False,
    work_dir: Path | None = None,
    fact_cache: Path | None = None,
    marker: str | None = None,
) -> PlaybookResult:
    """Run ``playbook`` against the one build host described by ``host_vars``.

    With ``fact_cache`` (a directory per build host), facts gathered by one milestone's playbook
    are reused by the next ones (``gathering = smart``): each later playbook skips a round trip
    that costs about a second over chroot and several over SSH. Plays that set
    ``gather_facts: true`` explicitly still gather.

    ``marker`` names the build host (letters, digits, ``-``): processes of an earlier run with the
    same marker are killed first, and this run's are killed when it ends. Without one, the run
    gets a marker of its own."""
    import ansible_runner

    if not playbook.is_file():
        raise InvalidInput("playbook", f"{playbook} not found")
    failures: list[str] = []
    started = time.monotonic()
    mark = marker or uuid.uuid4().hex
    stale = kill_marked(RUN_MARK_ENV, mark, spare=_ssh_connection_cache)
    if stale:
        log(f"killed {len(stale)} process(es) an earlier run left on this build host: {stale}")

    def on_event(event: dict[str, Any]) -> bool:
        line = describe_event(event)
        if line:
            log(line)
            if event.get("event") in {"runner_on_failed", "runner_on_unreachable"} and not event.get(
                "event_data", {}
            ).get("ignore_errors"):
                failures.append(line)
        if event.get("event", "").startswith(("runner_on_", "playbook_on_task_start")):
            on_progress()
        # Keep only the final stats event (runner.stats reads it); the log has the rest.
        return bool(event.get("event") == "playbook_on_stats")

    # ansible-runner runs ansible-playbook from PATH: the worker's tool folders (its venv first).
    env = {
        "PATH": tool_path(),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        RUN_MARK_ENV: mark,
    }
    cache: dict[str, str] = {}
    if fact_cache is not None:  # ansible-runner's jsonfile cache, at an absolute path of ours
        private_dir(fact_cache.parent)
        private_dir(fact_cache)
        env.update(ANSIBLE_GATHERING="smart", ANSIBLE_CACHE_PLUGIN_TIMEOUT="86400")
        cache = {"fact_cache": str(fact_cache.resolve()), "fact_cache_type": "jsonfile"}
    with tempfile.TemporaryDirectory(prefix="imagebuild-ansible-", dir=work_dir) as private:
        write_extravars(Path(private), extravars)
        thread, runner = ansible_runner.run_async(
            private_data_dir=private,
            playbook=str(playbook.resolve()),
            inventory={"all": {"hosts": {HOST: dict(host_vars)}}},
            envvars=env,
            project_dir=str(playbook.resolve().parent),
            event_handler=on_event,
            cancel_callback=cancelled,
            quiet=True,
            suppress_env_files=True,
            json_mode=False,
            **cache,
        )
        try:
            thread.join()
        finally:
            strays = kill_marked(RUN_MARK_ENV, mark, spare=_ssh_connection_cache)
        if strays:
            log(f"killed {len(strays)} process(es) the playbook left running: {strays}")
        stats = runner.stats or {}
    return PlaybookResult(
        status=runner.status,
        rc=int(runner.rc if runner.rc is not None else -1),
        ok=_host_count(stats, "ok"),
        changed=_host_count(stats, "changed"),
        failed=_host_count(stats, "failures"),
        unreachable=_host_count(stats, "dark"),
        skipped=_host_count(stats, "skipped"),
        duration_s=time.monotonic() - started,
        failures=failures,
    )
