"""MkDocs hook: the spec reference pages, generated at build time from the pydantic models that
``imagebuild spec check`` and the DAG file validate with.

Written by hand, a key reference drifts from the code (the README's did); generated from the same
models, a key cannot exist without its row. One page holds the keys every pipeline shares
(``reference/spec/index.md``) and one page per cloud holds that cloud's ``target:`` keys
(``reference/spec/<cloud>.md``), each key as its full path (``target.boot.timeout``,
``milestones.<code>.action``, ``publish[].glance.visibility``) with its type, default, bounds and
description. A description is the field's ``description=`` (every spec field has one, checked by
``tests/spec/test_schema.py``; the JSON Schema carries the same text to editors); the comment beside
or above a field in the model's source, a guide's commented example and ``NOTES`` are fallbacks.
``tests/docs/test_docs.py`` walks the models on its own and checks the built pages name every key.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

SPEC_DIR = "reference/spec"
# Keys the common page leaves to the cloud pages (their model depends on ``cloud:``).
PER_CLOUD = "target"


@dataclass(frozen=True)
class Row:
    """One key of the reference: its path, type, default, bounds and what it is for."""

    path: str
    type: str
    default: str
    bounds: str
    description: str


def _models() -> tuple[type[BaseModel], dict[str, type[BaseModel]], tuple[str, ...]]:
    """The root model, each cloud's ``target:`` model, and the clouds (imported late: a hook
    module is loaded by MkDocs before the build, and an import error should name the package).
    A cloud's model is the one validation picks for a bare ``target:`` of that cloud, else the
    validator's table of models (where a bare target is refused)."""
    from pydantic import ValidationError

    from airflow_provider_imagebuild.build.ids import CLOUDS
    from airflow_provider_imagebuild.spec import pipeline as spec

    targets: dict[str, type[BaseModel]] = {}
    for cloud in CLOUDS:
        try:
            parsed = spec.PipelineSpec.model_validate({"pipeline": "p", "cloud": cloud, "image_type": "t"})
            targets[cloud] = type(parsed.target)
        except ValidationError:
            targets[cloud] = spec.TARGET_MODELS.get(cloud, spec.TargetSpec)
    return spec.PipelineSpec, targets, tuple(CLOUDS)


# --- field descriptions from the models' source comments ------------------------------------------

_FIELD_LINE = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*)\s*:")
_TRAILING = re.compile(r"#\s*(?P<text>[^#]*?)\s*(?:#.*)?$")


def _source_comments(model: type[BaseModel]) -> dict[str, str]:
    """``{field: comment}`` from the lines of the class that declares each field: the comment at
    the end of the field's line, else the comment lines right above it."""
    comments: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            lines = inspect.getsource(cls).splitlines()
        except (OSError, TypeError):
            continue
        above: list[str] = []
        for line in lines:
            stripped = line.strip()
            if line.startswith("    #") and not line.startswith("     "):
                above.append(stripped.lstrip("#").strip())
                continue
            found = _FIELD_LINE.match(line)
            if found and found["name"] in inspect.get_annotations(cls):
                trailing = _trailing_comment(line)
                text = trailing or " ".join(above)
                if text and "fmt:" not in text and "type:" not in text:
                    comments[found["name"]] = text
            above = []
    return comments


