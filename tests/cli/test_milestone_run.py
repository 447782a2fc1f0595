"""``imagebuild milestone run`` from a shell: exit 3 when another run holds the build (the CLI's
conflict code), advice to run the step again (there is no Airflow task to clear), and none of
Airflow's warnings about ``execute`` called outside its Task Runner. A real process each time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from airflow_provider_imagebuild.store import open_store

EXE = str(Path(sys.executable).with_name("imagebuild"))

SPEC = """pipeline: shellrun
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
include_standard: false
defaults: {{retries: 0, lease_seconds: 30}}
milestones:
  5: {{action: command, command: "true"}}
  42: {{action: command, key: license_check, title: License check, command: "echo GPL found; exit 1"}}
"""


def milestone_run(spec: Path, code: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(spec.parent)}
    args = [EXE, "milestone", "run", str(spec), str(code), "--build-id", "sh-1"]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, cwd=spec.parent)


def test_a_shell_step_is_told_to_run_again_and_a_held_build_exits_3(tmp_path: Path) -> None:
    spec = tmp_path / "shellrun.yaml"
    spec.write_text(SPEC.format(tmp=tmp_path))
    for code in (0, 5):
        done = milestone_run(spec, code)
        assert done.returncode == 0, done.stderr
        assert "outside of the Task Runner" not in done.stderr + done.stdout

    failed = milestone_run(spec, 42)
    said = failed.stdout + failed.stderr  # the task's log lines, then the error line
    assert failed.returncode == 1, said
    assert "outside of the Task Runner" not in said
    assert f"run the step again (imagebuild milestone run {spec} 42 --build-id sh-1)" in said
    assert "clear this task" not in said and "Clear dialog" not in said
    assert "milestone 42 (License check) of build sh-1: attempt 1 started" in said

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    store.begin("sh-1", 42, owner="concourse/other/job/1", lease_seconds=600)
    held = milestone_run(spec, 42)
    assert held.returncode == 3, held.stderr
    assert "leased by 'concourse/other/job/1'" in held.stderr.splitlines()[-1]
