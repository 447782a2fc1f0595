"""The policy gate (#33) at final validation, as ``imagebuild milestone run`` runs milestone 90 (a
real process, the real Ansible milestone on the local target): after the playbook, the build
host's own dpkg database is checked against the spec's ``policy:``. A violation fails the
milestone with every problem listed, classed persistent (not retried); the team fixes the policy
(or the image) and runs it again, and it completes with what it checked.

The build host is a small tree cut from the local target's Debian 12 image (tests/sbom/data),
recorded as the build's host by the milestone before 90, as the local target records one; the playbook runs one task
on the worker (debug), so nothing runs inside the tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from airflow_provider_imagebuild.plan import plan_from_spec
from airflow_provider_imagebuild.sbom.inventory import inventory_of_root
from airflow_provider_imagebuild.spec.pipeline import load_spec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import Host

EXE = str(Path(sys.executable).with_name("imagebuild"))
IMAGE = Path(__file__).resolve().parents[1] / "sbom" / "data" / "bookworm"
SPEC = """pipeline: gated
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
target: {{work_dir: {tmp}/work, catalog: {tmp}/catalog}}
defaults: {{retries: 2, lease_seconds: 60}}
milestones:
  85: {{action: command, command: "true"}}
  90: {{action: ansible, playbook: validate.yml}}
policy:
  require: [openssh-server, sudo]
  forbid: [{forbid}]
  versions: ["openssl >= 3.0.15"]
  advisories: [advisories/osv.json]
  ignore: [TEST-2026-0001, TEST-2026-0006]
"""
PLAYBOOK = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.debug: {msg: validated}
"""


def run_90(spec: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(spec.parent)}
    args = [EXE, "milestone", "run", str(spec), "90", "--build-id", "gated-1"]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=180, cwd=spec.parent)


def test_a_policy_violation_fails_90_for_good_and_a_fixed_policy_passes(tmp_path: Path) -> None:
    spec = tmp_path / "gated.yaml"
    spec.write_text(SPEC.format(tmp=tmp_path, forbid="nginx, telnetd"))
    (tmp_path / "validate.yml").write_text(PLAYBOOK)
    (tmp_path / "advisories").mkdir()
    shutil.copy(IMAGE.parent / "osv.json", tmp_path / "advisories/osv.json")  # a path beside the spec
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    store.register("gated-1", plan_from_spec(load_spec(spec)).identity)
    root = tmp_path / "work/gated-1/rootfs"  # the build's host, as the local target records one
    shutil.copytree(IMAGE, root, symlinks=True)
    (root / ".imagebuild-host").write_text("gated-1\n")
    (root / "bin").mkdir()
    shutil.copy("/bin/sh", root / "bin/sh")  # what Ansible's chroot connection looks for before any task
    lease = store.begin("gated-1", 85, owner="test")  # a milestone before 90 launched the host
    store.set_metadata("gated-1", Host(str(root), "", "", 85, 85).to_metadata(), token=lease.token, state=85)
    store.complete("gated-1", 85, token=lease.token)

    failed = run_90(spec)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0, said
    assert "policy failure (imagebuild, not retried)" in said
    rec = store.get("gated-1")
    (attempt,) = rec.attempts_at(90)
    assert attempt.status == "failed" and rec.status == "failed"
    assert "policy violation (2): forbidden package nginx 1.22.1-9+deb12u9 is installed; " in str(attempt.error)
    assert "TEST-2026-0004: nginx 1.22.1-9+deb12u9 is affected (osv.json" not in str(attempt.error)
    assert "TEST-2026-0004: nginx 1.22.1-9+deb12u9 is affected (no fix known; advisories/osv.json)" in str(
        attempt.error
    )

    spec.write_text(
        SPEC.format(tmp=tmp_path, forbid="telnetd").replace("TEST-2026-0006]", "TEST-2026-0006, TEST-2026-0004]")
    )
    passed = run_90(spec)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    outputs = store.get("gated-1").milestones[90].outputs
    assert outputs["policy_passed"] is True and outputs["policy_packages"] == 9
    assert outputs["packages_sha256"] == inventory_of_root(root).digest()
