"""The Python packages a spec's cloud, destinations, notifications and store import.

Each group is what one use imports (the Azure target, the Blob store, the Slack notifier...),
with the provider's extra that installs it. A group is there when its distributions are installed
at the versions the provider requires (read from the provider's own package metadata, so the
pins live in pyproject.toml alone) and its modules can be found. Modules are located, not run:
importing the cloud SDKs takes seconds, and the doctor runs on every worker; a broken install
that only an import reveals fails the first milestone with the import error and this extra named.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from airflow_provider_imagebuild.doctor.findings import Finding, judged

PROVIDER = "airflow-provider-imagebuild"


@dataclass(frozen=True)
class PackageGroup:
    purpose: str
    extra: str | None  # the provider's extra that installs it; None: the provider's own dependencies
    distributions: tuple[str, ...]
    modules: tuple[str, ...] = ()  # what the code imports (Airflow providers are checked as distributions)

    @property
    def fix(self) -> str:
        return f"pip install '{PROVIDER}[{self.extra}]'" if self.extra else f"pip install '{PROVIDER}'"


GROUPS: dict[str, PackageGroup] = {
    "aws": PackageGroup("AWS target, SNS, DynamoDB and S3 stores", None,
                        ("apache-airflow-providers-amazon", "boto3"), ("boto3", "botocore")),
    "azure": PackageGroup("Azure target", "azure",
                          ("apache-airflow-providers-microsoft-azure", "azure-identity", "azure-mgmt-compute",
                           "azure-mgmt-network", "azure-mgmt-resource"),
                          ("azure.identity", "azure.mgmt.compute", "azure.mgmt.network", "azure.mgmt.resource")),
    "azure-blob": PackageGroup("Azure Blob store", "azure", ("azure-storage-blob", "azure-identity"),
                               ("azure.storage.blob", "azure.identity")),
    "gcp": PackageGroup("Google Cloud target", "gcp",
                        ("apache-airflow-providers-google", "google-api-python-client", "google-auth"),
                        ("googleapiclient.discovery", "google.auth")),
    "gcs": PackageGroup("Cloud Storage store", "gcp", ("google-cloud-storage",), ("google.cloud.storage",)),
    "vsphere": PackageGroup("vSphere target and content library", "vsphere", ("pyvmomi",), ("pyVmomi",)),
    "openstack": PackageGroup("OpenStack target and Glance", "openstack", ("openstacksdk",), ("openstack",)),
    "ansible": PackageGroup("Ansible milestones", "ansible", ("ansible-runner", "ansible", "ansible-core"),
                            ("ansible_runner", "ansible")),
    "slack": PackageGroup("Slack notifications", "notify", ("apache-airflow-providers-slack",)),
    "smtp": PackageGroup("email notifications", "notify", ("apache-airflow-providers-smtp",)),
    "http": PackageGroup("webhook notifications", "notify", ("apache-airflow-providers-http",)),
}  # fmt: skip
# Store URL schemes -> the group their backend imports.
STORE_GROUPS = {"dynamodb": "aws", "s3": "aws", "sqlite+s3": "aws", "azblob": "azure-blob", "gs": "gcs"}


@cache
def _required() -> dict[tuple[str, str | None], Requirement]:
    """The provider's requirements by (distribution, extra): what its metadata pins."""
    found: dict[tuple[str, str | None], Requirement] = {}
    try:
        lines = metadata.requires(PROVIDER) or []
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return found
    extras = sorted({group.extra for group in GROUPS.values() if group.extra})
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if req.marker is None:
            found.setdefault((name, None), req)
            continue
        for extra in extras:
            if req.marker.evaluate({"extra": extra}):
                found.setdefault((name, extra), req)
    return found


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _locatable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or an entry of None in sys.modules
        return False


def examine_group(key: str, needed_by: list[str]) -> tuple[dict[str, Any], Finding]:
    group = GROUPS[key]
    required = _required()
    packages, problems = [], []
    for name in group.distributions:
        version = _installed(name)
        req = required.get((canonicalize_name(name), group.extra))
        wanted = str(req.specifier) if req is not None else ""
        packages.append({"name": name, "required": wanted, "installed": version})
        if version is None:
            problems.append(f"{name} is not installed")
        elif req is not None and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{name} {version} is installed; the provider needs {name}{wanted}")
    modules = {module: _locatable(module) for module in group.modules}
    problems += [f"module {module} cannot be imported" for module, found in modules.items() if not found]
    entry = {
        "group": key,
        "purpose": group.purpose,
        "extra": group.extra,
        "needed_by": needed_by,
        "ok": not problems,
        "packages": packages,
        "modules": modules,
        "fix": group.fix if problems else "",
    }
    detail = "; ".join(problems) or ", ".join(f"{p['name']} {p['installed']}" for p in packages)
    return entry, judged(f"python {key} ({group.purpose})", not problems, detail, group.fix, needed_by)
