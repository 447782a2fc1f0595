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

from airflow_provider_imagebuild.build.ids import NAME_RE
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.scaffold.os_table import CLOUDS, os_choice, os_properties
from airflow_provider_imagebuild.scaffold.writer import ProjectFile, WriteReport, write_project
from airflow_provider_imagebuild.scaffold.yaml_edit import set_value
from airflow_provider_imagebuild.spec.schema import SCHEMA_FILE, SCHEMA_LINE
from airflow_provider_imagebuild.spec.yaml_reader import load_yaml, placeholders

# The sample spec each cloud's project starts from (the tables of :mod:`.os_table`).
SAMPLES = {cloud: table.sample for cloud, table in CLOUDS.items()}
PROJECT_SCHEMA = "imagebuild-spec.schema.json"  # the spec's JSON Schema, for the project's editors


def connection_todo(cloud: str) -> str:
    """What to create before a cloud's project first runs, said once for the CLI and the README."""
    table = CLOUDS[cloud]
    if not table.connection:
        return "no connection to create: the build runs on this worker as root (debootstrap, chroot, qemu)"
    return f"create the Airflow connection `{table.connection}` (airflow connections add {table.connection} ...)"


def shipped_root() -> Path:
    """Where the shipped playbooks, templates and samples are (installed package, or checkout)."""
    package = Path(__file__).resolve().parents[1]
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
    os_key: str  # the table's OS the label names (rhel-9 for rhel-9.4): see os_table

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
    os_key, _ = os_choice(cloud, os_name)
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
    return Scaffold(folder, cloud, os_name, image_type, name, os_key)


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
    sample = root / "pipelines" / SAMPLES[plan.cloud]
    spec_text = render_spec(plan, sample.read_text(), root)
    spec = load_yaml(spec_text)
    templates = {ms["template"] for ms in spec.get("milestones", {}).values() if "template" in ms}
    if templates:
        for template in sorted(templates):
            copy(root / "pipelines" / template, f"dags/packer/{Path(template).name}")
        for extra in sorted((root / "packer").glob("*.cloud-config")):
            copy(extra, f"dags/packer/{extra.name}")
    text(plan.spec_path.relative_to(plan.folder).as_posix(), spec_text)
    copy(root / "imagebuild_pipelines.py", "dags/imagebuild_pipelines.py")
    copy(SCHEMA_FILE, PROJECT_SCHEMA)
    text("Makefile", MAKEFILE.format(dag_id=plan.dag_id))
    todo = "\n".join(f"- `{path}`: {what}" for path, what in placeholders(spec))
    todo = (
        f"Fill in the spec's placeholders (`make check` names those left):\n\n{todo}"
        if todo
        else "No value to fill in."
    )
    text("README.md", README.format(name=plan.name, cloud=plan.cloud, os=plan.os, image_type=plan.image_type,
                                    connection=connection_todo(plan.cloud), todo=todo, dag_id=plan.dag_id))  # fmt: skip
    return list(files.values())


