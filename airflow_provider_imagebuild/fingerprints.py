"""A pipeline spec's milestones as fingerprint inputs (build/fingerprint.py holds the rules).

Per milestone, the components are:

- ``spec``: its spec entry with defaults applied, without what only says how it runs (retries,
  timeouts, lease, pool and queue, attempt caps, title, skippable), and without its variables and
  watch entries, which are components of their own;
- ``pipeline`` (cloud, image type, OS) and, for milestones that act on the build host, ``target``
  (the target settings, the publish-only ones aside) or, for publish, ``publish``;
- ``file:<path>`` for every file it uses (build/file_uses.py), named relative to the spec's folder;
- ``var:<name>`` for each Packer variable or Ansible extra variable of the spec, ``env:<NAME>``
  for a command's environment (by digest: a value may be a secret);
- ``source_image`` for the milestones that start from it (packer, bootstrap): the id an
  ``image: source`` watch resolved, else the configured reference (a name, a family);
- ``tool:<name>`` for the tools that change its result (ansible-core and Ansible for playbooks,
  Packer and its plugins for templates, this provider for what its own code builds);
- ``watch:<name>`` for each watch entry's value; and the previous milestone's fingerprint.

Variables the provider adds at run time (the build id, the pipeline's names) are not inputs: they
differ for every build by design.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.file_uses import playbook_files, required_plugins, template_files
from airflow_provider_imagebuild.build.fingerprint import (
    ENV,
    SOURCE_IMAGE,
    TOOL,
    VAR,
    WATCH,
    Component,
    MilestoneFingerprint,
    file_component,
    milestone_fingerprint,
    plain_component,
    relative_name,
    value_component,
    value_digest,
)
from airflow_provider_imagebuild.spec.pipeline import MilestoneSpec, PipelineSpec, RetryPolicy
from airflow_provider_imagebuild.spec.watch import WatchSpec

# What only says how a milestone runs, not what it makes: left out of the ``spec`` component.
RUN_SETTINGS = frozenset(RetryPolicy.model_fields) | {
    "pool",
    "pool_slots",
    "queue",
    "priority_weight",
    "max_attempts",
    "title",
    "skippable",
}
OWN_COMPONENTS = frozenset({"vars", "extravars", "env", "watch"})
# Target settings that only say where a sealed image is published (the publish milestone's inputs).
PUBLISH_TARGET_KEYS = frozenset(
    {"publish_regions", "share_accounts", "ssm_parameter", "catalog", "catalog_keep", "keep_checkpoints"}
)
HOST_ACTIONS = frozenset({"packer", "bootstrap", "ansible", "seal", "launch_test"})
PLAYBOOK_TOOLS = ("ansible-core", "ansible")
PROVIDER_ACTIONS = frozenset({"bootstrap", "seal", "launch_test", "publish"})  # built by this provider's code


@dataclass(frozen=True)
class MilestoneInputs:
    """A milestone's components, and what of its files could not be followed statically."""

    code: int
    components: list[Component]
    uncovered: list[str] = field(default_factory=list)


def tool_versions() -> dict[str, str]:
    """The versions of the tools that change what a milestone makes, as installed on this worker:
    ``ansible-core``, ``ansible``, ``packer``, ``debootstrap`` (the local target's milestone 5), each
    Packer plugin (``packer-plugin:<source>``, from
    the plugin binaries' names beside Packer), and this provider."""
    from airflow_provider_imagebuild.toolchain.versions import debootstrap_version, packer_version

    found: dict[str, str | None] = {name: _package(name) for name in PLAYBOOK_TOOLS}
    found["provider"] = _package("airflow-provider-imagebuild")
    found["packer"] = packer_version()
    found["debootstrap"] = debootstrap_version()
    found.update(packer_plugins())
    return {name: version for name, version in found.items() if version}


