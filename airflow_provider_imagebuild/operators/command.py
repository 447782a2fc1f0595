"""The ``command`` action: a program or shell line that reaches a milestone.

The command sees ``BUILD_ID``, ``STATE``, ``STATE_KEY``, ``PIPELINE``, ``CLOUD`` and every
output recorded by earlier milestones (``OUTPUT_<KEY>``); its output streams to the task log,
and lines ``::output:: key=value`` become the milestone's outputs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException

from airflow_provider_imagebuild.build import check_key
from airflow_provider_imagebuild.lease import LeaseKeeper
from airflow_provider_imagebuild.milestone import key_of
from airflow_provider_imagebuild.operators.milestone import MilestoneOperator
from airflow_provider_imagebuild.store.record import BuildRecord

OUTPUT_MARK = "::output::"
KILL_GRACE_S = 10.0


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _load_prctl()  # resolved in the parent: the child between fork and exec must not import
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child: get SIGTERM when the task process dies, even by SIGKILL (Linux prctl).

    The command runs in its own session so that ``on_kill`` can signal its whole process group;
    without this, a worker killed outright would leave Packer or Ansible running unsupervised.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def output_env_name(key: str) -> str:
    return "OUTPUT_" + re.sub(r"[^A-Za-z0-9]", "_", key).upper()


class CommandMilestoneOperator(MilestoneOperator):
    template_fields: Sequence[str] = ("command", "env")

    def __init__(
        self,
        *,
        command: str | list[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        state_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.env = dict(env or {})
        self.cwd = cwd
        self.state_key = state_key or key_of(self.state)
        self._proc: subprocess.Popen[str] | None = None
        self._stopped: str | None = None

    def build_env(self, build: BuildRecord) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in build.merged_outputs().items():
            env[output_env_name(key)] = value if isinstance(value, str) else str(value)
        env.update(self.env)
        env.update(
            BUILD_ID=build.build_id,
            STATE=str(self.state),
            STATE_KEY=self.state_key,
            PIPELINE=self.pipeline,
            CLOUD=self.cloud,
        )
        return env

    def run_milestone(self, context: Any, build: BuildRecord, keeper: LeaseKeeper) -> dict[str, Any]:
        shell = isinstance(self.command, str)
        self.log.info("running %s", self.command if shell else " ".join(self.command))
        proc = subprocess.Popen(
            self.command,
            shell=shell,
            cwd=self.cwd,
            env=self.build_env(build),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._proc = proc
        outputs: dict[str, Any] = {}
        tail: deque[str] = deque(maxlen=20)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            if line.startswith(OUTPUT_MARK):
                raw_key, sep, raw_value = line[len(OUTPUT_MARK) :].partition("=")
                if sep:
                    key, value = raw_key.strip(), raw_value.strip()
                    outputs[check_key(key, f"output {key!r}")] = value
                    self.log.info("output %s=%s", key, value)
                    continue
            self.log.info("%s", line)
        code = proc.wait()
        self._proc = None
        if self._stopped:
            raise AirflowException(f"command stopped: {self._stopped}")
        if code != 0:
            last = "\n".join(tail)
            raise AirflowException(f"command exited with status {code}; last output:\n{last}")
        return outputs

    def stop_action(self, reason: str) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        self._stopped = reason
        self.log.warning("stopping command (%s)", reason)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

        def _escalate() -> None:
            try:
                proc.wait(KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

        threading.Thread(target=_escalate, daemon=True).start()
