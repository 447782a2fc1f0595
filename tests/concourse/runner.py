"""Runs a rendered Concourse job the way Concourse would, without Concourse.

Concourse itself (its web node, workers and container runtime) cannot run here, so this runner
executes a job's plan in order on this machine: ``get: source`` is the repository checkout, each
``task`` runs its ``run.path``/``run.args`` in a fresh working folder holding its inputs (links to
earlier artifacts) and empty outputs, with its ``params`` as the environment (``((vars))``
resolved from the given values) and nothing else of this process's environment but ``PATH`` and
``HOME``; ``attempts`` retries, ``timeout`` sends SIGTERM as Concourse aborts a step, and ``on_failure``
runs when the task exited non-zero, ``on_abort`` when it was aborted (``on_error``, Concourse's
own failures to run a step, cannot happen here). A ``put`` runs the resource type's real ``out`` executable
(``concourse/resource/out``) with the protocol JSON on stdin and copies of the put's inputs as its
sources (the resource reads no file through a link leading out of them).
What it does not do: containers, images, workers, caching, versions or triggers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers.process import ROOT

VAR_RE = re.compile(r"\(\(([A-Za-z0-9_.-]+)\)\)")
RESOURCE = ROOT / "concourse/resource"


def resolve(value: Any, variables: Mapping[str, str]) -> Any:
    """``((name))`` placeholders replaced by their values (an unknown one is an error, as in Concourse)."""
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            if m[1] not in variables:
                raise KeyError(f"undefined var (({m[1]}))")
            return variables[m[1]]

        return VAR_RE.sub(one, value)
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    return value


@dataclass
class StepResult:
    name: str
    status: str  # succeeded, failed, aborted
    output: str = ""


@dataclass
class Runner:
    pipeline: dict[str, Any]
    source: Path  # the repository checkout the ``source`` resource yields
    variables: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)  # extra environment for every task (the drill switch)
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="concourse-runner-")))
    artifacts: dict[str, Path] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)

    def resource(self, name: str) -> dict[str, Any]:
        found = next(r for r in self.pipeline["resources"] if r["name"] == name)
        return dict(found)

    def run_job(self, name: str) -> bool:
        """Run the job's plan; True if it succeeded."""
        job = next(j for j in self.pipeline["jobs"] if j["name"] == name)
        return all(self.run_step(step) for step in job["plan"])

    def run_step(self, step: dict[str, Any]) -> bool:
        if "get" in step:
            if step["get"] == "source":
                self.artifacts["source"] = self.source
            return True  # a schedule or other trigger: nothing to fetch here
        if "put" in step:
            return self.put(step)
        if "task" in step:
            return self.task(step)
        raise AssertionError(f"the runner does not know this step: {step}")

    def task(self, step: dict[str, Any]) -> bool:
        config = step["config"]
        attempts = int(step.get("attempts", 1))
        timeout = _seconds(step["timeout"]) if "timeout" in step else None
        status = "failed"
        for _ in range(attempts):
            folder = self.work / f"{step['task']}-{len(self.results)}"
            folder.mkdir(parents=True)
            for item in config.get("inputs", []):
                (folder / item["name"]).symlink_to(self.artifacts[item["name"]])
            for item in config.get("outputs", []):
                (folder / item["name"]).mkdir()
                self.artifacts[item["name"]] = folder / item["name"]
            env = {"PATH": search_path(), "HOME": str(folder), **self.env}
            env.update({k: str(v) for k, v in resolve(config.get("params", {}), self.variables).items()})
            run = config["run"]
            proc = subprocess.Popen(
                [run["path"], *run.get("args", [])],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            try:
                output, _ = proc.communicate(timeout=timeout)
                status = "succeeded" if proc.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)  # Concourse's abort: the container gets SIGTERM
                output, _ = proc.communicate(timeout=60)
                status = "aborted"
            self.results.append(StepResult(step["task"], status, output))
            if status == "succeeded" or status == "aborted":
                break
        if status != "succeeded":
            hook = {"failed": "on_failure", "aborted": "on_abort"}[status]
            if hook in step:
                self.run_step(step[hook])
        return status == "succeeded"

    def put(self, step: dict[str, Any]) -> bool:
        resource = self.resource(step["put"])
        sources = self.work / f"put-{len(self.results)}"
        sources.mkdir(parents=True)
        for name in step.get("inputs", []):
            if name in self.artifacts:  # a put's inputs are volumes in its container, not links out of it
                shutil.copytree(self.artifacts[name], sources / name, symlinks=True)
        request = {
            "source": resolve(resource["source"], self.variables),
            "params": resolve(step.get("params", {}), self.variables),
        }
        env = {"PATH": search_path(), "HOME": str(sources)}
        got = subprocess.run(
            [str(RESOURCE / "out"), str(sources)],
            input=json.dumps(request),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.results.append(
            StepResult(f"put {step['put']}", "succeeded" if got.returncode == 0 else "failed", got.stderr + got.stdout)
        )
        return got.returncode == 0

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def search_path() -> str:
    """The provider's image has ``imagebuild`` and its ``python3`` first on PATH: here, the venv's."""
    return f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|h|m|s)", duration))