def _package(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def packer_plugins() -> dict[str, str]:
    """``packer-plugin:github.com/hashicorp/amazon`` -> ``1.3.2``: read from the names Packer
    gives installed plugin binaries (``packer-plugin-amazon_v1.3.2_x5.0_linux_amd64``)."""
    from airflow_provider_imagebuild.toolchain.locate import find_tool
    from airflow_provider_imagebuild.toolchain.packer import PLUGIN_PATH_ENV, plugin_env

    packer = find_tool("packer")
    if packer is None:
        return {}
    folder = os.environ.get(PLUGIN_PATH_ENV) or plugin_env(packer).get(PLUGIN_PATH_ENV)
    if not folder or not Path(folder).is_dir():
        return {}
    found: dict[str, str] = {}
    for binary in sorted(Path(folder).rglob("packer-plugin-*_v*")):
        if binary.suffix == ".txt" or not binary.is_file():
            continue
        source = binary.parent.relative_to(folder).as_posix()
        version = binary.name.split("_v", 1)[1].split("_", 1)[0]
        found[f"packer-plugin:{source}"] = version
    return found


def _spec_entry(milestone: MilestoneSpec) -> dict[str, Any]:
    return milestone.model_dump(mode="json", exclude=set(RUN_SETTINGS | OWN_COMPONENTS))


def _target_settings(spec: PipelineSpec, base: Path, *, publish: bool) -> dict[str, Any]:
    """The target's settings for a build milestone (``publish`` False) or for the publish."""
    dumped = spec.target.model_dump(mode="json")
    boot = dumped.get("boot")
    if isinstance(boot, dict) and boot.get("playbook"):  # load_spec made it absolute: named as the spec did
        boot["playbook"] = relative_name(Path(boot["playbook"]), base)
    if publish:
        chosen = {k: v for k, v in dumped.items() if k in PUBLISH_TARGET_KEYS}
        return {"target": chosen, "destinations": [p.model_dump(mode="json") for p in spec.publish]}
    return {k: v for k, v in dumped.items() if k not in PUBLISH_TARGET_KEYS}


def source_reference(spec: PipelineSpec) -> str:
    """The source image as the spec names it (what ``source_image`` is when no watch resolves it)."""
    target = spec.target
    for name in ("source_image", "source_image_family", "template"):
        value = getattr(target, name, None)
        if value:
            project = getattr(target, "source_image_project", None)
            return f"{name}:{project}/{value}" if project else f"{name}:{value}"
    if spec.cloud == "local":
        from airflow_provider_imagebuild.targets.rootfs import PACKAGES, SUITE

        return f"debootstrap:{SUITE}:{value_digest(sorted(PACKAGES))[:12]}"  # the tarball's packages
    return "none"


def _files(milestone: MilestoneSpec, spec: PipelineSpec, base: Path) -> tuple[list[Path], list[str]]:
    """The files a milestone uses, and what of them could not be followed."""
    files: list[Path] = []
    uncovered: list[str] = []
    if milestone.playbook:
        found, missed = playbook_files(base / milestone.playbook)
        files += found
        uncovered += missed
    if milestone.template:
        found, missed = template_files(base / milestone.template, [base / f for f in milestone.var_files])
        files += found
        uncovered += missed
    if isinstance(milestone.command, list) and "/" in milestone.command[0]:
        exe = Path(milestone.command[0])
        exe = exe if exe.is_absolute() else base / (milestone.cwd or ".") / exe
        if exe.is_file():
            files.append(exe)
    boot = getattr(spec.target, "boot", None)
    if milestone.action in ("seal", "launch_test") and boot is not None and boot.playbook:
        found, missed = playbook_files(Path(boot.playbook))
        files += found
        uncovered += missed
    return sorted(set(files)), uncovered


def milestone_inputs(
    spec: PipelineSpec,
    base: Path,
    code: int,
    *,
    watched: Mapping[str, str] | None = None,
    tools: Mapping[str, str] | None = None,
) -> MilestoneInputs:
    """The components of milestone ``code`` of ``spec`` (files read below ``base``, the spec's
    folder); ``watched``: each watch entry's value by name (the ``image: source`` one becomes
    ``source_image``); ``tools``: the worker's tool versions (:func:`tool_versions`)."""
    milestone = spec.milestones.get(code) or MilestoneSpec()
    action = milestone.action
    values = dict(watched or {})
    components = [
        value_component("spec", _spec_entry(milestone)),
        value_component("pipeline", {"cloud": spec.cloud, "image_type": spec.image_type, "os": spec.os}),
    ]
    if action in HOST_ACTIONS:
        components.append(value_component("target", _target_settings(spec, base, publish=False)))
    if action == "publish":
        components.append(value_component("publish", _target_settings(spec, base, publish=True)))
    files, uncovered = _files(milestone, spec, base)
    for path in files:
        components.append(file_component(relative_name(path, base), path.read_bytes()))
    for name, value in {**milestone.vars, **milestone.extravars}.items():
        components.append(value_component(f"{VAR}{name}", value))
    for name, value in milestone.env.items():
        components.append(value_component(f"{ENV}{name}", value))
    image_watch = _image_watch(milestone.watch)
    if action in ("packer", "bootstrap"):
        resolved = values.get(image_watch.name) if image_watch else None
        components.append(plain_component(SOURCE_IMAGE, resolved or source_reference(spec)))
    for entry in milestone.watch:
        if entry is image_watch and action in ("packer", "bootstrap"):
            continue  # recorded as source_image
        components.append(plain_component(f"{WATCH}{entry.name}", values.get(entry.name, "unread")))
    plugins = required_plugins(base / milestone.template) if milestone.template else None
    for tool, version in sorted((tools or {}).items()):
        if plugins is not None and tool.startswith("packer-plugin:") and tool.split(":", 1)[1] not in plugins:
            continue  # a plugin this template does not require
        if _tool_matters(tool, action):
            components.append(plain_component(f"{TOOL}{tool}", version))
    return MilestoneInputs(code, components, uncovered)


def _image_watch(entries: Sequence[WatchSpec]) -> WatchSpec | None:
    return next((e for e in entries if e.image is not None), None)


def _tool_matters(tool: str, action: str) -> bool:
    if tool in PLAYBOOK_TOOLS:
        return action in ("ansible", "seal", "launch_test")
    if tool == "packer" or tool.startswith("packer-plugin:"):
        return action == "packer"
    if tool == "provider":
        return action in PROVIDER_ACTIONS
    if tool == "debootstrap":
        return action == "bootstrap"  # the local target's base tree
    return False


def fingerprint_milestone(
    spec: PipelineSpec,
    base: Path,
    code: int,
    previous: str | None,
    *,
    watched: Mapping[str, str] | None = None,
    tools: Mapping[str, str] | None = None,
) -> tuple[MilestoneFingerprint, list[str]]:
    """Milestone ``code``'s fingerprint chained on ``previous``, and what was not covered."""
    found = milestone_inputs(spec, base, code, watched=watched, tools=tools)
    return milestone_fingerprint(code, found.components, previous), found.uncovered


def pipeline_fingerprints(
    spec: PipelineSpec,
    base: Path,
    codes: Sequence[int],
    *,
    watched: Mapping[int, Mapping[str, str]] | None = None,
    tools: Mapping[str, str] | None = None,
) -> dict[int, MilestoneFingerprint]:
    """The chain over ``codes`` (the plan's, registration aside): what a new build would record if
    every milestone ran now. Reuse compares it with earlier builds' recorded fingerprints."""
    chain: dict[int, MilestoneFingerprint] = {}
    previous: str | None = None
    for code in codes:
        if code == 0:
            continue
        fp, _ = fingerprint_milestone(spec, base, code, previous, watched=(watched or {}).get(code), tools=tools)
        chain[code] = fp
        previous = fp.fingerprint
    return chain


@dataclass(frozen=True)
class FingerprintSource:
    """What a milestone task needs to fingerprint itself when it starts: its pipeline's spec and
    the spec's folder (files are named relative to it). Given to every task by the DAG factory."""

    spec: PipelineSpec
    base: str

    def fingerprint(
        self,
        code: int,
        previous: str | None,
        resolve_image: Callable[[], str | None] | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> MilestoneFingerprint:
        """Milestone ``code``'s fingerprint now: its watch entries read, the worker's tools asked."""
        from airflow_provider_imagebuild.watch import watched_values

        milestone = self.spec.milestones.get(code)
        values = watched_values(list(milestone.watch), resolve_image) if milestone else []
        for value in values:
            if value.problem:
                log(f"watch {value.name} ({value.kind}) could not be read: {value.problem}; nothing is reused past it")
        watched = {v.name: v.value for v in values}
        fp, uncovered = fingerprint_milestone(
            self.spec, Path(self.base), code, previous, watched=watched, tools=tool_versions()
        )
        for line in uncovered:
            log(f"fingerprint: {line}")
        return fp

    def chain(
        self,
        codes: Sequence[int],
        resolve_image: Callable[[], str | None] | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> dict[int, MilestoneFingerprint]:
        """What every milestone of ``codes`` would record if the whole build ran now: each watch
        entry read once (an entry several milestones share, the same repository, is one read, so
        they agree), the worker's tools asked once. Reuse (build/reuse.py) compares it with what
        earlier builds recorded; each milestone that then runs computes its own again."""
        from airflow_provider_imagebuild.watch import watched_value

        read: dict[str, str] = {}
        watched: dict[int, dict[str, str]] = {}
        for code in codes:
            milestone = self.spec.milestones.get(code)
            for entry in milestone.watch if milestone else []:
                key = entry.model_dump_json()
                if key not in read:
                    value = watched_value(entry, resolve_image)
                    if value.problem:
                        log(f"watch {value.name} ({value.kind}) could not be read: {value.problem}; "
                            "nothing is reused past it")  # fmt: skip
                    read[key] = value.value
                watched.setdefault(code, {})[entry.name] = read[key]
        return pipeline_fingerprints(self.spec, Path(self.base), codes, watched=watched, tools=tool_versions())
