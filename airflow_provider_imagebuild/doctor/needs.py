"""What pipeline specs need from the worker that runs them, read from the specs alone.

Every need records who needs it (the spec file and the field that makes it needed), so that a
missing thing is reported as "needed by azure.yaml (target.azure_conn_id)" and a thing no spec
names is shown without failing the run. Nothing here imports a cloud SDK or Airflow, or runs a
tool: the other modules of the doctor examine what this one lists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.doctor.packages import STORE_GROUPS
from airflow_provider_imagebuild.doctor.store import StoreChoice, choose_store
from airflow_provider_imagebuild.spec.azure import AzureTargetSpec
from airflow_provider_imagebuild.spec.gcp import GcpTargetSpec
from airflow_provider_imagebuild.spec.openstack import OpenstackTargetSpec
from airflow_provider_imagebuild.spec.pipeline import PipelineSpec, TargetSpec
from airflow_provider_imagebuild.spec.publish import PublishSpec
from airflow_provider_imagebuild.spec.vsphere import VsphereTargetSpec
from airflow_provider_imagebuild.targets.registry import TARGET_ACTIONS

# What targets.disk.make_disk runs to make the local target's bootable disk (GRUB's modules aside).
DISK_TOOLS = ("truncate", "sfdisk", "mkfs.ext4", "mkfs.vfat", "mmd", "mcopy", "grub-mkimage")
GREEN_IMAGE = 10  # operators.target.GREEN_IMAGE (that module imports Airflow): the milestone booted first
AWS_FALLBACK = "the Amazon provider then uses the worker's default AWS credentials (environment, instance profile)"


@dataclass(frozen=True)
class ConnectionNeed:
    """An Airflow connection a spec names, and what the code that reads it expects of it."""

    conn_id: str
    conn_type: str | None  # the type its hook is registered as; None where no provider defines one
    fields: tuple[str, ...] = ()  # read by the code: "host", "login", "extra.auth_url"; "a|b": either
    fallback: str = ""  # why a missing one is only a warning: what the hook uses instead


@dataclass
class Needs:
    """Each kind of need: key -> who needs it (``file (field)``), in the order first named."""

    specs: list[str] = field(default_factory=list)
    packages: dict[str, list[str]] = field(default_factory=dict)  # package groups (doctor.packages)
    tools: dict[str, list[str]] = field(default_factory=dict)  # executables, found by find_tool
    host: dict[str, list[str]] = field(default_factory=dict)  # "root", "rootfs-cache", "chroot-connection"
    templates: dict[Path, list[str]] = field(default_factory=dict)  # Packer templates (files or folders)
    connections: dict[ConnectionNeed, list[str]] = field(default_factory=dict)
    stores: dict[StoreChoice, list[str]] = field(default_factory=dict)

    @staticmethod
    def _add(table: dict[Any, list[str]], key: object, who: str) -> None:
        found = table.setdefault(key, [])
        if who not in found:
            found.append(who)

    def package(self, group: str, who: str) -> None:
        self._add(self.packages, group, who)

    def tool(self, name: str, who: str) -> None:
        self._add(self.tools, name, who)

    def on_host(self, what: str, who: str) -> None:
        self._add(self.host, what, who)

    def template(self, path: Path, who: str) -> None:
        self._add(self.templates, path, who)

    def connection(self, need: ConnectionNeed, who: str) -> None:
        self._add(self.connections, need, who)

    def store(self, choice: StoreChoice, who: str) -> None:
        self._add(self.stores, choice, who)
        if choice.url:  # validated by the spec (or refused by the store check, naming the field)
            scheme = choice.url.partition("://")[0]
            if scheme in STORE_GROUPS:
                self.package(STORE_GROUPS[scheme], f"{who} (store {scheme}://)")
        if choice.conn_id:
            self.connection(ConnectionNeed(choice.conn_id, "imagebuild_state", ("extra.store_url|host",)), who)


def _cloud_needs(needs: Needs, spec: PipelineSpec, name: str) -> None:
    """The cloud SDK and the connection a target action reaches the cloud with."""
    target = spec.target
    if spec.cloud == "local":
        return
    needs.package(spec.cloud, f"{name} (cloud: {spec.cloud})")
    if isinstance(target, AzureTargetSpec):
        conn, where = ConnectionNeed(target.azure_conn_id, "azure"), "azure_conn_id"
    elif isinstance(target, GcpTargetSpec):
        conn, where = ConnectionNeed(target.gcp_conn_id, "google_cloud_platform"), "gcp_conn_id"
    elif isinstance(target, VsphereTargetSpec):
        conn, where = ConnectionNeed(target.vsphere_conn_id, None, ("host", "login")), "vsphere_conn_id"
    elif isinstance(target, OpenstackTargetSpec):
        if target.cloud:  # a clouds.yaml cloud of the worker, not a connection
            return
        conn, where = _openstack_connection(target.openstack_conn_id), "openstack_conn_id"
    else:
        conn, where = ConnectionNeed(target.aws_conn_id, "aws", fallback=AWS_FALLBACK), "aws_conn_id"
    needs.connection(conn, f"{name} (target.{where})")


def _openstack_connection(conn_id: str) -> ConnectionNeed:
    # What clouds.openstack reads: a login, Keystone's address (extra.auth_url, or an http(s) host)
    # and the project.
    return ConnectionNeed(conn_id, None, ("login", "extra.auth_url|host", "extra.project_name|extra.project_id"))


def _action_needs(needs: Needs, spec: PipelineSpec, name: str, base: Path) -> None:
    local = spec.cloud == "local"
    for code, milestone in sorted(spec.milestones.items()):
        who = f"{name} (milestones.{code}: {milestone.action})"
        if milestone.action == "packer" and milestone.template:
            needs.tool("packer", who)
            needs.template(Path(os.path.abspath(base / milestone.template)), who)
        if milestone.action == "ansible" or (milestone.action == "seal" and milestone.playbook):
            needs.package("ansible", who)
            needs.tool("ansible-playbook", who)
            if local:  # Ansible reaches the build host's tree over chroot, as root
                needs.on_host("chroot-connection", who)
                needs.on_host("root", who)
                if isinstance(spec.target, TargetSpec) and not spec.target.ssh_public_key:
                    needs.tool("ssh-keygen", who)  # the build's own key pair for the default user
            else:
                needs.tool("ssh", who)
        if milestone.action == "bootstrap":
            needs.tool("debootstrap", who)
            needs.on_host("root", who)
            needs.on_host("rootfs-cache", who)
        if milestone.action == "seal" and local:  # a bootable disk, converted to qcow2
            _disk_needs(needs, who)
            needs.tool("qemu-img", who)
        if milestone.action == "launch_test" and not local:  # SSH and the verification playbook
            needs.tool("ssh", who)  # into a cloud's test instance (local: _boot_needs' qemu boot)
            needs.package("ansible", who)
            needs.tool("ansible-playbook", who)


def _disk_needs(needs: Needs, who: str) -> None:
    """What :func:`targets.disk.make_disk` runs: a GPT disk with GRUB for BIOS and UEFI."""
    for tool in DISK_TOOLS:
        needs.tool(tool, who)
    needs.on_host("grub-efi", who)
    needs.on_host("grub-bios", who)


def _boot_needs(needs: Needs, spec: PipelineSpec, name: str) -> None:
    """The local target's boot checks (``target.boot``): the green image booted at milestone 10,
    the sealed one before it is published, each in qemu with its firmware, checked over SSH."""
    target = spec.target
    if spec.cloud != "local" or not isinstance(target, TargetSpec):
        return
    boot = target.boot
    actions = {code: m.action for code, m in spec.milestones.items()}
    stages = [
        ("green_image", boot.green_image, actions.get(GREEN_IMAGE) == "ansible"),
        ("before_publish", boot.before_publish, "seal" in actions.values()),
    ]
    for stage, firmware, runs in stages:
        if firmware is False or not runs:
            continue
        who = f"{name} (target.boot.{stage}: {firmware})"
        needs.tool("qemu-system-x86_64", who)
        needs.tool("ssh", who)
        if not target.ssh_public_key:
            needs.tool("ssh-keygen", who)
        if firmware == "uefi":
            needs.on_host("ovmf", who)
        if stage == "green_image":  # a disk is made of the build host's tree for the boot
            _disk_needs(needs, who)
        else:  # the verification playbook runs on the booted image
            needs.package("ansible", who)
            needs.tool("ansible-playbook", who)


def _publish_needs(needs: Needs, destinations: Sequence[PublishSpec], name: str) -> None:
    for i, destination in enumerate(destinations):
        who = f"{name} (publish.{i}: {destination.kind})"
        if destination.glance is not None:
            needs.package("openstack", who)
            if not destination.glance.cloud:
                needs.connection(_openstack_connection(destination.glance.openstack_conn_id), who)
        if destination.vsphere_library is not None:
            needs.package("vsphere", who)
            needs.tool("qemu-img", who)  # the stream-optimized VMDK
            needs.connection(ConnectionNeed(destination.vsphere_library.vsphere_conn_id, None, ("host", "login")), who)


def _notify_needs(needs: Needs, spec: PipelineSpec, name: str) -> None:
    if spec.notify is None:
        return
    for i, to in enumerate(spec.notify.to):
        who = f"{name} (notify.to.{i}: {to.kind})"
        if to.slack is not None:
            needs.package("slack", who)
            needs.connection(ConnectionNeed(to.slack.slack_webhook_conn_id, "slackwebhook"), who)
        elif to.sns is not None:
            needs.connection(ConnectionNeed(to.sns.aws_conn_id, "aws", fallback=AWS_FALLBACK), who)
        elif to.email is not None:
            needs.package("smtp", who)
            needs.connection(ConnectionNeed(to.email.smtp_conn_id, "smtp"), who)
        elif to.webhook is not None:
            needs.package("http", who)
            needs.connection(ConnectionNeed(to.webhook.http_conn_id, "http"), who)


def needs_of(
    specs: Sequence[tuple[Path, PipelineSpec]], *, cli_store: str | None = None, cli_store_from: str = ""
) -> Needs:
    """Everything the specs need. Without specs, only the store the worker's builds would use."""
    needs = Needs()
    for path, spec in specs:
        name = str(path)
        needs.specs.append(name)
        actions = {m.action for m in spec.milestones.values()}
        if actions & TARGET_ACTIONS:
            _cloud_needs(needs, spec, name)
        _action_needs(needs, spec, name, path.parent)
        _boot_needs(needs, spec, name)
        _publish_needs(needs, spec.publish, name)
        _notify_needs(needs, spec, name)
        choice = choose_store(spec.store, spec.store_conn_id, cli_store, cli_store_from)
        needs.store(choice, name)
    if not specs:
        needs.store(choose_store(None, None, cli_store, cli_store_from), "this worker's builds")
    return needs
