"""``imagebuild init``: a ready image-build project for one cloud, from what the provider ships.

The project holds the DAG file, one pipeline spec for the cloud (from the shipped sample for it,
renamed to the team's pipeline, OS and image type), the Ansible playbooks per milestone (tagged
by milestone, idempotent), ``group_vars``, the Packer template where the cloud uses one, a README
for the team and a Makefile (``make check``, ``make run BUILD_ID=...``). The shipped files come
from the installed package (``airflow_provider_imagebuild/project``, put there when the wheel is
built) or, in a checkout of this repository, from its ``dags/`` folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from airflow_provider_imagebuild.build.ids import NAME_RE
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.scaffold_writer import ProjectFile, WriteReport, write_project

# The sample spec each cloud's project starts from.
SAMPLES = {
    "local": "local-debian-base.yaml",
    "aws": "aws-rhel8-webserver.yaml",
    "azure": "azure-rhel8-webserver.yaml",
    "gcp": "gcp-rhel8-webserver.yaml",
    "vsphere": "vsphere-rhel8-webserver.yaml",
    "openstack": "openstack-rhel8-webserver.yaml",
}
# What a team fills in before the first run, per cloud.
TODO = {
    "local": "nothing: it runs on the worker as root (debootstrap, chroot, qemu-img)",
    "aws": "the `aws_default` connection, target.source_image (your vendor AMI), subnet and SSM parameter",
    "azure": "the `azure_default` connection, target.resource_group, network, gallery and ssh_public_key",
    "gcp": "the `google_cloud_default` connection, target.project, subnetwork and service_account",
    "vsphere": "the `vsphere_default` connection, target.datacenter, cluster, datastore, template and content_library",
    "openstack": "the `openstack_default` connection, target.flavor, network, source_image and key_name",
}


def shipped_root() -> Path:
    """Where the shipped playbooks, templates and samples are (installed package, or checkout)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "project", package.parent / "dags"):
        if (candidate / "pipelines").is_dir() and (candidate / "ansible").is_dir():
            return candidate
    raise InvalidInput("init", f"the provider's playbooks and samples are missing beside {package} (a broken install?)")


@dataclass(frozen=True)
class Scaffold:
    folder: Path
    cloud: str
    os: str
    image_type: str
    name: str

    @property
    def spec_path(self) -> Path:
        return self.folder / "dags" / "pipelines" / f"{self.name}.yaml"

    @property
    def dag_id(self) -> str:
        return f"imagebuild_{self.name.replace('-', '_')}"


def _checked_name(value: str, field: str) -> str:
    if not NAME_RE.fullmatch(value) or ".." in value:
        raise InvalidInput(field, "must be 1-128 ASCII letters, digits, '.', '_' or '-' (no '..')")
    return value


def plan_scaffold(folder: Path, cloud: str, os_name: str, image_type: str, name: str | None, force: bool) -> Scaffold:
    """Check the request before anything is written."""
    if cloud not in SAMPLES:
        raise InvalidInput("--cloud", f"must be one of {', '.join(SAMPLES)}, got {cloud!r}")
    _checked_name(os_name, "--os")
    _checked_name(image_type, "--image-type")
    name = name or re.sub(r"[^a-z0-9-]+", "-", f"{cloud}-{os_name}-{image_type}".lower()).strip("-")
    _checked_name(name, "--name")
    if folder.is_symlink() and not folder.exists():
        raise InvalidInput(str(folder), f"is a symbolic link to {os.readlink(folder)}, which does not exist")
    if folder.exists() and not folder.is_dir():
        raise InvalidInput("DIR", f"{folder} is a file")
    existing = next((up for up in folder.absolute().parents if up.exists()), None)
    if not folder.exists() and existing is not None and not existing.is_dir():
        raise InvalidInput(str(existing), f"is a file, so {folder} cannot be made in it")
    try:
        occupied = folder.is_dir() and any(folder.iterdir())
    except OSError as exc:
        raise InvalidInput(str(folder), f"cannot be read ({exc.strerror})") from exc
    if occupied and not force:
        raise InvalidInput("DIR", f"{folder} is not empty (give --force to write into it anyway)")
    return Scaffold(folder, cloud, os_name, image_type, name)


