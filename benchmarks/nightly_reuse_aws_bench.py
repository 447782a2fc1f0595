"""Four nights of the shipped AWS sample with reuse (#32, "the same on one cloud sample"), EC2 on moto.

A copy of ``dags/pipelines/aws-rhel8-webserver.yaml`` with its playbooks and Packer template, in a
temporary folder the benchmark may change, set up as ``tests/operators/test_aws_pipeline.py`` runs
it (tests/servers/aws_sample.py: real Packer amazon-ebs with ``communicator: none`` and real EC2/SSM
calls against a moto server on loopback that this benchmark starts, the playbooks over chroot into a
Debian tree standing in for the instance), with ``reuse: {}`` and checkpoints at :data:`CHECKPOINTS`,
one build a night through real Airflow (``dag.test()``, a new build id each night):

1. cold: nothing to reuse;
2. nothing changed: the night before's image is delivered again (``unchanged: reuse``);
3. the playbook of milestone 30 changed: the build copies the checkpoint AMI after 25 and runs 30 on;
4. the source AMI changed: a newer vendor AMI is registered in moto under the name of the one the
   spec started from, and the spec's ``target.source_image`` moves to it (see :func:`main`'s
   ``--source-by-name`` for why by id), so the build runs from 5, cold.

The sample's repository watches (15, 25, 30 and 55 watch RHEL's ``repomd.xml``) point at a
loopback mirror whose files do not change (the tests' closed port would make every value unique
and nothing past 10 would ever be reused). The launch test (97) is left out, as in aws_bench.py:
moto's instances run nothing to boot.

Prints, per night, the wall time, its share of night 1's, the milestones reused and run, where it
started from (build and milestone), and the AMIs it copied (the checkpoint copy reuse made, as EC2
lists it, and publish's copy to the second region); checks each night started where its change
requires (exit 1 otherwise) and writes the "Reuse: four nights on AWS (moto)" section of
docs/benchmarks.md (``--no-write``: print only). Part of ``make bench``, not of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from nightly_reuse_bench import NIGHT_30_TASK, Mirror, Night, codes, run_night, table
from report import replace_section
from sample_runs import airflow_home

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## Reuse: four nights on AWS (moto)"
LOCAL_SECTION = "## Reuse: five nights"  # nightly_reuse_bench.py's: this section goes right after it
SHIPPED = ROOT / "dags/pipelines/aws-rhel8-webserver.yaml"
DAG_ID = "imagebuild_aws_rhel8_webserver"
REGION = "us-east-1"
# Where a checkpoint AMI pays off on AWS (each costs a CreateImage of the build host, minutes on
# EC2, and its EBS snapshot's storage until the next delivered build deletes it): the sample's 30
# (a change in 45 or 50 restarts there) and 50 (a change from 55 on), and 25, the last before 30,
# the milestone changed most often in practice. 10, the green AMI, is always one. Milestones 15 to
# 30 and 55 watch the package repositories: a new package there restarts from 10 whatever is kept.
CHECKPOINTS = [25, 30, 50]
# The vendor AMI's name (RHEL's own pattern); night 4 registers a newer one under it.
VENDOR_NAME = "RHEL-8.10.0_HVM-{date}-x86_64-0-Hourly2-GP3"
REPOMD = '<?xml version="1.0" encoding="UTF-8"?>\n<repomd><revision>1761900000</revision></repomd>\n'


def yum_mirror() -> Mirror:
    """RHEL's repositories at loopback: every ``repodata/repomd.xml`` path answers the same file
    (the sample's BaseOS and AppStream watches read it); ``url`` is the folder a watch names."""
    mirror = Mirror(REPOMD.encode(), "/repodata/repomd.xml")
    mirror.url = mirror.url.removesuffix("/repodata/repomd.xml")
    return mirror


def vendor_ami(ec2: Any, base: str, date: str) -> str:
    """An AMI named as RHEL's are (``VENDOR_NAME``), made from one of moto's: the sample's source
    image, and on night 4 a newer one under the same name pattern."""
    name = VENDOR_NAME.format(date=date)
    # CreateImage from an instance: an EBS-backed AMI as the vendor's is (moto's CopyImage of its own
    # images makes a 'standard' root device, which Packer's amazon-ebs refuses as a source)
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.medium")["Instances"][0]
    image = str(ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"])
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    return image


def sample_copy(work: Path) -> Path:
    """The shipped sample, its playbooks and its Packer template under ``work`` (the spec's
    ``../ansible`` and ``../packer`` paths resolve there), for the benchmark to change."""
    shutil.copytree(ROOT / "dags/ansible", work / "ansible")
    shutil.copytree(ROOT / "dags/packer", work / "packer")
    (work / "shipped").mkdir()
    shutil.copy2(SHIPPED, work / "shipped" / SHIPPED.name)
    return work / "shipped" / SHIPPED.name


def write_spec(
    work: Path, shipped: Path, store_url: str, source: str, root: Path, mirror: str, by_name: bool = False
) -> None:
    """The localised sample (tests/servers/aws_sample.py) with reuse on, :data:`CHECKPOINTS`, the
    repository watches at ``mirror``, and ``source`` as ``target.source_image``; ``by_name``: milestone
    5 also watches ``image: source`` (a name resolves to its newest AMI there)."""
    from tests.servers.aws_sample import CONN_ID
    from tests.servers.samples import launch_tested, localised

    # what aws_sample.sample_spec does, from the copy: moto's instances run nothing to connect to
    target = {"aws_conn_id": CONN_ID, "source_image": source}
    text = localised(shipped, store_url, root, target, {"vars": {"communicator": "none"}})
    spec: dict[str, Any] = yaml.safe_load(launch_tested(text, None))
    spec.setdefault("reuse", {})
    spec["checkpoints"] = CHECKPOINTS
    for ms in spec["milestones"].values():
        ms["watch"] = [
            {**w, "yum": f"{mirror}/rhel8/{w['name']}/os/repodata/repomd.xml"} if "yum" in w else w
            for w in ms.get("watch", [])
        ]
    if by_name:  # a name pattern needs the accounts its AMIs may be (moto registers them as "self")
        spec["target"]["source_image_owners"] = ["self"]
        first = spec["milestones"][5]
        first["watch"] = [*first.get("watch", []), {"name": "source_ami", "image": "source"}]
    (work / "pipelines").mkdir(exist_ok=True)
    (work / "pipelines/aws.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def fresh_host(root: Path) -> None:
    """A new build host tree (a cold build's instance starts from the vendor image); the nights that
    start from a checkpoint keep the tree the night before left, as the chroot stands in for it."""
    from airflow_provider_imagebuild.targets.rootfs import bootstrapped_archive, chroot_name_servers, restore

    shutil.rmtree(root, ignore_errors=True)
    restore(bootstrapped_archive(), root)
    chroot_name_servers(root)


def first_boot(root: Path) -> None:
    """What the first boot of an instance launched from a checkpoint AMI does to the tree the night
    before sealed (cloud-init and systemd): new SSH host keys and a machine id. The chroot is the same
    directory every night, so without this a night that starts from a checkpoint finds the sealed
    image's tree (host keys removed) where EC2 would boot the checkpoint, and milestone 90's
    ``sshd -t`` fails."""
    subprocess.run(["chroot", str(root), "ssh-keygen", "-A"], check=True, capture_output=True)
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")


def copied_amis(build_id: str, ec2_in: Any) -> list[str]:
    """The AMIs the night's build copied, as EC2 lists them: the checkpoint copies reuse made
    (tagged ``ReusedFromImage``) and publish's copies outside the build's region."""
    found = []
    publish = yaml.safe_load(SHIPPED.read_text())["target"].get("publish_regions") or []
    for region in [REGION, *(r for r in publish if r != REGION)]:
        images = ec2_in(region).describe_images(
            Owners=["self"], Filters=[{"Name": "tag:BuildId", "Values": [build_id]}]
        )["Images"]
        for image in sorted(images, key=lambda i: str(i.get("Name", ""))):
            tags = {t["Key"]: t["Value"] for t in image.get("Tags", [])}
            if "ReusedFromImage" in tags:
                found.append(
                    f"checkpoint {tags['ReusedFromImage']} of {tags.get('ReusedFromBuild')} -> {image['ImageId']}"
                )
            elif region != REGION:
                found.append(f"{image['ImageId']} to {region} (publish)")
    return found


def place_after_local(path: Path) -> None:
    """Put this benchmark's section right after the local pipeline's (nightly_reuse_bench.py's)
    the first time, so that the two read together; later runs replace it where it is."""
    text = path.read_text()
    if f"\n{SECTION}\n" in text or f"\n{LOCAL_SECTION}\n" not in text:
        return
    before, _, rest = text.partition(f"\n{LOCAL_SECTION}\n")
    local, sep, tail = rest.partition("\n## ")
    path.write_text(f"{before}\n{LOCAL_SECTION}\n{local.rstrip()}\n\n{SECTION}\n\n(written by the benchmark)\n"
                    + (f"\n## {tail}" if sep else ""))  # fmt: skip


HIDDEN = (
    "What moto's instant copies hide: every AMI copy above (the checkpoint copy a reusing night makes with "
    "CopyImage within us-east-1, publish's copy to eu-west-1) and every CreateImage is available on moto within "
    "milliseconds. On EC2 a copy duplicates the AMI's EBS snapshots, and AWS promises no duration for it (a "
    "CopyImage completes on a best-effort basis unless it is given a time-based completion window, in 15-minute "
    "steps): for a 10-30 GB RHEL image it takes minutes, more across regions, and the night waits for it "
    "(`adopt_checkpoint` waits up to 30 minutes, then deregisters the copy and tries the next earlier build's "
    "checkpoint, else builds cold). So on AWS a night that starts from a checkpoint pays that copy on top of the "
    "milestones it runs, and night 3's share of night 1 here is lower than it would be there; night 2 copies "
    "nothing (the image is delivered again). Packer's instances, the build host's launch and boot and the "
    "CreateImage of each checkpoint are instant on moto as well, and those weigh on every night that runs "
    "milestones, most on the cold ones; how the shares come out on EC2 was not measured. These are loopback "
    "figures of the orchestration, not real-cloud ones."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave docs/benchmarks.md alone")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (store, logs) for a look")
    parser.add_argument(
        "--source-by-name",
        action="store_true",
        help="give target.source_image as the vendor AMI's name with an 'image: source' watch on 5 (what #32 asks "
        "of night 4); the aws target passes the name to Packer's amazon-ebs, which takes an AMI id only",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the build host stand-in needs root (Ansible's chroot connection, the tree's owners)")
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        os.environ.pop(proxy, None)  # every server is loopback: never through a proxy
    work = Path(tempfile.mkdtemp(prefix="imagebuild-nightly-aws-", dir="/var/tmp"))
    log = work / "airflow-output.log"
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        IMAGEBUILD_FAIL_AT="",
    )
    load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    mirror = yum_mirror()
    nights = [
        Night(1, "nothing (first build)", None),
        Night(2, "nothing", 0),
        Night(3, "playbook of milestone 30", 25),
        Night(4, "source AMI (a newer one under the vendor's name)", None),
    ]
    copies: dict[int, list[str]] = {}
    cold_work: dict[int, float] = {}
    plan: list[int] = []
    finished = False
    try:
        import boto3

        from tests.servers.aws_sample import moto_connection
        from tests.servers.process import free_port, running

        port = free_port()
        moto = [sys.executable, str(ROOT / "tests/servers/moto_serial.py"), str(port)]
        with mirror.serving(), running(moto, port, work / "moto.log") as moto_url:
            clients: dict[str, Any] = {}

            def ec2_in(region: str) -> Any:
                if region not in clients:
                    clients[region] = boto3.client("ec2", region_name=region, endpoint_url=moto_url)
                return clients[region]

            ec2 = ec2_in(REGION)
            base = str(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])
            source = vendor_ami(ec2, base, "20261101")
            name = VENDOR_NAME.format(date="*")
            store_url = f"sqlite:///{work}/state.db"
            root = work / "buildhost"
            shipped = sample_copy(work)
            write_spec(work, shipped, store_url, name if args.source_by_name else source, root, mirror.url,
                       args.source_by_name)  # fmt: skip
            os.environ["AIRFLOW_CONN_AWS_MOTO"] = moto_connection(moto_url)
            airflow_home(work, ROOT / "dags")
            from airflow.dag_processing.dagbag import DagBag

            from airflow_provider_imagebuild.store import open_store

            store = open_store(store_url)
            bag = DagBag(dag_folder=str(ROOT / "dags"))
            if DAG_ID not in bag.dags:
                sys.exit(f"{DAG_ID} did not load: {bag.import_errors}")
            for night in nights:
                if night.number in (1, 4):
                    fresh_host(root)
                else:  # whatever checkpoint the night starts from, its instance boots (none when nothing changed)
                    first_boot(root)
                if night.number == 3:
                    playbook = work / "ansible/30-monitoring.yml"
                    playbook.write_text(playbook.read_text().rstrip("\n") + "\n" + NIGHT_30_TASK)
                elif night.number == 4:
                    newer = vendor_ami(ec2, base, "20261201")
                    if not args.source_by_name:  # the sample pins an id: the operator moves it to the newer AMI
                        write_spec(work, shipped, store_url, newer, root, mirror.url)
                if night.number in (3, 4):
                    bag = DagBag(dag_folder=str(ROOT / "dags"))  # the scheduler parses the changed spec again
                run_night(bag.dags[DAG_ID], store, night, log)
                build_id = f"night-{night.number}"
                plan = list(store.get(build_id).plan)
                copies[night.number] = copied_amis(build_id, ec2_in)
                print(
                    f"night {night.number} ({night.change}): {night.wall_s:.1f} s, reused {codes(night.reused)}, "
                    f"ran {codes(tuple(c for c in night.ran if c))}; from {night.started()}; "
                    f"copied: {'; '.join(copies[night.number]) or 'none'}",
                    flush=True,
                )
            cold_work = {code: ms.duration_s or 0.0 for code, ms in store.get("night-1").milestones.items()}
        finished = True
    finally:
        if finished and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    load_after = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    wrong = [n for n in nights if not n.as_expected(plan)]
    second, third = nights[1].wall_s / nights[0].wall_s, nights[2]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores with "
        "`.venv/bin/python benchmarks/nightly_reuse_aws_bench.py` (part of `make bench`; load average before "
        f"{load_before}, after {load_after}): a copy of the shipped `aws-rhel8-webserver` pipeline with "
        f"`reuse: {{}}` and checkpoints at {', '.join(map(str, CHECKPOINTS))} (and 10, the green AMI), one build a "
        "night through `dag.test()`, real Packer (amazon-ebs, `communicator: none`) and EC2/SSM calls on a moto "
        "server on loopback, the playbooks over chroot into a Debian tree standing in for the instance, the "
        "repository watches at a loopback mirror that does not change, no launch test (moto's instances run "
        "nothing). Night 4 registers a newer vendor AMI under the name of the first and moves the spec's "
        "`target.source_image` (an AMI id, as the sample gives it) to it. Wall times include Airflow's per-task "
        "cost in `dag.test()` (about 1 s a task, reused ones included).",
        "",
        *table(nights, plan, cold_work, ("AMIs copied", lambda n: "; ".join(copies.get(n.number, [])) or "none")),
        "",
        f"Night 2 (nothing changed) took **{second:.0%}** of night 1; night 3 started from {third.started()} and "
        f"ran {codes(tuple(c for c in third.ran if c))}; night 4 {nights[3].started()}. Nights 1 and 4 both "
        f"build cold: the {abs(nights[0].wall_s - nights[3].wall_s):.0f} s between them is this machine's noise "
        "(other work on the same cores), a bound on what one run's figures say."
        + ("" if not wrong else " **Not as expected: night " + ", ".join(str(n.number) for n in wrong) + ".**"),
        "",
        HIDDEN,
    ]
    print("\n".join(lines))
    if not args.no_write:
        place_after_local(ROOT / "docs/benchmarks.md")
        replace_section(ROOT / "docs/benchmarks.md", SECTION, lines)
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
