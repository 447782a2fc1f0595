"""The doctor's whole answer: every check's entry (the ``--json`` form), every finding, and the
verdict: healthy when nothing a spec needs is missing.

Everything is examined whether a spec needs it or not, so that one run shows the worker's whole
toolchain; only what the specs need decides the verdict. Without specs, only the store is needed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.doctor.connections import examine_connections
from airflow_provider_imagebuild.doctor.findings import MISSING, WARN, Finding
from airflow_provider_imagebuild.doctor.host import (
    examine_ansible,
    examine_host_file,
    examine_root,
    examine_rootfs_cache,
    examine_tool,
    host_files,
)
from airflow_provider_imagebuild.doctor.needs import Needs, needs_of
from airflow_provider_imagebuild.doctor.packages import GROUPS, examine_group
from airflow_provider_imagebuild.doctor.packer import examine_packer
from airflow_provider_imagebuild.doctor.store import examine_store
from airflow_provider_imagebuild.redact.patterns import Redactor, redact_patterns
from airflow_provider_imagebuild.spec.pipeline import PipelineSpec

HOST_TOOLS = ("ssh", "ssh-keygen", "debootstrap", "truncate", "sfdisk", "mkfs.ext4", "mkfs.vfat", "mmd", "mcopy",
              "grub-mkimage", "qemu-img", "qemu-system-x86_64")  # fmt: skip


@dataclass
class Report:
    specs: list[str]
    entries: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def missing(self) -> list[Finding]:
        return [f for f in self.findings if f.status == MISSING]

    @property
    def ok(self) -> bool:
        return not self.missing

    def to_public(self) -> dict[str, Any]:
        """The ``--json`` document: the same keys on every run, whatever is installed."""
        return {
            "ok": self.ok,
            "specs": self.specs,
            **self.entries,
            "findings": [f.to_public() for f in self.findings],
            "missing": [f.to_public() for f in self.missing],
            "warnings": [f.to_public() for f in self.findings if f.status == WARN],
        }


def examine(
    specs: Sequence[tuple[Path, PipelineSpec]],
    *,
    cli_store: str | None = None,
    cli_store_from: str = "",
    probe_store: bool = True,
    redact: Redactor = redact_patterns,
) -> Report:
    """Examine everything; ``redact`` is applied to the text of other programs' errors (Packer's,
    a store SDK's), the only text a report holds that the doctor did not write itself."""
    needs = needs_of(specs, cli_store=cli_store, cli_store_from=cli_store_from)
    report = Report(needs.specs)
    with ThreadPoolExecutor(max_workers=1) as background:  # Packer's runs wait; Airflow's import works meanwhile
        packer_job = background.submit(examine_packer, needs.tools.get("packer", []), needs.templates, redact)
        _examine_rest(report, needs, probe_store, redact)
        packer, found = packer_job.result()
    report.entries = {"packer": packer, **report.entries}
    report.findings[:0] = found
    return report


def _examine_rest(report: Report, needs: Needs, probe_store: bool, redact: Redactor) -> None:
    ansible, found = examine_ansible(needs.tools.get("ansible-playbook", []), needs.host.get("chroot-connection", []))
    report.entries["ansible"] = ansible
    report.findings += found
    tools: dict[str, str | None] = {}
    root = examine_root(needs.host.get("root", []))
    report.findings.append(root)
    for name in HOST_TOOLS:
        tools[name], finding = examine_tool(name, needs.tools.get(name, []))
        report.findings.append(finding)
    files: dict[str, str | None] = {}
    for name in host_files():
        files[name], finding = examine_host_file(name, needs.host.get(name, []))
        report.findings.append(finding)
    cache, finding = examine_rootfs_cache(needs.host.get("rootfs-cache", []))
    report.findings.append(finding)
    report.entries["host"] = {"root": os.geteuid() == 0, "uid": os.geteuid(), "tools": tools, "files": files,
                              "rootfs_cache": cache}  # fmt: skip
    python = []
    for key in GROUPS:
        entry, finding = examine_group(key, needs.packages.get(key, []))
        python.append(entry)
        report.findings.append(finding)
    report.entries["python"] = python
    connections, found = examine_connections(needs.connections)
    report.entries["connections"] = connections
    report.findings += found
    stores = []
    for choice, needed_by in needs.stores.items():
        entry, finding = examine_store(choice, needed_by, probe_store, redact)
        stores.append(entry)
        report.findings.append(finding)
    report.entries["stores"] = stores
