"""Packer's machine-readable output and manifest (parsing), and the real ``packer`` binary against
EC2 on a loopback moto server: artifacts of this run, decoded UI lines, errors, and SIGINT cleanup."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.toolchain.packer import (
    PackerRun,
    decode,
    manifest_images,
    parse_artifacts,
    parse_line,
)
from tests.conftest import free_port

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


HANGING = """
variable "endpoint" { type = string }
variable "source_image" { type = string }
variable "ssh_port" { type = number }
source "amazon-ebs" "hang" {
  region = "us-east-1"
  source_ami = var.source_image
  instance_type = "t3.micro"
  ami_name = "hang-test"
  communicator = "ssh"
  ssh_username = "ec2-user"
  ssh_host = "127.0.0.1"          # loopback only: nothing listens there, so Packer waits
  ssh_port = var.ssh_port
  ssh_timeout = "10m"
  custom_endpoint_ec2 = var.endpoint
  skip_credential_validation = true
  skip_metadata_api_check = true
  skip_region_validation = true
  run_tags = { BuildId = "packer-kill-test" }
}
build { sources = ["source.amazon-ebs.hang"] }
"""


@pytest.mark.slow
def test_interrupted_packer_removes_its_instance(moto_url: str, ec2: Any, base_ami: str, tmp_path: Path) -> None:
    """on_kill's path: SIGINT while Packer waits for the instance; Packer terminates it and deletes
    its key pair and security group before exiting."""
    template = tmp_path / "hang.pkr.hcl"
    template.write_text(HANGING)
    argv = [
        shutil.which("packer") or "packer",
        "build",
        "-machine-readable",
        f"-var=endpoint={moto_url}",
        f"-var=source_image={base_ami}",
        f"-var=ssh_port={free_port()}",
        str(template),
    ]
    lines: list[str] = []
    run = PackerRun(
        argv,
        env={
            "PATH": "/usr/bin:/bin",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "HOME": str(tmp_path),
        },
        cwd=str(tmp_path),
        log=lines.append,
        grace_s=60,
    )
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(r=run.run()))
    thread.start()
    deadline = time.monotonic() + 60
    while not any("Waiting for SSH" in line for line in lines):
        assert time.monotonic() < deadline and thread.is_alive(), lines[-5:]
        time.sleep(0.2)
    assert _instances(ec2, "running") == 1
    run.stop("task killed")
    thread.join(90)
    assert not thread.is_alive()
    assert result["r"].code != 0
    assert _instances(ec2, "running") == 0
    assert any("Terminating the source AWS instance" in line for line in lines), lines[-10:]
    assert not [k for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith("packer_")]


def _instances(ec2: Any, state: str) -> int:
    found = ec2.describe_instances(
        Filters=[
            {"Name": "tag:BuildId", "Values": ["packer-kill-test"]},
            {"Name": "instance-state-name", "Values": [state]},
        ]
    )
    return sum(len(r["Instances"]) for r in found["Reservations"])