def scaffold_files(plan: Scaffold) -> list[ProjectFile]:
    """Every file of the project with its content, made in memory so that the writer can check the
    whole folder before it writes one (a later file's refusal must not leave half a project)."""
    root = shipped_root()
    files: dict[str, ProjectFile] = {}

    def copy(source: Path, relative: str) -> None:
        executable = bool(source.stat().st_mode & 0o111)
        files[relative] = ProjectFile(relative, source.read_bytes(), executable)

    def text(relative: str, content: str) -> None:
        files[relative] = ProjectFile(relative, content.encode())

    for source in sorted((root / "ansible").rglob("*")):
        if source.is_file():
            copy(source, f"dags/ansible/{source.relative_to(root / 'ansible').as_posix()}")
    text("dags/ansible/group_vars/all.yml", GROUP_VARS.format(name=plan.name))
    spec = yaml.safe_load((root / "pipelines" / SAMPLES[plan.cloud]).read_text())
    spec.update(pipeline=plan.name, os=plan.os, image_type=plan.image_type, schedule=None,
                description=f"{plan.image_type} image for {plan.os} on {plan.cloud} ({plan.name})")  # fmt: skip
    spec.pop("dag_id", None)
    templates = {ms["template"] for ms in spec.get("milestones", {}).values() if "template" in ms}
    if templates:
        for template in sorted(templates):
            copy(root / "pipelines" / template, f"dags/packer/{Path(template).name}")
        for extra in sorted((root / "packer").glob("*.cloud-config")):
            copy(extra, f"dags/packer/{extra.name}")
    header = (
        f"# {plan.name}: made by `imagebuild init --cloud {plan.cloud}`. Before the first run: {TODO[plan.cloud]}.\n"
    )
    text(plan.spec_path.relative_to(plan.folder).as_posix(), header + yaml.safe_dump(spec, sort_keys=False, width=120))
    copy(root / "imagebuild_pipelines.py", "dags/imagebuild_pipelines.py")
    text("Makefile", MAKEFILE.format(dag_id=plan.dag_id))
    text("README.md", README.format(name=plan.name, cloud=plan.cloud, os=plan.os, image_type=plan.image_type,
                                    todo=TODO[plan.cloud], dag_id=plan.dag_id))  # fmt: skip
    return list(files.values())


def write_scaffold(plan: Scaffold) -> WriteReport:
    """Write the project without losing a file of the user's (see :mod:`.scaffold_writer`)."""
    return write_project(plan.folder, scaffold_files(plan))


GROUP_VARS = """# Variables every playbook of {name} gets (Ansible reads group_vars beside the playbooks).
# The playbooks are tagged by milestone (`--tags m015`) and idempotent: a replay on a relaunched
# build host changes nothing that is already right.
imagebuild_admin_user: admin
"""

MAKEFILE = """# make check: the specs as the DAG file reads them. make run BUILD_ID=...: one build through
# Airflow's `dags test` (no scheduler needed); the same BUILD_ID again resumes where it stopped.
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export IMAGEBUILD_PIPELINES_DIR := $(CURDIR)/dags/pipelines
BUILD_ID ?= $(shell date -u +%Y%m%d)

.PHONY: check run
check:
\timagebuild spec check dags/pipelines

run: check
\tairflow dags test {dag_id} --conf '{{"build_id": "$(BUILD_ID)"}}'
"""

README = """# {name}

A {image_type} image for {os} on {cloud}, built as a resumable Airflow pipeline by
airflow-provider-imagebuild. Each milestone (5 kickstart, 10 green image, 15..90 configuration,
hardening and tests, 95 seal, 100 delivered) is a task of the DAG `{dag_id}`; a failed task,
cleared in the Airflow UI, resumes the build where it stopped.

- `dags/pipelines/{name}.yaml`: the pipeline (check it with `make check`).
- `dags/ansible/`: one playbook per milestone; `group_vars/all.yml` for your variables.
- `dags/packer/`: the template of the kickstart and green images, where the cloud uses Packer.
- `dags/imagebuild_pipelines.py`: the DAG file (point Airflow's dags folder here, or copy it).

Before the first run: {todo}.

    make check
    make run BUILD_ID=first-try         # again with the same id after a failure: it resumes
    imagebuild build show first-try     # the milestones, attempts and outputs
"""
