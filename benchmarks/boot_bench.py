"""The local target's cold build with both boot checks: how long a build takes that proves its image
boots, how long each boot takes, and how large the bootable image is.

The shipped ``local-debian-base`` pipeline (5 unpack the cached Debian, 10 green image + its boot
under BIOS, 15..90 Ansible over chroot, 95 seal into a GPT disk, 97 the launch test: the sealed image's
boot under UEFI with the verification playbook over SSH, 100 publish to the catalog), every task executed in plan
order through the milestone operators (the same code as a DAG run, without Airflow's per-task
start-up, which ``make demo`` includes). qemu runs with the accelerator the probe picks (TCG where
KVM does not work, as on the project's machines). The machine's load average is printed with the
figures: an emulated boot takes about twice as long on a busy two-core machine as on an idle one.

Prints the figures and writes the "Local target: a bootable image" section of docs/benchmarks.md
(``--no-write``: print only). Needs root, like the local target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import replace_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## Local target: a bootable image"
GOAL_S = 150
RESULT = ROOT / ".demo/boot-bench.json"  # the figures, for benchmarks/recovery_bench.py


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def cold_build(work: Path) -> tuple[float, Any]:
    """Every milestone of the shipped local pipeline, once, in a fresh store: (wall time, record)."""
    os.environ.update(
        AIRFLOW_HOME=str(work / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        IMAGEBUILD_WORK=str(work / "work"),
        IMAGEBUILD_CATALOG=str(work / "catalog"),
    )
    from airflow_provider_imagebuild.dag_factory import build_dag
    from airflow_provider_imagebuild.spec.pipeline import load_spec
    from airflow_provider_imagebuild.store import open_store
    from tests.helpers import task_context

    shipped = ROOT / "dags/pipelines/local-debian-base.yaml"
    spec = load_spec(shipped)
    spec = spec.model_copy(update={"store": f"sqlite:///{work}/state.db"})
    tasks = sorted(build_dag(spec, shipped.parent).tasks, key=lambda t: t.state)  # type: ignore[attr-defined]
    started = time.perf_counter()
    for task in tasks:
        task.execute(task_context("bench-1", task.task_id))
        print(f"  milestone {task.state:>3} done at {time.perf_counter() - started:6.1f} s", flush=True)
    wall = time.perf_counter() - started
    return wall, open_store(str(spec.store)).get("bench-1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the local target needs root (debootstrap, chroot, mkfs)")
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive

    bootstrapped_archive()  # the cache `make setup` fills; not part of a build
    work = Path(tempfile.mkdtemp(prefix="imagebuild-bootbench-", dir="/var/tmp"))
    try:
        before = load()
        wall, rec = cold_build(work)
        after = load()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    green, sealed = rec.milestones[10].outputs, {**rec.milestones[95].outputs, **rec.milestones[97].outputs}
    durations = {code: ms.duration_s for code, ms in sorted(rec.milestones.items())}
    figures = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "load_before": before,
        "load_after": after,
        "cold_s": wall,
        "green": {k.removeprefix("boot_green_"): v for k, v in green.items() if k.startswith("boot_green_")},
        "sealed": {k.removeprefix("boot_sealed_"): v for k, v in sealed.items() if k.startswith("boot_sealed_")},
        "durations": durations,
        "image_bytes": sealed["image_bytes"],
        "disk_mb": sealed["disk_mb"],
        "filesystem_mb": sealed["filesystem_mb"],
    }
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps(figures, indent=2, default=str))
    g, s = figures["green"], figures["sealed"]
    lines = [
        f"Measured {figures['date']} on {figures['cores']} cores with `.venv/bin/python benchmarks/boot_bench.py` "
        f"(load average before {before}, after {after}; 1 / 5 / 15 minutes): the shipped `local-debian-base` "
        "pipeline, cold (a new build id; the bootstrapped Debian cached as `make setup` leaves it), every "
        "milestone through the operators in plan order. qemu with "
        + ("KVM" if g.get("accel") == "kvm" else "TCG (emulation: the KVM probe found no working KVM here)")
        + ", 1 vCPU, 1 GiB.",
        "",
        "| measure | figure |",
        "|---|---:|",
        f"| cold build, both boots included (goal under {GOAL_S} s) | **{wall:.0f} s** |",
        f"| milestone 10 (green image playbook, disk, BIOS boot, checks) | {durations[10]:.0f} s |",
        f"| green image boot (BIOS): login prompt / SSH / all checks | {g['login_prompt_s']:.0f} / "
        f"{g['ssh_s']:.0f} / **{g['total_s']:.0f} s** |",
        f"| milestone 95 (seal playbook, disk, qcow2) | {durations[95]:.0f} s |",
        f"| milestone 97 (launch test: UEFI boot of the sealed image, verification) | {durations[97]:.0f} s |",
        f"| sealed image boot (UEFI): login prompt / SSH / all checks and the playbook | "
        f"{s['login_prompt_s']:.0f} / {s['ssh_s']:.0f} / **{s['total_s']:.0f} s** |",
        f"| verification playbook over SSH (part of the sealed boot) | {s['playbook_duration_s']:.0f} s |",
        f"| delivered image (qcow2, zstd) | **{figures['image_bytes'] / 1e6:.0f} MB** |",
        f"| its disk (GPT: BIOS boot 1 MiB, ESP 64 MiB, root ext4) | {figures['disk_mb']} MiB "
        f"(root {figures['filesystem_mb']} MiB) |",
        "",
        "Milestones (s): " + ", ".join(f"{code}: {d:.0f}" for code, d in durations.items() if code) + ".",
    ]
    print("\n".join(lines))
    if not args.no_write:
        replace_section(ROOT / "docs/benchmarks.md", SECTION, lines)


if __name__ == "__main__":
    main()
