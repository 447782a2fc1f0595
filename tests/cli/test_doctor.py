"""``imagebuild doctor`` on this machine: the real Packer, Ansible, tools, packages and stores,
connections from ``AIRFLOW_CONN_*`` as a worker defines them. What is "missing" is made missing
for real: a package the import system refuses (``sys.modules[name] = None``, Python's own way to
block an import), a connection not defined, a store on a disk remounted read-only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.doctor.store import choose_store
from airflow_provider_imagebuild.store import open_store
from tests.conftest import unique

ROOT = Path(__file__).resolve().parents[2]
LOCAL_SPEC = ROOT / "dags/pipelines/local-debian-base.yaml"
EXE = str(Path(sys.executable).with_name("imagebuild"))
SECRET = "doctor-Secret-Pa55word-0451"

TOP_KEYS = {"ok", "specs", "packer", "ansible", "host", "python", "connections", "stores", "findings", "missing",
            "warnings"}  # fmt: skip
PACKER_KEYS = {"needed_by", "path", "version", "plugins", "builders", "templates"}
FINDING_KEYS = {"check", "status", "detail", "fix", "needed_by"}
STORE_KEYS = {"store", "url", "conn_id", "chosen_by", "needed_by", "exists", "reachable", "writable", "problem"}
CONNECTION_KEYS = {"conn_id", "conn_type", "found_type", "needed_by", "ok", "status", "problem"}
PYTHON_KEYS = {"group", "purpose", "extra", "needed_by", "ok", "packages", "modules", "fix"}
TEMPLATE_KEYS = {"file", "needed_by", "sources", "required_plugins", "ok", "problems"}


@pytest.fixture(autouse=True)
def _worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker of the test's own: its store under tmp_path, no spec folder, no deployment store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMAGEBUILD_STORE", f"sqlite:///{tmp_path}/worker/state.db")
    monkeypatch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
    monkeypatch.setenv("COLUMNS", "250")


def doctor(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["doctor", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def doctor_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = doctor("--json", *args)
    assert "Traceback" not in out + err and out.startswith("{"), out + err
    return code, json.loads(out)


def finding(report: dict[str, Any], check: str) -> dict[str, Any]:
    found = [f for f in report["findings"] if f["check"].startswith(check)]
    assert len(found) == 1, (check, [f["check"] for f in report["findings"]])
    return found[0]


def write_spec(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


EVERYWHERE = """
pipeline: doctor-everywhere
cloud: local
image_type: base
milestones:
  5: {action: bootstrap}
  95: {action: seal}
  100: {action: publish}
publish:
  - catalog
  - vsphere_library: {vsphere_conn_id: vcenter_lab, library: golden}
"""

WEBHOOK = """
pipeline: doctor-notify
cloud: local
image_type: base
milestones:
  50: {action: command, command: ["true"]}
notify:
  to:
    - webhook: {http_conn_id: builds_hook, endpoint: /hooks/imagebuild}
