"""The headline: recovery after a failure at milestone k, resume versus a monolithic rerun.

A 21-milestone pipeline whose milestones take the catalog's realistic relative durations
(minutes, scaled down to SCALE seconds per minute) is run through the milestone operators - the
framework's whole per-milestone path: store read, skip or lease + heartbeat thread + command +
record - with a failure injected at k (``IMAGEBUILD_FAIL_AT``). The resume runs every task again,
as a cleared DAG run does: completed milestones are skipped, k onwards run. A monolithic rerun is
what a plain Packer + Ansible build does after a failure: every step again, from the start, with
no framework at all (the same commands in a row).

The target: resume / monolithic within 5 points of the remaining work's share of the build,
i.e. the framework's own overhead stays under 5% of the work it saves. Airflow's per-task
scheduling cost is the same with or without this provider and is not part of this measure (see
the DAG benchmark for the skip cost inside a task, and the AWS benchmark for whole DAG runs).
Writes the "Recovery after a failure" section of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import replace_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## Recovery after a failure (the headline)"
SCALE = 0.1  # seconds per real-world minute
# Typical minutes per milestone (the milestone catalog, docs/concepts/index.md): installs and green
# image long, configuration 5-15, application work up to 45, tests and seal in between.
MINUTES = {
    5: 30, 10: 20, 15: 10, 20: 8, 25: 10, 30: 6, 35: 8, 40: 5, 45: 6, 50: 5, 55: 15,
    60: 25, 65: 8, 70: 12, 75: 6, 80: 5, 85: 5, 90: 12, 95: 10, 100: 8,
}  # fmt: skip
KS = (25, 55, 85)


def command(code: int) -> list[str]:
    return ["sleep", f"{MINUTES[code] * SCALE:.3f}"]


def monolithic() -> float:
    """Every step again, one after the other: a plain build's rerun after a failure."""
    started = time.perf_counter()
    for code in MINUTES:
        subprocess.run(command(code), check=True)
    return time.perf_counter() - started


def local_target_line() -> str:
    """The real local target's figures, from the last `make demo` (and `benchmarks/boot_bench.py`,
    the cold build) on this machine."""
    path = ROOT / ".demo/timing.json"
    if not path.exists():
        return "- local target: run `make demo` (it measures a failure at 85 and the resume)."
    t = json.loads(path.read_text())
    if "work_s" not in t:  # a demo of an older version
        return "- local target: run `make demo` again (its figures are of an older version)."
    bench = ROOT / ".demo/boot-bench.json"
    cold = json.loads(bench.read_text())["cold_s"] if bench.exists() else None
    return (
        f"- local target (`make demo`, {t['date']}, {t['cores']} cores; Debian from the debootstrap cache, the green "
        f"image and the sealed image booted in qemu, Ansible over chroot, whole `airflow dags test` runs): run "
        f"failing at {t['fail_at']} {t['first_s']:.0f} s, resume **{t['resume_s']:.0f} s**, which ran "
        f"{t['redone_s']:.0f} s of the build's {t['work_s']:.0f} s of milestones (**{t['redone_s'] / t['work_s']:.0%}**"
        "; the seal's boot check is most of it)"
        + (f"; a cold build takes {cold:.0f} s (`benchmarks/boot_bench.py`)." if cold else ".")
    )


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="imagebuild-recovery-"))
    os.environ.update(AIRFLOW_HOME=str(work / "airflow"), AIRFLOW__CORE__LOAD_EXAMPLES="False")
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_imagebuild.build.catalog import STANDARD_PLAN, key_of
    from airflow_provider_imagebuild.build.identity import BuildIdentity
    from airflow_provider_imagebuild.operators import CommandMilestoneOperator, RegisterBuildOperator
    from tests.helpers import task_context

    store = f"sqlite:///{work}/state.db"
    common = dict(identity=BuildIdentity("bench", "local", "base", plan=STANDARD_PLAN), store=store)
    tasks = [RegisterBuildOperator(task_id="s000_initialize", state=0, **common)] + [
        CommandMilestoneOperator(task_id=f"s{c:03d}_{key_of(c)}", state=c, command=command(c), **common)
        for c in STANDARD_PLAN[1:]
    ]

    def run_all(build_id: str) -> float:
        """Every task of the DAG run in order, as Airflow would; stops at the first failure."""
        started = time.perf_counter()
        for task in tasks:
            try:
                task.execute(task_context(build_id, task.task_id))
            except AirflowFailException:
                break
        return time.perf_counter() - started

    total_minutes = sum(MINUTES.values())
    mono = min(monolithic() for _ in range(2))
    os.environ.pop("IMAGEBUILD_FAIL_AT", None)
    cold = run_all("cold")
    rows = []
    for k in KS:
        os.environ["IMAGEBUILD_FAIL_AT"] = str(k)
        failed = run_all(f"fail-at-{k}")
        os.environ.pop("IMAGEBUILD_FAIL_AT")
        resume = run_all(f"fail-at-{k}")
        share = sum(m for c, m in MINUTES.items() if c >= k) / total_minutes
        rows.append((k, failed, resume, resume / mono, share))
        print(
            f"k={k}: failed run {failed:.2f} s, resume {resume:.2f} s, resume/monolithic {resume / mono:.3f}, "
            f"remaining share {share:.3f}, difference {resume / mono - share:+.3f}"
        )
    print(f"monolithic {mono:.2f} s, cold build through the framework {cold:.2f} s ({cold / mono - 1:+.1%})")
    replace_section(
        ROOT / "docs/benchmarks.md",
        SECTION,
        [
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores with "
            "`.venv/bin/python benchmarks/recovery_bench.py` (part of `make bench`). 21 milestones with the "
            f"catalog's typical durations ({total_minutes} minutes in all, scaled to {SCALE} s per minute), run "
            "through the milestone operators on SQLite (store read, skip or lease, heartbeat, command, "
            "record); the monolithic rerun runs the same steps again with no framework, as a plain "
            "Packer + Ansible build does after a failure.",
            "",
            "| failure at k | resume | resume / monolithic | remaining work's share | difference |",
            "|---:|---:|---:|---:|---:|",
            *[
                f"| {k} | {resume:.2f} s | **{ratio:.3f}** | {share:.3f} | {ratio - share:+.3f} |"
                for k, _failed, resume, ratio, share in rows
            ],
            "",
            f"Monolithic rerun {mono:.2f} s; a cold build through the framework {cold:.2f} s "
            f"({cold / mono - 1:+.1%} framework overhead on a whole build). Target: the difference within "
            "±0.05. The real pipelines, as whole Airflow DAG runs: the AWS sample (section above) and the "
            "local target:",
            "",
            local_target_line(),
        ],
    )


if __name__ == "__main__":
    main()
