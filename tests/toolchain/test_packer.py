"""Packer's machine-readable output and manifest (parsing), and the real ``packer`` binary (the
release and plugins ``make packer-tools`` builds) against EC2 on a loopback moto server: the
plugins found beside it, artifacts of this run, decoded UI lines, errors, and SIGINT cleanup."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.toolchain.packer import (
    PLUGIN_PATH_ENV,
    decode,
    manifest_images,
    parse_artifacts,
    parse_line,
    plugin_env,
)
from airflow_provider_imagebuild.toolchain.process import argv_of
from tests.conftest import free_port, task_context

LINES = """\
1795765475,,ui,say,==> amazon-ebs.green: No volumes to clean up%!(PACKER_COMMA) skipping
1795765475,amazon-ebs.green,artifact-count,2
1795765475,amazon-ebs.green,artifact,0,builder-id,mitchellh.amazonebs
1795765475,amazon-ebs.green,artifact,0,id,us-east-1:ami-1%!(PACKER_COMMA)eu-west-1:ami-2
1795765475,amazon-ebs.green,artifact,0,string,AMIs were created:\\nus-east-1: ami-1\\n
1795765475,amazon-ebs.green,artifact,0,end
1795765475,amazon-ebs.green,artifact,1,id,us-east-1:ami-1
"""


def test_machine_readable_lines_are_decoded_and_artifacts_parsed() -> None:
    parsed = [ml for ml in map(parse_line, LINES.splitlines()) if ml is not None]
    assert parsed[0].text == "say,==> amazon-ebs.green: No volumes to clean up, skipping"
    arts = parse_artifacts(parsed)
    assert [a.index for a in arts] == [0, 1]
    assert arts[0].images() == {"us-east-1": "ami-1", "eu-west-1": "ami-2"}
    assert arts[0].description == "AMIs were created:\nus-east-1: ami-1\n"
    assert decode("a%!(PACKER_COMMA)b\\nc") == "a,b\nc"
    assert parse_line("plain text from a plugin") is None


def test_malformed_artifact_line_is_an_error_naming_it() -> None:
    bad = parse_line("1795765475,amazon-ebs.green,artifact,x,id")
    assert bad is not None
    with pytest.raises(InvalidInput, match=r"malformed artifact line: amazon-ebs\.green,artifact,x,id"):
        parse_artifacts([bad])


def test_manifest_reads_only_the_last_run(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "builds": [
                    {"name": "green", "artifact_id": "us-east-1:ami-old", "packer_run_uuid": "run-1"},
                    {"name": "green", "artifact_id": "us-east-1:ami-new,eu-west-1:ami-eu", "packer_run_uuid": "run-2"},
                ],
                "last_run_uuid": "run-2",
            }
        )
    )
    assert manifest_images(manifest) == {"us-east-1": "ami-new", "eu-west-1": "ami-eu"}
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InvalidInput, match=r"broken\.json cannot be read as a Packer manifest"):
        manifest_images(tmp_path / "broken.json")


def test_packer_gets_the_plugins_installed_beside_its_real_binary(tmp_path: Path) -> None:
    """`make packer-tools` links the venv's bin/packer to a cached build with a ``plugins`` folder
    beside it (a deployment does the same in $IMAGEBUILD_TOOLS_DIR): that folder is Packer's
    plugin path, unless the worker's environment names one; a Packer without one gets nothing."""
    real = tmp_path / "cache/set-1/packer"
    (real.parent / "plugins").mkdir(parents=True)
    real.write_text("#!/bin/sh\n")
    real.chmod(0o755)
    link = tmp_path / "venv/bin/packer"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    assert plugin_env(str(link), {}) == {PLUGIN_PATH_ENV: str(real.parent / "plugins")}
    assert plugin_env(str(real), {"PATH": "/usr/bin"}) == {PLUGIN_PATH_ENV: str(real.parent / "plugins")}
    assert plugin_env(str(link), {PLUGIN_PATH_ENV: "/opt/packer-plugins"}) == {}
    bare = tmp_path / "usr/bin/packer"
    bare.parent.mkdir(parents=True)
    bare.write_text("#!/bin/sh\n")
    assert plugin_env(str(bare), {}) == {}


PLUGGED = """
packer {
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.0.0"
    }
  }
}
variable "aws_endpoint" { type = string }
variable "source_image" { type = string }
variable "build_id" { type = string }
source "amazon-ebs" "plugged" {
  region = "us-east-1"
  source_ami = var.source_image
  instance_type = "t3.micro"
  ami_name = "plugged-${var.build_id}"
  communicator = "none"
  custom_endpoint_ec2 = var.aws_endpoint
  skip_credential_validation = true
  skip_metadata_api_check = true
  skip_region_validation = true
  tags = { BuildId = var.build_id, ManagedBy = "airflow-provider-imagebuild" }
}
build { sources = ["source.amazon-ebs.plugged"] }
"""