"""


def test_a_healthy_local_spec_exits_0_and_the_probe_leaves_nothing(tmp_path: Path) -> None:
    """The shipped local pipeline on this machine after `make setup`: a real process, its store probed."""
    env = {**os.environ, "COLUMNS": "250"}
    done = subprocess.run([EXE, "doctor", str(LOCAL_SPEC)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "healthy" in done.stdout and "debootstrap" in done.stdout and "Traceback" not in done.stderr
    code, report = doctor_json(str(LOCAL_SPEC))
    assert code == 0 and report["ok"] and not report["missing"]
    assert finding(report, "tool debootstrap")["status"] == "ok"
    assert finding(report, "tool qemu-img")["needed_by"] == [f"{LOCAL_SPEC} (milestones.95: seal)"]
    assert finding(report, "ansible collection community.general")["status"] == "ok"
    assert report["ansible"]["ansible_core"] and report["ansible"]["ansible_playbook"]
    (store,) = report["stores"]
    assert store["chosen_by"].startswith("$IMAGEBUILD_STORE") and store["exists"] is False  # not created by it
    assert not (tmp_path / "worker").exists()
    open_store(store["url"]).init()
    code, report = doctor_json(str(LOCAL_SPEC))
    (store,) = report["stores"]
    assert code == 0 and (store["reachable"], store["writable"]) == (True, True)
    assert open_store(store["url"]).scan_builds() == ([], [])  # the probe record is gone again


def test_a_spec_needing_a_missing_extra_exits_1_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(tmp_path, "everywhere.yaml", EVERYWHERE)
    monkeypatch.setenv("AIRFLOW_CONN_VCENTER_LAB", json.dumps(
        {"conn_type": "vsphere", "host": "vcenter.example", "login": "svc", "password": SECRET}))  # fmt: skip
    code, report = doctor_json(str(spec))
    assert code == 0, report["missing"]  # everything there: what follows fails for the extra alone

    monkeypatch.setitem(sys.modules, "pyVmomi", None)  # the import system refuses it
    code, out, err = doctor(str(spec))
    assert code == 1 and "python vsphere" in out and "imagebuild[vsphere]" in out and SECRET not in out + err
    code, report = doctor_json(str(spec))
    (missing,) = report["missing"]
    assert code == 1 and missing["check"].startswith("python vsphere")
    assert missing["detail"] == "module pyVmomi cannot be imported"
    assert missing["fix"] == "pip install 'airflow-provider-imagebuild[vsphere]'"
    assert missing["needed_by"] == [f"{spec} (publish.1: vsphere_library)"]


def test_a_missing_or_mistyped_connection_exits_1_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(tmp_path, "notify.yaml", WEBHOOK)
    code, report = doctor_json(str(spec))
    (missing,) = report["missing"]
    assert code == 1 and missing["check"] == "connection builds_hook (http)"
    assert "not defined in $AIRFLOW_CONN_BUILDS_HOOK" in missing["detail"]
    assert missing["needed_by"] == [f"{spec} (notify.to.0: webhook)"]

    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", json.dumps({"conn_type": "generic", "host": "hooks.example"}))
    code, report = doctor_json(str(spec))
    assert code == 1 and report["missing"][0]["detail"] == "is of type generic, not http"
    assert report["connections"][0]["found_type"] == "generic"

    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", f"http://bot:{SECRET}@hooks.example:notaport/x")
    code, out, err = doctor(str(spec))
    assert code == 1 and "AIRFLOW_CONN_BUILDS_HOOK is set but is not a connection" in out
    assert SECRET not in out + err and "Traceback" not in out + err

    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", json.dumps(
        {"conn_type": "http", "host": "hooks.example", "login": "bot", "password": SECRET,
         "extra": {"token": SECRET}}))  # fmt: skip
    code, out, err = doctor(str(spec))
    assert code == 0 and "connection builds_hook" in out and SECRET not in out + err
    code, report = doctor_json(str(spec))
    assert code == 0 and report["connections"][0]["ok"] and SECRET not in json.dumps(report)


def test_json_has_the_same_keys_on_every_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(tmp_path, "notify.yaml", WEBHOOK)
    _, bare = doctor_json("--no-store-probe")  # no spec folder here: only the store is needed
    _, full = doctor_json("--no-store-probe", str(LOCAL_SPEC), str(spec))
    monkeypatch.setenv("PATH", str(tmp_path))  # no Packer anywhere the provider looks (the venv has none)
    _, without = doctor_json("--no-store-probe", str(LOCAL_SPEC))
    for report in (bare, full, without):
        assert set(report) == TOP_KEYS
        assert set(report["packer"]) == PACKER_KEYS
        assert all(set(f) == FINDING_KEYS for f in report["findings"])
        assert all(set(s) == STORE_KEYS for s in report["stores"])
        assert all(set(c) == CONNECTION_KEYS for c in report["connections"])
        assert all(set(p) == PYTHON_KEYS for p in report["python"])
        assert set(report["host"]) == {"root", "uid", "tools", "files", "rootfs_cache"}
        assert isinstance(report["packer"]["plugins"], list) and isinstance(report["packer"]["builders"], list)
    assert bare["specs"] == [] and bare["ok"] and bare["stores"][0]["needed_by"] == ["this worker's builds"]
    assert finding(bare, "store")["status"] == "ok" and bare["stores"][0]["exists"] is False  # not created here
    assert full["specs"] == [str(LOCAL_SPEC), str(spec)] and len(full["connections"]) == 1
    assert all(f["status"] in ("ok", "absent") for f in bare["findings"] if f["check"] != "store")
    if full["packer"]["path"]:  # the Packer of this machine, found as milestones find it
        assert full["packer"]["version"] and all(set(p) == {"name", "version", "api", "path", "builders"}
                                                 for p in full["packer"]["plugins"])  # fmt: skip
    if not (Path(sys.executable).parent / "packer").exists() and not os.environ.get("IMAGEBUILD_TOOLS_DIR"):
        assert without["packer"]["path"] is None and finding(without, "packer")["status"] == "absent"


NO_BUILDER = """source "imagebuild-nonexistent" "green" {
}