def render_spec(plan: Scaffold, sample: str, root: Path) -> str:
    """The project's spec: the sample's text with the pipeline's own names, the OS's values from the
    cloud's table and placeholders for what only the team knows, every comment of the sample kept
    (a value that becomes a placeholder loses its trailing comment: the placeholder says what to
    put there). The Packer milestones log in as the OS's SSH user where the template takes one."""
    table = CLOUDS[plan.cloud]
    image = table.systems[plan.os_key]
    text = sample.partition("\n")[2] if sample.startswith(SCHEMA_LINE) else sample  # the checkout's own line
    top = {"pipeline": plan.name, "os": plan.os, "image_type": plan.image_type, "schedule": None,
           "description": f"{plan.image_type} image for {plan.os} on {plan.cloud} ({plan.name})"}  # fmt: skip
    for key, value in top.items():
        text = set_value(text, key, value)
    values = {k: v.format(name=plan.name) if isinstance(v, str) else v for k, v in table.fill.items()}
    for key, value in {**values, **image.target}.items():
        text = set_value(text, f"target.{key}", value, keep_comment=not placeholders(value))
    spec = load_yaml(text)
    target = spec.get("target") or {}
    distro, version = os_properties(plan.os_key)
    if isinstance(target.get("properties"), dict) and "os_distro" in target["properties"]:
        text = set_value(
            text, "target.properties", {**target["properties"], "os_distro": distro, "os_version": version}
        )
    if isinstance(target.get("publish_tags"), dict) and "os" in target["publish_tags"]:
        text = set_value(text, "target.publish_tags", {**target["publish_tags"], "os": f"{distro}{version}"})
    ssh_user = target.get("ssh_user")
    for code, milestone in (spec.get("milestones") or {}).items():
        template = milestone.get("template") if isinstance(milestone, dict) else None
        if ssh_user and template and 'variable "ssh_username"' in (root / "pipelines" / template).read_text():
            merged = {**milestone, "vars": {**(milestone.get("vars") or {}), "ssh_username": ssh_user}}
            text = set_value(text, f"milestones.{code}", merged)
    header = (
        f"{SCHEMA_LINE}../../{PROJECT_SCHEMA}\n"  # the editor's schema, written beside the project's Makefile
        f"# {plan.name}: made by `imagebuild init --cloud {plan.cloud} --os {plan.os}`\n"
        f"# from the sample {table.sample}, whose notes follow. Fill in every <REPLACE: ...> value:\n"
        "# `make check` names the ones left, and the DAG does not load until none is.\n"
    )
    return header + text


def write_scaffold(plan: Scaffold) -> WriteReport:
    """Write the project without losing a file of the user's (see :mod:`.writer`)."""
    return write_project(plan.folder, scaffold_files(plan))


GROUP_VARS = """# Variables every playbook of {name} gets (Ansible reads group_vars beside the playbooks).
# The playbooks are tagged by milestone (`--tags m015`) and idempotent: a replay on a relaunched
# build host changes nothing that is already right.
imagebuild_admin_user: admin
"""

MAKEFILE = """# make check: the specs as the DAG file reads them (names every <REPLACE: ...> value left to fill in).
# make run BUILD_ID=...: one build through Airflow's `dags test` (no scheduler needed) in this project's
# own Airflow home, .airflow/ (its metadata DB, made by `airflow db migrate` on the first run, and the
# builds' store); the same BUILD_ID again resumes where it stopped. make show BUILD_ID=...: the build.
# make doctor: whether this machine has what the specs need, and the store make run uses.
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export IMAGEBUILD_PIPELINES_DIR := $(CURDIR)/dags/pipelines
BUILD_ID ?= $(shell date -u +%Y%m%d)

.PHONY: check doctor run show
check:
\timagebuild spec check dags/pipelines

doctor:
\timagebuild doctor

$(AIRFLOW_HOME)/.migrated:
\tmkdir -p "$(AIRFLOW_HOME)"
\tairflow db migrate
\ttouch "$@"

run: check $(AIRFLOW_HOME)/.migrated
\tairflow dags test {dag_id} --conf '{{"build_id": "$(BUILD_ID)"}}'

show:
\timagebuild build show $(BUILD_ID)
"""

README = """# {name}

A {image_type} image for {os} on {cloud}, built as a resumable Airflow pipeline by
airflow-provider-imagebuild. Each milestone (5 kickstart, 10 green image, 15..90 configuration,
hardening and tests, 95 seal, 97 launch test, 100 delivered) is a task of the DAG `{dag_id}`; a failed task,
cleared in the Airflow UI, resumes the build where it stopped.

- `dags/pipelines/{name}.yaml`: the pipeline (check it with `make check`).
- `dags/ansible/`: one playbook per milestone; `group_vars/all.yml` for your variables.
- `dags/packer/`: the template of the kickstart and green images, where the cloud uses Packer.
- `dags/imagebuild_pipelines.py`: the DAG file (point Airflow's dags folder here, or copy it).

Before the first run: {connection}. {todo}

Then:

    make doctor                         # what this machine lacks for the spec, and the store it uses
    make check
    make run BUILD_ID=first-try         # again with the same id after a failure: it resumes
    make show BUILD_ID=first-try        # the milestones, attempts and outputs

`make run` keeps Airflow's metadata DB and the builds' store in `.airflow/` (this project's own
AIRFLOW_HOME, migrated on the first run).
"""
