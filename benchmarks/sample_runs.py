"""The four runs the sample-pipeline benchmarks measure (aws_bench.py, azure_bench.py): a clean
build, a run that fails at a milestone, its resume (the same build id, as a clear does), and a
monolithic rerun (everything again on a fresh host, as a plain Packer + Ansible build does)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def airflow_home(work: Path, dags: Path) -> None:
    """A throw-away Airflow for ``dag.test()``: its home under ``work``, the project's DAG file,
    the specs in ``work/pipelines``, the metadata database migrated."""
    os.environ.update(
        AIRFLOW_HOME=str(work / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        IMAGEBUILD_PIPELINES_DIR=str(work / "pipelines"),
    )
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)


@contextlib.contextmanager
def quiet(log: Path) -> Iterator[None]:
    """Send Airflow's task output to a file (fd-level: the task runner writes to the real fds)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "a") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


@dataclass
class Figures:
    clean: float
    failed: float
    resume: float
    mono: float
    remaining_share: float  # the clean build's milestone time from the failing milestone on

    def table(self, fail_at: int) -> list[str]:
        return [
            "| run | wall time |",
            "|---|---:|",
            f"| clean build | {self.clean:.1f} s |",
            f"| run that fails at {fail_at} | {self.failed:.1f} s |",
            f"| resume from {fail_at} (same build id, as a clear does) | **{self.resume:.1f} s** |",
            f"| monolithic rerun (everything again, fresh host) | {self.mono:.1f} s |",
            "",
            f"Resume / monolithic = **{self.resume / self.mono:.2f}**; the milestones from {fail_at} on are "
            f"{self.remaining_share:.0%} of the clean build's recorded milestone time",
        ]

    def print(self) -> None:
        for key in ("clean", "failed", "resume", "mono"):
            print(f"{key + '_s':>16}: {getattr(self, key):.3f}")
        print(f"{'ratio':>16}: {self.resume / self.mono:.3f}")


def four_runs(
    dag: Any, store: Any, root: Path, archive: Path, log: Path, fail_at: int, fresh: Callable[[Path], None]
) -> Figures:
    """Run the four builds; ``fresh`` prepares a restored build host tree (before each fresh host)."""
    from airflow_provider_imagebuild.targets.rootfs import chroot_name_servers, restore

    def build(build_id: str, fresh_host: bool, fail: str = "") -> tuple[float, str]:
        if fresh_host:
            shutil.rmtree(root, ignore_errors=True)
            restore(archive, root)
            chroot_name_servers(root)
            fresh(root)
        os.environ["IMAGEBUILD_FAIL_AT"] = fail
        when = datetime.now(timezone.utc).replace(microsecond=0)
        started = time.perf_counter()
        with quiet(log):
            state = dag.test(logical_date=when, run_conf={"build_id": build_id}).state
        return time.perf_counter() - started, str(state)

    clean, state = build("bench-clean", True)
    assert state == "success", f"clean build {state}; see {log}"
    failed, state = build("bench-resume", True, str(fail_at))
    assert state == "failed", f"the run meant to fail at {fail_at} ended {state}; see {log}"
    resume, state = build("bench-resume", False)
    assert state == "success", f"resume {state}; see {log}"
    mono, state = build("bench-mono", True)
    assert state == "success", f"monolithic rerun {state}; see {log}"
    durations = {code: ms.duration_s or 0.0 for code, ms in store.get("bench-clean").milestones.items()}
    remaining = sum(d for code, d in durations.items() if code >= fail_at) / sum(durations.values())
    return Figures(clean, failed, resume, mono, remaining)