build {
  sources = ["source.imagebuild-nonexistent.green"]
}
"""
UNMET_PLUGIN = """packer {
  required_plugins {
    imagebuildnothing = {
      version = ">= 9.9.9"
      source  = "github.com/hashicorp/imagebuildnothing"
    }
  }
}

source "null" "green" {
  communicator = "none"
}

build {
  sources = ["source.null.green"]
}
"""
PACKER_SPEC = """
pipeline: doctor-packer
cloud: aws
image_type: base
target: {region: us-east-1}
milestones:
  5: {action: packer, template: packer/nobuilder.pkr.hcl}
  10: {action: packer, template: packer/unmet.pkr.hcl}
"""


def test_a_template_this_packer_cannot_run_is_named_with_its_plugin(tmp_path: Path) -> None:
    (tmp_path / "packer").mkdir()
    (tmp_path / "packer/nobuilder.pkr.hcl").write_text(NO_BUILDER)
    (tmp_path / "packer/unmet.pkr.hcl").write_text(UNMET_PLUGIN)
    spec = write_spec(tmp_path, "packer.yaml", PACKER_SPEC)
    code, report = doctor_json("--no-store-probe", str(spec))
    assert code == 1
    templates = {Path(t["file"]).name: t for t in report["packer"]["templates"]}
    assert not templates["nobuilder.pkr.hcl"]["ok"] and not templates["unmet.pkr.hcl"]["ok"]
    assert "imagebuild-nonexistent" in " ".join(templates["nobuilder.pkr.hcl"]["problems"])
    assert "required_plugins" in " ".join(templates["unmet.pkr.hcl"]["problems"]) or "imagebuildnothing" in " ".join(
        templates["unmet.pkr.hcl"]["problems"])  # fmt: skip
    missing = {f["check"]: f for f in report["missing"]}
    nobuilder = missing[f"packer template {tmp_path}/packer/nobuilder.pkr.hcl"]
    assert nobuilder["needed_by"] == [f"{spec} (milestones.5: packer)"] and "packer-tools" in nobuilder["fix"]
    assert f"packer template {tmp_path}/packer/unmet.pkr.hcl" in missing
    aws = finding(report, "connection aws_default")  # the Amazon provider falls back: a warning
    assert aws["status"] == "warn" and aws in report["warnings"]


def test_the_shipped_templates_run_with_the_packer_make_setup_installs() -> None:
    specs = [ROOT / "dags/pipelines" / f"{cloud}-rhel8-webserver.yaml" for cloud in
             ("aws", "azure", "gcp", "openstack", "vsphere")]  # fmt: skip
    _, report = doctor_json("--no-store-probe", *map(str, specs))
    templates = report["packer"]["templates"]
    assert len(templates) == 5 and report["packer"]["path"]
    assert [t["problems"] for t in templates if not t["ok"]] == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own (tests run as root, as CI does: see tests/store/test_faults.py)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_store_that_cannot_be_written_is_reported_with_why(small_disk: Path) -> None:
    url = f"file://{small_disk}/state"
    open_store(url).create_build("b-1", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = CliRunner().invoke(cli, ["--store", url, "doctor", "--json"])
    assert result.stdout.startswith("{"), result.output
    report = json.loads(result.stdout)
    (store,) = report["stores"]
    assert result.exit_code == 1 and store["chosen_by"] == "--store"
    assert (store["reachable"], store["writable"]) == (True, False)
    assert "refuses a write" in store["problem"] and "Read-only file system" in store["problem"]
    result = CliRunner().invoke(cli, ["--store", url, "doctor"])
    assert result.exit_code == 1 and "Read-only file system" in result.stdout and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["--store", url, "doctor", "--no-store-probe", "--json"])
    assert result.exit_code == 0 and result.stdout.startswith("{"), result.output  # not probed: nothing else needed
    assert finding(json.loads(result.stdout), "store")["status"] == "skipped"


def test_a_store_connection_that_fails_never_shows_its_credentials(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id = "AKIADOCTOR" + unique("k")[-10:].upper()
    monkeypatch.setenv("AIRFLOW_CONN_STATE_S3", json.dumps({"conn_type": "imagebuild_state", "extra": {
        "store_url": f"s3://{unique('doctor-missing')}/state?region=us-east-1&endpoint_url={moto_url}",
        "aws_conn_id": "aws_state"}}))  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AWS_STATE", json.dumps({"conn_type": "aws", "login": key_id, "password": SECRET}))
    monkeypatch.setenv("IMAGEBUILD_STORE_CONN_ID", "state_s3")
    for args in (["doctor"], ["doctor", "--json"]):
        result = CliRunner().invoke(cli, args)
        output = result.stdout + result.stderr
        assert result.exit_code == 1 and "Traceback" not in output, output
        assert SECRET not in output and key_id not in output
    assert result.stdout.startswith("{"), output
    report = json.loads(result.stdout)
    (store,) = report["stores"]
    assert store["conn_id"] == "state_s3" and "IMAGEBUILD_STORE_CONN_ID" in store["chosen_by"]
    assert store["reachable"] is False and "does not exist" in store["problem"]
    assert finding(report, "connection state_s3")["status"] == "ok"


def test_the_store_chosen_is_the_one_tasks_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The doctor's choice, case by case, against hooks.store_choice.store_for (what a task opens)."""
    from airflow_provider_imagebuild.hooks.store_choice import store_for

    monkeypatch.setenv("AIRFLOW_CONN_STATE_DB", json.dumps(
        {"conn_type": "imagebuild_state", "extra": {"store_url": f"sqlite:///{tmp_path}/conn.db"}}))  # fmt: skip

    def opened(choice_url: str | None, conn_id: str | None) -> str:
        if conn_id:
            return f"sqlite:///{tmp_path}/conn.db"
        assert choice_url
        return open_store(choice_url).url

    cases = [(f"sqlite:///{tmp_path}/spec.db", None), (None, "state_db"), (None, None)]
    for env_conn in (None, "state_db"):
        if env_conn:
            monkeypatch.setenv("IMAGEBUILD_STORE_CONN_ID", env_conn)
        for env_store in (None, f"sqlite:///{tmp_path}/env.db"):
            if env_store:
                monkeypatch.setenv("IMAGEBUILD_STORE", env_store)
            else:
                monkeypatch.delenv("IMAGEBUILD_STORE", raising=False)
            for spec_store, spec_conn in cases:
                choice = choose_store(spec_store, spec_conn, os.environ.get("IMAGEBUILD_STORE"))
                assert opened(choice.url, choice.conn_id) == store_for(spec_store, spec_conn).url, (
                    env_conn, env_store, spec_store, spec_conn, choice)  # fmt: skip