def _trailing_comment(line: str) -> str:
    """The comment closing a line of code, outside any string literal."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[i + 1 :].strip()
    return ""


# --- types, defaults, bounds ----------------------------------------------------------------------


def _strip_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def type_text(annotation: Any) -> str:
    """A type as a DAG author reads it: ``"bios" | "uefi" | false``, ``list of int``, ``mapping``."""
    annotation = _strip_none(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(_yaml(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args if a is not type(None))
    if origin is list:
        return f"list of {type_text(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {type_text(args[0])} to {type_text(args[1])}" if args else "mapping"
    if origin is typing.Annotated:
        return type_text(args[0])
    if _is_model(annotation):
        return "mapping"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", typing.Any: "any"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value else '""'
    return str(value)


def default_text(info: FieldInfo) -> str:
    """The default as YAML would write it; ``required`` when the key must be given."""
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(keys below)"
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v).strip('"') for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return _yaml(value)


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "at least", "max_length": "at most"}


def bounds_text(info: FieldInfo) -> str:
    """The numeric bounds and lengths pydantic checks (``>= 30, <= 7200``)."""
    parts: list[str] = []
    for item in info.metadata:
        for attr, word in _BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{word} {value}" + (" items" if "length" in attr else ""))
    return ", ".join(parts)


# --- walking the models ---------------------------------------------------------------------------


def _nested(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """``(suffix, model)`` for every model a field holds: ``""`` for a mapping of its own, ``[]``
    for a list's items, ``.<code>`` for a mapping's values."""
    annotation = _strip_none(annotation)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if _is_model(annotation):
        return [("", annotation)]
    if origin in (typing.Union, types.UnionType):
        return [item for a in args for item in _nested(a)]
    if origin is list and args:
        return [("[]" + s, m) for s, m in _nested(args[0])]
    if origin is dict and len(args) == 2:
        key = "<code>" if args[0] is int else "<name>"
        return [(f".{key}" + s, m) for s, m in _nested(args[1])]
    return []


def rows(
    model: type[BaseModel], prefix: str = "", skip: frozenset[str] = frozenset(), examples: dict[str, str] | None = None
) -> list[Row]:
    """Every key of ``model`` and of the models below it, depth first, each with its full path;
    ``examples``: notes from the guide's commented examples, for keys the model says nothing of."""
    examples = examples or {}
    comments = _source_comments(model)
    found: list[Row] = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        path = f"{prefix}.{name}" if prefix else name
        text = info.description or comments.get(name) or examples.get(path) or NOTES.get(path, "")
        found.append(Row(path, type_text(info.annotation), default_text(info), bounds_text(info), text))
        seen: set[type[BaseModel]] = set()
        for suffix, nested in _nested(info.annotation):
            if nested not in seen:
                seen.add(nested)
                found.extend(rows(nested, path + suffix, examples=examples))
    return found


# What a key is for where its model says nothing yet (a field's description= or comment wins).
NOTES = {
    "pipeline": "the pipeline's name; the DAG id is imagebuild_<pipeline> ('-' as '_') unless dag_id is given",
    "dag_id": "the DAG's id, instead of the one derived from pipeline",
    "cloud": "where the build runs; picks the target: model (one reference page per cloud)",
    "image_type": "what the image is for (base, webserver...): recorded with the build, in names and tags",
    "os": "the operating system's label (rhel-8.10, debian-12), recorded with the build",
    "description": "the DAG's description",
    "schedule": "a cron expression, a preset (@daily...), or null for manual runs only",
    "start_date": "the DAG's start date",
    "catchup": "Airflow's catchup: run the schedule's missed intervals",
    "store": "the state store's URL (sqlite:///..., dynamodb://..., s3://...); not with store_conn_id",
    "store_conn_id": "an imagebuild_state connection holding the store; neither: the deployment's default store",
    "defaults": "the retry policy of every milestone that does not set its own",
    "include_standard": "true: the whole catalog is the plan, milestones not listed run as no-ops",
    "tags": "the DAG's tags",
    "checkpoints": "milestones after which the build host is captured as a checkpoint image (10 always is)",
    "milestones": "the plan: milestone code -> what reaches it and how it is retried (0 and 100 are always in)",
    "milestones.<code>.action": "what reaches the milestone; packer, ansible, seal, publish work on the target",
    "milestones.<code>.key": "the task id's key (s042_<key>); required for a code outside the catalog",
    "milestones.<code>.title": "the task's display name",
    "milestones.<code>.command": "action command: an argv list, or a shell string",
    "milestones.<code>.env": "extra environment of the command",
    "milestones.<code>.cwd": "the command's working directory, relative to the spec's folder",
    "milestones.<code>.var_files": "packer: var files given after the provider's own",
    "milestones.<code>.vars": "packer: variables, passed in a var file only the worker can read",
    "milestones.<code>.only": "packer: -only (the template's builds to run)",
    "milestones.<code>.on_error": "packer: -on-error; abort keeps the instance and records it",
    "milestones.<code>.manifest": "packer: the manifest the template writes, read for the image ids",
    "milestones.<code>.extravars": "ansible: extra variables (passed in a file only the worker can read)",
    "publish[].name": "the destination's name in the outputs, when a kind appears twice",
    "publish[].target": "the target's own publish (a cloud's regions, gallery, family...)",
    "publish[].catalog": "the local target's image catalog",
    "publish[].glance": "an OpenStack Glance the image file is uploaded to (local target)",
    "publish[].vsphere_library": "a vSphere content library the image file is uploaded to (local target)",
    "notify.on": "the events that are sent",
    "notify.to": "who hears of them: each entry one of slack, sns, email, webhook",
    "notify.stuck_after": "a build is stuck after this many times its milestone's p90 duration",
    # target keys with one meaning wherever a cloud's model has them
    "target.source_image": "what the first packer (or bootstrap) milestone starts from",
    "target.ssh_user": "the user Ansible logs in to the build host as",
    "target.ssh_public_key": "the public key the build host accepts; without it each build makes a key pair",
    "target.ssh_private_key_file": "the private half of ssh_public_key, on the workers",
    "target.keep_checkpoints": "checkpoint images kept after the seal (a redo needs one); the others are deleted",
    "target.connection": "Ansible connection settings for the build host (a bastion; chroot in tests)",
    "target.aws_conn_id": "the Amazon provider's connection: credentials, region, endpoint",
    "target.region": "the EC2 region the build runs in (else the connection's)",
    "target.instance_type": "the build host's and Packer's instance type",
    "target.subnet_id": "the subnet build hosts are launched in",
    "target.security_group_ids": "security groups of the build host",
    "target.key_name": "an EC2 key pair for the build host",
    "target.publish_regions": "regions the final AMI is copied to",
    "target.share_accounts": "AWS accounts the final AMI and its copies are shared with",
    "target.ssm_parameter": "an SSM parameter written with the new image id in each region",
    "target.work_dir": "local: where build hosts (root filesystems) live ($IMAGEBUILD_WORK, /var/tmp/imagebuild)",
    "target.catalog": "local: the image catalog publish writes to ($IMAGEBUILD_CATALOG, /var/lib/imagebuild/catalog)",
}


