"""The ``command`` action: a program or shell line that reaches a milestone.

The command sees ``BUILD_ID``, ``STATE``, ``STATE_KEY``, ``PIPELINE``, ``CLOUD`` and every
output recorded by earlier milestones (``OUTPUT_<KEY>``); its output streams to the task log,
and lines ``::output:: key=value`` become the milestone's outputs.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException

from airflow_provider_imagebuild.build.catalog import key_of
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.build.values import check_outputs
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.operators.base import MilestoneOperator
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.toolchain.locate import tool_path
from airflow_provider_imagebuild.toolchain.process import ChildProcess

OUTPUT_MARK = "::output::"


def output_env_name(key: str) -> str:
    return "OUTPUT_" + re.sub(r"[^A-Za-z0-9]", "_", key).upper()


class CommandMilestoneOperator(MilestoneOperator):
    template_fields: Sequence[str] = ("command", "env")
    _child: ChildProcess | None = None  # while the command runs

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

    def build_env(self, build: BuildRecord) -> dict[str, str]:
        env = dict(os.environ)
        for key, value in build.merged_outputs().items():
            text = value if isinstance(value, str) else str(value)
            if "\0" in text:  # recorded before such values were refused: skipped, not fatal
                self.log.warning("output %s holds a NUL byte; not passed to the command", key)
                continue
            env[output_env_name(key)] = text
        env["PATH"] = tool_path(env)  # the tools the worker runs (its venv's too), unless the spec sets PATH
        env.update(self.env)
        env.update(
            BUILD_ID=build.build_id,
            STATE=str(self.state),
            STATE_KEY=self.state_key,
            PIPELINE=self.pipeline,
            CLOUD=self.cloud,
        )
        return env

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        shell = isinstance(self.command, str)
        self.log_output(f"running {self.command if shell else ' '.join(self.command)}")
        child = self._child = ChildProcess(self.command, env=self.build_env(build), cwd=self.cwd)
        outputs: dict[str, Any] = {}
        refused: InvalidInput | None = None  # the first output the store would refuse
        tail: deque[str] = deque(maxlen=20)
        for line in child.lines():
            tail.append(line)
            if line.startswith(OUTPUT_MARK):
                raw_key, sep, raw_value = line[len(OUTPUT_MARK) :].partition("=")
                if sep:
                    key, value = raw_key.strip(), raw_value.strip()
                    try:  # checked as it arrives; the command still runs to its end
                        # what a command prints is text: masked like its log (the store applies
                        # only the patterns to outputs, which are identifiers elsewhere)
                        outputs.update(check_outputs({**outputs, key: self.redactor(value)}))
                        self.log_output(f"output {key}={value}")
                    except InvalidInput as exc:
                        refused = refused or exc
                        self.log_output(f"output refused: {exc}")
                    continue
            self.log_output(line)
        code = child.wait()
        self._child = None
        if child.strays:
            self.log_output(f"killed {len(child.strays)} process(es) the command left running: {child.strays}")
        if child.stopped:
            raise AirflowException(f"command stopped: {child.stopped}")
        if code != 0:
            last = "\n".join(tail)
            raise AirflowException(f"command exited with status {code}; last output:\n{last}")
        if refused is not None:
            raise refused
        return outputs

    def stop_action(self, reason: str) -> None:
        if self._child is not None:
            self.log.warning("stopping command (%s)", reason)
            self._child.stop(reason)