def test_a_packer_milestone_runs_a_template_that_requires_a_plugin(
    tmp_path: Path, moto_url: str, base_ami: str, ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real amazon-ebs builder (a plugin since Packer 1.10) against moto, from a template with
    ``required_plugins``, as a worker runs it: no ``packer init``, no plugins in the worker's home
    (a throwaway one here); the milestone passes Packer the plugins installed beside it."""
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator
    from airflow_provider_imagebuild.spec.pipeline import TargetSpec
    from airflow_provider_imagebuild.store import open_store
    from tests.servers.aws_sample import moto_connection

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(PLUGIN_PATH_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_MOTO", moto_connection(moto_url))
    template = tmp_path / "plugged.pkr.hcl"
    template.write_text(PLUGGED)
    store_url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(store_url)
    store.create_build("packer-plugged", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
    op = PackerMilestoneOperator(
        task_id="s005",
        identity=BuildIdentity("p", "aws", "t", plan=(0, 5, 100)),
        state=5,
        store=store_url,
        template=str(template),
        target=TargetSpec(aws_conn_id="aws_moto", region="us-east-1", source_image=base_ami),
    )
    op.execute(task_context("packer-plugged", "s005"))
    image = store.get("packer-plugged").milestones[5].outputs["image_id"]
    assert ec2.describe_images(ImageIds=[image])["Images"][0]["Name"] == "plugged-packer-plugged"


HANGING = """
variable "aws_endpoint" { type = string }
variable "source_image" { type = string }
variable "build_id" { type = string }
variable "ssh_port" { type = string }
variable "ssh_timeout" { type = string }
variable "vault_note" { type = string }
source "amazon-ebs" "hang" {
  region = "us-east-1"
  source_ami = var.source_image
  instance_type = "t3.micro"
  ami_name = "hang-${var.build_id}"
  communicator = "ssh"
  ssh_username = "ec2-user"
  ssh_host = "127.0.0.1"          # loopback only: nothing listens there, so Packer waits
  ssh_port = var.ssh_port
  ssh_timeout = var.ssh_timeout
  custom_endpoint_ec2 = var.aws_endpoint
  skip_credential_validation = true
  skip_metadata_api_check = true
  skip_region_validation = true
  run_tags = { BuildId = var.build_id }
}
build { sources = ["source.amazon-ebs.hang"] }
"""


VAR_SENTINEL = "pkr-var-" + "5e1f7a9c"  # a spec variable that must never be on a command line


@pytest.fixture
def hanging(tmp_path: Path, moto_url: str, base_ami: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """A Packer milestone (5) whose instance never answers SSH, in a fresh build."""
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator
    from airflow_provider_imagebuild.spec.pipeline import TargetSpec
    from airflow_provider_imagebuild.store import open_store
    from tests.servers.aws_sample import moto_connection

    monkeypatch.setenv("AIRFLOW_CONN_AWS_MOTO", moto_connection(moto_url))
    template = tmp_path / "hang.pkr.hcl"
    template.write_text(HANGING)
    store_url = f"sqlite:///{tmp_path}/s.db"

    def make(build_id: str, ssh_timeout: str, **kwargs: Any) -> tuple[Any, Any]:
        store = open_store(store_url)
        store.create_build(build_id, pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
        op = PackerMilestoneOperator(
            task_id="s005",
            identity=BuildIdentity("p", "aws", "t", plan=(0, 5, 100)),
            state=5,
            store=store_url,
            template=str(template),
            variables={"ssh_port": str(free_port()), "ssh_timeout": ssh_timeout, "vault_note": VAR_SENTINEL},
            target=TargetSpec(aws_conn_id="aws_moto", region="us-east-1", source_image=base_ami),
            **kwargs,
        )
        return op, store

    return make


@pytest.mark.slow
def test_on_kill_interrupts_packer_which_removes_its_instance(hanging: Callable[..., Any], ec2: Any) -> None:
    """SIGINT while Packer waits for the instance: Packer terminates it and deletes its key pair
    and security group before exiting; the milestone is recorded as failed, "packer stopped"."""
    op, store = hanging("packer-kill", "10m")
    failure: dict[str, BaseException] = {}

    def execute() -> None:
        try:
            op.execute(task_context("packer-kill", "s005"))
        except BaseException as exc:
            failure["exc"] = exc

    thread = threading.Thread(target=execute)
    thread.start()
    deadline = time.monotonic() + 60
    while _instances(ec2, "packer-kill", "running") == 0:
        assert time.monotonic() < deadline and thread.is_alive(), failure
        time.sleep(0.2)
    time.sleep(1.0)  # Packer is now waiting for SSH
    # The spec's variables are in a 0600 var file, not on Packer's argv (readable by every user).
    packers = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if "build" in argv_of(pid)[1:2]]
    assert packers and not [pid for pid in packers if any(VAR_SENTINEL in a for a in argv_of(pid))]
    op.on_kill()
    thread.join(90)
    assert not thread.is_alive()
    assert "packer stopped: task killed" in str(failure["exc"])
    assert _instances(ec2, "packer-kill", "running") == 0
    assert _instances(ec2, "packer-kill", "terminated") == 1
    assert not [k for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith("packer_")]
    assert "packer stopped" in (store.get("packer-kill").attempts_at(5)[0].error or "")


@pytest.mark.slow
def test_on_error_abort_keeps_the_instance_and_records_it(hanging: Callable[..., Any], ec2: Any) -> None:
    op, store = hanging("packer-abort", "3s", on_error="abort")
    with pytest.raises(AirflowException, match="packer build failed"):
        op.execute(task_context("packer-abort", "s005"))
    rec = store.get("packer-abort")
    kept = rec.metadata["packer_kept_instance"]
    assert _instances(ec2, "packer-abort", "running") == 1
    assert (
        kept
        == ec2.describe_instances(Filters=[{"Name": "tag:BuildId", "Values": ["packer-abort"]}])["Reservations"][0][
            "Instances"
        ][0]["InstanceId"]
    )
    assert "Timeout waiting for SSH" in (rec.attempts_at(5)[0].error or "")
    ec2.terminate_instances(InstanceIds=[kept])


def _instances(ec2: Any, build_id: str, state: str) -> int:
    found = ec2.describe_instances(
        Filters=[{"Name": "tag:BuildId", "Values": [build_id]}, {"Name": "instance-state-name", "Values": [state]}]
    )
    return sum(len(r["Instances"]) for r in found["Reservations"])