_YAML_KEY = re.compile(r"^(?P<indent> *)(?:- )?(?P<key>[a-z_][a-z0-9_]*):(?P<rest>.*)$")


def example_notes(markdown: str) -> dict[str, str]:
    """``{key path: comment}`` from the commented YAML examples of a guide page: in
    ``target:\n  vm_size: Standard_D2s_v5   # the build host's size`` the note of ``target.vm_size``
    is the comment (comment lines right below it, aligned with it, continue it)."""
    notes: dict[str, str] = {}
    for block in re.findall(r"```yaml\n(.*?)```", markdown, flags=re.S):
        stack: list[tuple[int, str]] = []
        last = ""
        for line in block.splitlines():
            found = _YAML_KEY.match(line)
            if found is None:
                comment = line.strip()
                commented_key = re.match(r"#\s*(- )?[a-z_]+:", comment)  # a key left out, not a note
                if last and comment.startswith("#") and commented_key is None:
                    notes[last] += " " + comment.lstrip("#").strip()
                continue
            indent = len(found["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = ".".join([*(key for _, key in stack), found["key"]])
            stack.append((indent, found["key"]))
            text = _trailing_comment(found["rest"])
            last = path if text else ""
            if text:
                notes.setdefault(path, text)
    return notes


def _guide_notes(config: Any, guide: str) -> dict[str, str]:
    """The example notes of a hand-written guide page (``authors-guide/aws.md``), if it is there."""
    if config is None:
        return {}
    from pathlib import Path

    path = Path(config["docs_dir"]) / guide
    return example_notes(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(found: list[Row]) -> str:
    lines = ["| key | type | default | what it is |", "|---|---|---|---|"]
    for row in found:
        default = f"`{_cell(row.default)}`" if row.default not in ("required", "(keys below)") else row.default
        kind = f"{row.type}, {row.bounds}" if row.bounds else row.type
        lines.append(f"| `{_cell(row.path)}` | {_cell(kind)} | {default} | {_cell(row.description)} |")
    return "\n".join(lines) + "\n"


CLOUD_TITLES = {
    "aws": "AWS",
    "azure": "Azure",
    "gcp": "Google Cloud",
    "vsphere": "vSphere",
    "openstack": "OpenStack",
    "local": "the local target",
}
CLOUD_GUIDES = {
    "aws": "../../authors-guide/aws.md",
    "azure": "../../authors-guide/azure.md",
    "gcp": "../../authors-guide/gcp.md",
    "vsphere": "../../authors-guide/vsphere.md",
    "openstack": "../../authors-guide/openstack.md",
    "local": "../../authors-guide/local.md",
}


def common_page(config: Any = None) -> str:
    root, _, clouds = _models()
    links = ", ".join(f"[{CLOUD_TITLES.get(c, c)}]({c}.md)" for c in clouds)
    return (
        "# Spec reference: the keys every pipeline has\n\n"
        "Generated from the models `imagebuild spec check` and the DAG file validate with, so every key "
        "the code accepts is here and nothing else is: an unknown key is refused. A key's path is written "
        "in full: `milestones.<code>.action` is the `action` of any milestone, `publish[].glance` an entry "
        "of the `publish:` list. Durations are in seconds.\n\n"
        f"The `target:` keys depend on `cloud:` and have a page per cloud: {links}.\n\n"
        + table(rows(root, skip=frozenset({PER_CLOUD}), examples=_guide_notes(config, "authors-guide/index.md")))
    )


def cloud_page(cloud: str, config: Any = None) -> str:
    _, targets, _ = _models()
    model = targets[cloud]
    title = CLOUD_TITLES.get(cloud, cloud)
    guide = CLOUD_GUIDES.get(cloud)
    how = f" How these settings are used: [the DAG author's guide for {title}]({guide}).\n\n" if guide else "\n\n"
    return (
        f"# Spec reference: `target:` on {title} (`cloud: {cloud}`)\n\n"
        f"Generated from `{model.__name__}`, the model `spec check` validates a `cloud: {cloud}` spec's "
        "`target:` with; any other key there is refused. The keys every pipeline has are on "
        f"[the common page](index.md).{how}"
        + table(rows(model, "target", examples=_guide_notes(config, f"authors-guide/{cloud}.md")))
    )


def pages(config: Any = None) -> dict[str, str]:
    """``{path below docs/: markdown}`` of every generated spec page."""
    _, _, clouds = _models()
    generated = {f"{SPEC_DIR}/index.md": common_page(config)}
    for cloud in clouds:
        generated[f"{SPEC_DIR}/{cloud}.md"] = cloud_page(cloud, config)
    return generated


# What reaching each standard milestone means (the catalog in code has its key, title, phase and tool).
REACHED_WHEN = {
    0: "the build is registered: its id given, its parameters (cloud, image type, OS, regions) checked",
    5: "the OS installation has started on a fresh VM (installer, kickstart, preseed, or a vendor image)",
    10: "a minimal image boots: default user, SSH login with a key, network, sudo",
    15: "packages are up to date, base tools, time zone, locale and logging set, needless services off",
    20: "the cloud's own CLI and agents are in (AWS SSM and CloudWatch, Azure's VM agent, Google's Ops agent...)",
    25: "firewall, SELinux or AppArmor, patches, password policy, intrusion detection",
    30: "monitoring and log shipping agents configured, health checks, metrics",
    35: "the runtimes and clients the image type needs (Java, Python, Node, .NET, database clients)",
    40: "DNS, proxies, interfaces, VPN where needed",
    45: "partitions, LVM, mount points, cloud storage",
    50: "application users, sudo rules, extra SSH keys, LDAP or AD",
    55: "web or application servers, databases, caches installed",
    60: "applications or frameworks deployed",
    65: "environment-specific configuration and the wiring to a secrets manager",
    70: "smoke and integration tests pass on the build host",
    75: "kernel and service tuning applied",
    80: "backup agents and snapshot policy configured",
    85: "image description, tags, changelog and inventory records written",
    90: "security scan, compliance checks, benchmark, validation report",
    95: "temporary files, logs and build keys removed; the image captured",
    100: "the image is published where its users find it (regions, accounts, gallery, family) and announced",
}


def milestone_catalog() -> str:
    """The catalog table of the concepts page, from ``build.catalog.CATALOG``."""
    from airflow_provider_imagebuild.build.catalog import CATALOG

    lines = ["| code | task id | title | phase | usual tool | reached when |", "|---:|---|---|---|---|---|"]
    for code, m in CATALOG.items():
        lines.append(
            f"| {code} | `s{code:03d}_{m.key}` | {m.title} | {m.phase.value} | {m.tool} | "
            f"{REACHED_WHEN.get(code, '')} |"
        )
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: fill the generated tables hand-written pages ask for by a marker."""
    if "<!-- milestone-catalog -->" in markdown:
        markdown = markdown.replace("<!-- milestone-catalog -->", milestone_catalog())
    return markdown


def on_files(files: Any, config: Any) -> Any:
    """MkDocs event: add the generated pages to the build (they are never written into docs/)."""
    from mkdocs.structure.files import File

    for path, content in pages(config).items():
        files.append(File.generated(config, path, content=content))
    return files