def test_an_invalid_spec_is_exit_2_naming_it(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "bad.yaml", "pipeline: x\ncloud: mars\nimage_type: t\n")
    code, out, err = doctor(str(spec))
    assert code == 2 and "bad.yaml: cloud" in err and out == ""


def test_a_connection_kept_in_airflows_database_is_read_with_airflow_db(airflow_home: Path, tmp_path: Path) -> None:
    """Outside a task the Task SDK reads AIRFLOW_CONN_* and the secrets backend, not the metadata
    database (tasks reach it through the API server): found there only with --airflow-db."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    spec = write_spec(tmp_path, "notify.yaml", WEBHOOK)
    conn_id = "builds_hook"
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == conn_id).delete()
        session.add(Connection(conn_id=conn_id, conn_type="http", host="hooks.example", password=SECRET))
    env = {**os.environ, "AIRFLOW_HOME": str(airflow_home)}
    env.pop(f"AIRFLOW_CONN_{conn_id.upper()}", None)
    try:
        for args, ok in ((["--json"], False), (["--json", "--airflow-db"], True)):
            done = subprocess.run([EXE, "doctor", "--no-store-probe", *args, str(spec)], capture_output=True,
                                  text=True, env=env, timeout=120)  # fmt: skip
            assert done.stdout.startswith("{"), done.stdout + done.stderr
            (conn,) = json.loads(done.stdout)["connections"]
            assert (done.returncode == 0, conn["ok"]) == (ok, ok), done.stdout + done.stderr
            assert ok or "--airflow-db" in conn["problem"]  # the way to look there is named
            assert SECRET not in done.stdout + done.stderr
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()


def test_the_debian_base_looked_for_is_the_one_a_build_unpacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_imagebuild.doctor.host import base_tarball_path
    from airflow_provider_imagebuild.targets import rootfs

    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"debootstrap-{rootfs.SUITE}-minbase-0123456789ab.tgz").write_bytes(b"")  # another list's
    _, report = doctor_json("--no-store-probe", str(LOCAL_SPEC))
    cache = finding(report, "debootstrap base cache")
    assert cache["status"] == "warn" and "downloads" in cache["detail"] and report["ok"]  # works, from a mirror
    expected = base_tarball_path()
    expected.write_bytes(b"")
    assert rootfs.base_tarball() == expected  # what bootstrap unpacks: found, so nothing is downloaded
    _, report = doctor_json("--no-store-probe", str(LOCAL_SPEC))
    assert finding(report, "debootstrap base cache")["status"] == "ok" and report["host"]["rootfs_cache"] == str(
        expected
    )


def test_a_local_specs_boot_checks_need_qemu_and_only_while_they_are_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_imagebuild.doctor.report import HOST_TOOLS
    from airflow_provider_imagebuild.toolchain.locate import find_tool

    tools = tmp_path / "bin"  # every tool of this machine but qemu, as the only PATH
    tools.mkdir()
    for name in HOST_TOOLS:
        found = find_tool(name)
        if name != "qemu-system-x86_64" and found:
            (tools / name).symlink_to(found)
    monkeypatch.setenv("PATH", str(tools))
    code, report = doctor_json("--no-store-probe", str(LOCAL_SPEC))
    (missing,) = report["missing"]
    assert code == 1 and missing["check"] == "tool qemu-system-x86_64"
    assert missing["fix"] == "apt-get install qemu-system-x86"
    assert missing["needed_by"] == [f"{LOCAL_SPEC} (target.boot.green_image: bios)",
                                    f"{LOCAL_SPEC} (target.boot.before_publish: uefi)"]  # fmt: skip
    assert finding(report, "UEFI firmware")["needed_by"] == [f"{LOCAL_SPEC} (target.boot.before_publish: uefi)"]
    assert f"{LOCAL_SPEC} (milestones.95: seal)" in finding(report, "GRUB's BIOS modules")["needed_by"]

    (tmp_path / "ansible").symlink_to(ROOT / "dags/ansible")  # the spec's playbooks, as ../ansible
    (tmp_path / "pipelines").mkdir()
    text = LOCAL_SPEC.read_text()
    assert "boot: {green_image: bios, before_publish: uefi" in text
    off = text.replace(
        "boot: {green_image: bios, before_publish: uefi", "boot: {green_image: false, before_publish: false"
    ).replace("  97: {action: launch_test}\n", "")  # the launch test is that boot
    unbooted = write_spec(tmp_path / "pipelines", "unbooted.yaml", off)
    code, report = doctor_json("--no-store-probe", str(unbooted))
    assert code == 0 and finding(report, "tool qemu-system-x86_64")["status"] == "absent"
    assert finding(report, "UEFI firmware")["needed_by"] == []


def test_a_cloud_launch_test_needs_ssh_and_ansible_on_the_worker() -> None:
    """The launch test logs in to its test instance over SSH and runs the verification playbook."""
    spec = ROOT / "dags/pipelines/openstack-rhel8-webserver.yaml"
    _, report = doctor_json("--no-store-probe", str(spec))
    for check in ("tool ssh", "tool ansible-playbook"):
        (found,) = [f for f in report["findings"] if f["check"] == check]
        assert f"{spec} (milestones.97: launch_test)" in found["needed_by"], found
