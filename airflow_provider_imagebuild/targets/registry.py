"""Which clouds have a build target, where it lives, and which actions it implements.

Adding a cloud: implement :class:`~airflow_provider_imagebuild.targets.base.Target` in a module
of this package, add one line here, and add the cloud to the target contract suite's parameters
(``tests/targets/test_contract.py``). This module imports nothing heavy: the spec reads it at DAG
parse time (to refuse an action a cloud does not have), the target itself is imported only when
a milestone runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Registered:
    """A cloud's target: where its class lives (``module:Class``, imported by
    :func:`airflow_provider_imagebuild.targets.target_class` when a milestone runs) and the
    actions it implements. Data only: this module sits below the spec and the targets, which both
    read it, and imports neither."""

    path: str  # "module:Class"
    actions: frozenset[str]


TARGETS: dict[str, Registered] = {
    "aws": Registered(
        "airflow_provider_imagebuild.targets.aws:AwsTarget",
        frozenset({"packer", "ansible", "seal", "launch_test", "publish"}),
    ),
    "azure": Registered(
        "airflow_provider_imagebuild.targets.azure:AzureTarget",
        frozenset({"packer", "ansible", "seal", "launch_test", "publish"}),
    ),
    "gcp": Registered(
        "airflow_provider_imagebuild.targets.gcp:GcpTarget",
        frozenset({"packer", "ansible", "seal", "launch_test", "publish"}),
    ),
    "vsphere": Registered(
        "airflow_provider_imagebuild.targets.vsphere:VsphereTarget",
        frozenset({"packer", "ansible", "seal", "launch_test", "publish"}),
    ),
    "openstack": Registered(
        "airflow_provider_imagebuild.targets.openstack:OpenstackTarget",
        frozenset({"packer", "ansible", "seal", "launch_test", "publish"}),
    ),
    "local": Registered(
        "airflow_provider_imagebuild.targets.local:LocalTarget",
        frozenset({"bootstrap", "ansible", "seal", "launch_test", "publish"}),
    ),
}
# Actions that need a build target (the others, command and noop, run on any cloud). A target that
# lists ``launch_test`` implements ``Target.boot_check`` (spec/boot.py BOOT_CHECK_CLOUDS is read here).
TARGET_ACTIONS = frozenset({"packer", "bootstrap", "ansible", "seal", "launch_test", "publish"})
# The clouds whose target resolves a watch ``image: source`` to an image id (targets/source_images.py);
# data here so that the spec refuses the others without loading a target.
IMAGE_WATCH_CLOUDS = ("local", "aws", "azure", "gcp", "openstack", "vsphere")


def clouds_for(action: str) -> tuple[str, ...]:
    """The clouds whose target implements ``action``."""
    return tuple(cloud for cloud, entry in TARGETS.items() if action in entry.actions)
