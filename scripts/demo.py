"""``make demo``: a real Debian image built through real Airflow, booted, a failure, and a resume.

1. a throw-away AIRFLOW_HOME (SQLite), state store, work directory and image catalog under .demo/;
2. a first run of ``imagebuild_local_debian_base`` (Debian from the cached debootstrap, the green
   image booted in qemu and checked over SSH, Ansible over chroot) with a failure injected at
   milestone 85 (``IMAGEBUILD_DEMO_FAIL_AT``, default 85): the store shows where it stopped;
3. the same run again, as clearing the failed task does: it resumes at 85, seals a bootable disk
   (qcow2), boots the sealed image and runs the verification playbook on it, and publishes it;
4. the result, how long each boot took, and last the one-line qemu command that boots the image.

A cold build from scratch, for comparison, is ``benchmarks/boot_bench.py``'s figure (it would add
its minutes here). Progress is one line per milestone, read from the store; Airflow's logs go to
.demo/logs/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / ".demo"
DAG_ID = "imagebuild_local_debian_base"
FAIL_AT = os.environ.get("IMAGEBUILD_DEMO_FAIL_AT", "85")

os.environ.update(
    AIRFLOW_HOME=str(DEMO / "airflow"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
    IMAGEBUILD_STORE=f"sqlite:///{DEMO / 'state.db'}",
    IMAGEBUILD_WORK=str(DEMO / "work"),
    IMAGEBUILD_CATALOG=str(DEMO / "catalog"),
)
os.environ.pop("IMAGEBUILD_PIPELINES_DIR", None)
os.environ.pop("IMAGEBUILD_FAIL_AT", None)

from airflow_provider_imagebuild.cli import render  # noqa: E402
from airflow_provider_imagebuild.store import open_store  # noqa: E402
from airflow_provider_imagebuild.toolchain.qemu import boot_command  # noqa: E402

console = render.console()
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def step(text: str) -> None:
    console.print(f"\n[bold cyan]== {text}[/]")


def run_pipeline(build_id: str, logical_date: str, log: Path, fail_at: str | None = None) -> tuple[bool, float]:
    """``airflow dags test`` in a child process; prints each milestone as the store records it."""
    env = dict(os.environ)
    if fail_at:
        env["IMAGEBUILD_FAIL_AT"] = fail_at
    store = open_store(os.environ["IMAGEBUILD_STORE"])
    seen: set[tuple[int, int, str]] = set()
    start = time.perf_counter()
    with open(log, "wb") as out:
        argv = [AIRFLOW, "dags", "test", DAG_ID, logical_date, "-c", json.dumps({"build_id": build_id})]
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        while True:
            done = proc.poll() is not None
            rec = store.find(build_id)
            for attempt in rec.attempts if rec else []:
                key = (attempt.state, attempt.attempt, attempt.status)
                if attempt.status == "in_progress" or key in seen:
                    continue
                seen.add(key)
                style = {"completed": "green", "failed": "red"}.get(attempt.status, "magenta")
                console.print(
                    f"  {attempt.state:>3} {rec.title(attempt.state) if rec else '':<32} [{style}]{attempt.status}[/]"
                    + (f"  ({attempt.error.splitlines()[0][:70]})" if attempt.error else "")
                )
            if done:
                break
            time.sleep(0.3)
    elapsed = time.perf_counter() - start
    rec = store.find(build_id)
    return bool(rec and rec.delivered), elapsed


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    (DEMO / "logs").mkdir(parents=True)
    total = time.perf_counter()
    step("preparing Airflow (SQLite metadata DB in .demo/airflow)")
    migrate = subprocess.run([AIRFLOW, "db", "migrate"], capture_output=True, text=True)
    (DEMO / "logs/db-migrate.log").write_text(migrate.stdout + migrate.stderr)
    if migrate.returncode != 0:
        sys.exit(f"airflow db migrate failed; see {DEMO / 'logs/db-migrate.log'}")
    store = open_store(os.environ["IMAGEBUILD_STORE"])
    build_id = "demo-build-1"

    step(f"run 1 of {DAG_ID}: failure injected at milestone {FAIL_AT} (IMAGEBUILD_DEMO_FAIL_AT)")
    delivered, first = run_pipeline(build_id, "2026-11-27T02:00:00+00:00", DEMO / "logs/run-1.log", FAIL_AT)
    if delivered:
        sys.exit("the injected failure did not stop the build")
    console.print(render.build_table(store.get(build_id)))

    rec = store.get(build_id)
    if rec.milestones.get(10):
        console.print(f"  {boot_line(rec.milestones[10].outputs, 'boot_green', 'green image booted')}")

    step(f"run 2: the failed run again (what clearing the failed task does): resumes at {FAIL_AT}, seals, boots")
    delivered, resume = run_pipeline(build_id, "2026-11-27T02:00:00+00:00", DEMO / "logs/run-2.log")
    if not delivered:
        sys.exit(f"the resumed build was not delivered; see {DEMO / 'logs/run-2.log'}")
    rec = store.get(build_id)
    console.print(render.build_table(rec))

    outputs = rec.merged_outputs()
    step("result")
    console.print(f"  image      {outputs.get('catalog_image')} ({outputs.get('image_bytes', 0) / 1e6:.0f} MB qcow2, "
                  f"a {outputs.get('disk_mb')} MiB GPT disk: GRUB for BIOS and UEFI, root by UUID)")  # fmt: skip
    console.print(f"  sha256     {outputs.get('image_sha256')}")
    console.print(f"  catalog    {outputs.get('catalog_entry')}/metadata.json · latest -> {outputs.get('latest')}")
    console.print(
        f"  attempts   {len(rec.attempts)} recorded; milestone {FAIL_AT}: "
        + ", ".join(f"{a.attempt}:{a.status}" for a in rec.attempts_at(int(FAIL_AT)))
    )
    console.print(f"  boots      {boot_line(outputs, 'boot_green', 'green image (milestone 10)')}")
    console.print(f"             {boot_line(outputs, 'boot_sealed', 'sealed image (launch test, milestone 97)')}")
    console.print(f"  logs       {DEMO / 'logs'}   store: {os.environ['IMAGEBUILD_STORE']}")
    work = sum(ms.duration_s for ms in rec.milestones.values())
    redone = sum(ms.duration_s for code, ms in rec.milestones.items() if code >= int(FAIL_AT))
    timing = {
        "fail_at": int(FAIL_AT),
        "first_s": first,
        "resume_s": resume,
        "work_s": work,  # every milestone's recorded duration: the build's own work
        "redone_s": redone,  # the milestones the resume ran
        "green_boot_s": outputs.get("boot_green_total_s"),
        "sealed_boot_s": outputs.get("boot_sealed_total_s"),
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
    }
    (DEMO / "timing.json").write_text(json.dumps(timing))  # benchmarks/recovery_bench.py reports it
    console.print(
        f"  timing     first run (until the failure) {first:.1f} s · resume {resume:.1f} s · the build's "
        f"milestones took {work:.0f} s, the resume ran {redone:.0f} s of them · demo total "
        f"{time.perf_counter() - total:.0f} s"
    )
    key = Path(os.environ["IMAGEBUILD_WORK"]) / build_id / "ssh/id_ed25519"
    console.print(f"  log in     ssh -p 2222 -i {key} -o UserKnownHostsFile=/dev/null admin@127.0.0.1  (at 'login:')")
    console.print("  boot it    (serial console in this terminal, Ctrl-a x quits; -snapshot leaves the image as is)")
    print(boot_command(Path(str(outputs.get("catalog_image"))), "uefi", accelerator()))


def boot_line(outputs: dict[str, object], prefix: str, what: str) -> str:
    """One boot check's figures, from the milestone's outputs."""
    if not outputs.get(f"{prefix}_passed"):
        return f"{what}: not booted (target.boot)"
    playbook = outputs.get(f"{prefix}_playbook_duration_s")
    return (
        f"{what}: {str(outputs.get(f'{prefix}_firmware')).upper()} ({outputs.get(f'{prefix}_accel')}), login prompt "
        f"after {outputs.get(f'{prefix}_login_prompt_s')} s, SSH with the build's key after "
        f"{outputs.get(f'{prefix}_ssh_s')} s"
        + (f", verification playbook {playbook} s" if playbook is not None else ", sudo and network checked")
        + f": {outputs.get(f'{prefix}_total_s')} s in all"
    )


def accelerator() -> str:
    """What the boot checks used here (the KVM probe's verdict, kept for this host boot)."""
    from airflow_provider_imagebuild.targets.rootfs import cache_dir
    from airflow_provider_imagebuild.toolchain.qemu import accelerator

    return accelerator("auto", cache_dir(), lambda line: None)


if __name__ == "__main__":
    main()
