"""The build host's packages in the milestones: the policy gate (90) and the bill of materials (95).

Both read the same thing, the image's own package database on the build host, the same way: as a
tree on this worker where the target has one (local: :meth:`Target.package_root`), else over
Ansible with ``sbom/collect-packages.yml`` (the clouds' hosts, over SSH or whatever connection
the spec gives). Honest order: the policy is checked at 90 on the host after 90's playbook; the
seal (95) reads the host again right before capture, writes the bill of materials of exactly
that, and checks the policy again when the packages are not the ones 90 checked (its clean-up
playbook changed them), so an image never ships with packages the policy did not see.

A violation is an :class:`AirflowException` whose text starts ``policy violation``: the failure
table (:mod:`..failures`) classes it persistent, so Airflow does not retry it, and the attempt
records the list.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowException

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.sbom.inventory import Inventory

if TYPE_CHECKING:
    from airflow_provider_imagebuild.operators.session import MilestoneSession
    from airflow_provider_imagebuild.operators.target import TargetMilestoneOperator
    from airflow_provider_imagebuild.spec.policy import PolicySpec
    from airflow_provider_imagebuild.targets.base import Host

COLLECT_PLAYBOOK = Path(__file__).resolve().parent.parent / "sbom" / "collect-packages.yml"
# Outputs: what 90 checked, what 95 wrote (the document itself stays a file: the record holds
# its path, digest and counts, never the document).
PACKAGES_SHA256 = "packages_sha256"
POLICY_PASSED = "policy_passed"
SBOM_FILE = "sbom_file"
SBOM_SHA256 = "sbom_sha256"
SBOM_PACKAGES = "sbom_packages"


def read_inventory(op: TargetMilestoneOperator, build: BuildRecord, host: Host, session: MilestoneSession) -> Inventory:
    """The build host's installed packages."""
    from airflow_provider_imagebuild.sbom.inventory import COLLECT_SCRIPT, inventory_of_root, parse_collected

    root = op.get_target().package_root(build, host)
    if root is not None:
        return inventory_of_root(root)
    with tempfile.TemporaryDirectory(prefix="imagebuild-packages-") as folder:
        script, listing = Path(folder) / "collect.sh", Path(folder) / "packages.txt"
        script.write_text(COLLECT_SCRIPT)
        op.run_playbook(
            COLLECT_PLAYBOOK,
            op.state,
            {"imagebuild_collect_script_file": str(script), "imagebuild_inventory_file": str(listing)},
            host,
            build,
            session,
        )
        return parse_collected(listing.read_text(errors="replace"))


def policy_gate(op: TargetMilestoneOperator, policy: PolicySpec, base: Path, inventory: Inventory) -> dict[str, Any]:
    """Check ``policy``; its outputs when it passes, else raise the violations."""
    from airflow_provider_imagebuild.sbom.policy import check

    result = check(policy, inventory, base)
    if not result.passed:
        for line in result.violations:
            op.log.error("policy: %s", line)
        raise AirflowException(result.message())
    op.log_output(
        f"policy passed: {len(inventory.packages)} packages; "
        + ", ".join(f"{rule} {n}" for rule, n in result.checked.items() if rule != "packages")
    )
    return {POLICY_PASSED: True, PACKAGES_SHA256: inventory.digest(), "policy_packages": len(inventory.packages)}


def write_sbom(
    op: TargetMilestoneOperator, build: BuildRecord, inventory: Inventory, built_with: Mapping[str, str]
) -> dict[str, Any]:
    """The CycloneDX document of ``inventory`` written beside the build's image on this worker
    (:meth:`Target.sbom_file`, mode 0644: it lists packages, nothing secret); its outputs."""
    from airflow_provider_imagebuild.sbom.cyclonedx import sbom_document
    from airflow_provider_imagebuild.targets.base import file_hash

    path = op.get_target().sbom_file(build)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = sbom_document(
        inventory, image_name=f"{op.pipeline}", image_version=build.build_id, built_with=dict(built_with)
    )
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)  # a reader never sees half a document
    kernels = [k.version for k in inventory.kernels]
    op.log_output(f"bill of materials: {len(inventory.packages)} packages, kernel {', '.join(kernels) or '?'}: {path}")
    return {
        SBOM_FILE: str(path),
        SBOM_SHA256: file_hash(path),
        SBOM_PACKAGES: len(inventory.packages),
        "sbom_format": "CycloneDX 1.6",
        "sbom_kernel": ", ".join(kernels),
        PACKAGES_SHA256: inventory.digest(),
    }


def checked_packages(build: BuildRecord) -> str:
    """The package set the policy gate passed (its digest), "" when none did."""
    for code in sorted(build.completed, reverse=True):
        outputs = build.milestones[code].outputs
        if outputs.get(POLICY_PASSED) and outputs.get(PACKAGES_SHA256):
            return str(outputs[PACKAGES_SHA256])
    return ""
