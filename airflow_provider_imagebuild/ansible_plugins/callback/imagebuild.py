"""Ansible callback ``imagebuild``: an existing Ansible job records its milestones in the store.

The migration path the framework recommends is *track first, then resume*: before a team moves
its Packer + Ansible job into a pipeline, the job records where each build got to, with nothing
but the ``imagebuild`` CLI. This callback does it for Ansible: each play tagged ``mNNN`` (the
shipped playbooks carry ``tags: [m015, base_config]``) is milestone NNN of the build
``$IMAGEBUILD_BUILD_ID``. When the play starts it asks ``imagebuild build should-run`` and, if
the milestone is next, ``begin``\\ s it; when the play ends it records ``complete``, or ``fail``
with the failed tasks' messages. A play whose milestone is already completed runs as usual (a
callback cannot skip it; the playbooks are idempotent) and records nothing.

Enable it with ``ANSIBLE_CALLBACKS_ENABLED=imagebuild`` and ``ANSIBLE_CALLBACK_PLUGINS`` set to
this file's folder (``imagebuild ansible-callback-path`` prints it); the store comes from ``IMAGEBUILD_STORE``, the CLI
from ``IMAGEBUILD_CLI`` (default: the ``imagebuild`` beside the Python running Ansible, as in a
venv that holds both, else on PATH), the lease owner from
``IMAGEBUILD_OWNER`` (default ``ansible/<user>``). Without ``IMAGEBUILD_BUILD_ID`` it records
nothing and says so once. A store that cannot be reached never fails the playbook: the callback
warns and goes on, as tracking must not break the job it tracks.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import sys
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: imagebuild
    type: notification
    short_description: record milestones of tagged plays in the airflow-provider-imagebuild store
    description:
      - Each play tagged mNNN is milestone NNN of the build IMAGEBUILD_BUILD_ID (begin, complete, fail).
    requirements:
      - the imagebuild CLI (pip install airflow-provider-imagebuild)
"""


def _beside_python(name: str) -> str:
    """A venv's scripts are beside its Python, which is on PATH only when the venv is activated
    (the provider's own lookup order, without importing the provider into Ansible's Python)."""
    folders = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return shutil.which(name, path=folders) or name


MILESTONE_TAG = re.compile(r"m([0-9]{1,3})")
ALREADY_DONE = 10


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "imagebuild"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.build_id = os.environ.get("IMAGEBUILD_BUILD_ID", "")
        self.cli = os.environ.get("IMAGEBUILD_CLI") or _beside_python("imagebuild")
        self.owner = os.environ.get("IMAGEBUILD_OWNER") or f"ansible/{getpass.getuser()}"
        self.lease_seconds = os.environ.get("IMAGEBUILD_LEASE_SECONDS", "3600")
        self.current: int | None = None
        self.token: str | None = None
        self.errors: list[str] = []
        if not self.build_id:
            self._display.warning("imagebuild callback: IMAGEBUILD_BUILD_ID is not set; no milestone is recorded")

    def _imagebuild(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=120, check=False)

    def _finish(self) -> None:
        """Record the milestone of the play that just ended."""
        if self.current is None or self.token is None:
            self.current, self.token, self.errors = None, None, []
            return
        state = str(self.current)
        if self.errors:
            got = self._imagebuild("build", "fail", self.build_id, state, "--token", self.token,
                                   "--error", "; ".join(self.errors[-3:])[:3000])  # fmt: skip
        else:
            got = self._imagebuild("build", "complete", self.build_id, state, "--token", self.token)
        self._report(got, f"milestone {state} {'failed' if self.errors else 'completed'}")
        self.current, self.token, self.errors = None, None, []

    def _report(self, got: subprocess.CompletedProcess[str], what: str) -> None:
        if got.returncode == 0:
            self._display.display(f"imagebuild: {what} (build {self.build_id})")
        else:
            self._display.warning(f"imagebuild: could not record {what}: {got.stderr.strip()[-500:]}")

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._finish()
        if not self.build_id:
            return
        codes = [int(m[1]) for tag in (play.tags or []) if (m := MILESTONE_TAG.fullmatch(str(tag)))]
        if not codes:
            return
        state = str(codes[0])
        asked = self._imagebuild("build", "should-run", self.build_id, state, "--owner", self.owner)
        if asked.returncode == ALREADY_DONE:
            self._display.display(f"imagebuild: milestone {state} of {self.build_id} is already completed")
            return
        if asked.returncode != 0:
            self._display.warning(f"imagebuild: milestone {state} is not recorded: {asked.stderr.strip()[-500:]}")
            return
        begun = self._imagebuild("build", "begin", self.build_id, state, "--owner", self.owner,
                                 "--lease-seconds", self.lease_seconds)  # fmt: skip
        if begun.returncode != 0:
            self._display.warning(f"imagebuild: milestone {state} is not recorded: {begun.stderr.strip()[-500:]}")
            return
        self.current, self.token, self.errors = int(state), begun.stdout.strip(), []
        self._display.display(f"imagebuild: milestone {state} of {self.build_id} begun")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            message = str(result._result.get("msg") or "failed")
            self.errors.append(f"{result._host.get_name()}: {result._task.get_name()}: {message}")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self.errors.append(f"{result._host.get_name()}: unreachable: {result._result.get('msg', '')}")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._finish()
