"""Every error of a spec, each where it stands: what ``imagebuild spec check`` prints like a compiler.

pydantic finds all the errors of a document in one pass, but names them by key path only, with
its own wording (``Extra inputs are not permitted``) and with the names of union members in the
path (``command.list[str]``). This module turns each into a ``SpecProblem``: the key path as the
spec writes it, a reason in the spec's words (an unknown key with the nearest known one, or the
other cloud's word for a setting: ``instance_type`` is ``vm_size`` on Azure) and, from the
positions the YAML loader kept, the line and column. Editors and CI parse the printed form
``FILE:LINE:COLUMN: key.path: message``.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from airflow_provider_imagebuild.spec.yaml_reader import Positions

# The error type a validator raises to report several problems at once (see ``problems_error``).
PROBLEMS = "imagebuild_spec_problems"

# Settings of one cloud that another cloud spells differently, where difflib finds nothing near:
# per cloud, the other clouds' word -> this cloud's key.
CLOUD_WORDS: dict[str, dict[str, str]] = {
    "aws": {
        "vm_size": "instance_type", "machine_type": "instance_type", "flavor": "instance_type",
        "location": "region", "zone": "region", "network": "subnet_id", "subnetwork": "subnet_id",
        "security_groups": "security_group_ids", "network_security_group": "security_group_ids",
        "replication_regions": "publish_regions", "copy_locations": "publish_regions",
        "share_with": "share_accounts", "share_with_projects": "share_accounts",
    },
    "azure": {
        "instance_type": "vm_size", "machine_type": "vm_size", "flavor": "vm_size",
        "region": "location", "zone": "location", "subnet_id": "network", "subnetwork": "network",
        "security_group_ids": "network_security_group", "security_groups": "network_security_group",
        "publish_regions": "replication_regions", "copy_locations": "replication_regions",
        "labels": "tags", "aws_conn_id": "azure_conn_id",
    },
    "gcp": {
        "instance_type": "machine_type", "vm_size": "machine_type", "flavor": "machine_type",
        "region": "zone", "location": "zone", "subnet_id": "subnetwork",
        "publish_regions": "copy_locations", "replication_regions": "copy_locations",
        "share_accounts": "share_with", "share_with_projects": "share_with", "tags": "labels",
        "aws_conn_id": "gcp_conn_id", "subscription_id": "project",
    },
    "openstack": {
        "instance_type": "flavor", "vm_size": "flavor", "machine_type": "flavor", "location": "region",
        "subnet_id": "network", "subnetwork": "network", "security_group_ids": "security_groups",
        "network_security_group": "security_groups", "share_accounts": "share_with_projects",
        "share_with": "share_with_projects", "tags": "properties", "labels": "properties",
        "aws_conn_id": "openstack_conn_id",
    },
    "vsphere": {
        "region": "datacenter", "location": "datacenter", "zone": "cluster", "source_image": "template",
        "subnet_id": "network", "subnetwork": "network", "tags": "publish_tags", "labels": "publish_tags",
        "aws_conn_id": "vsphere_conn_id", "gallery": "content_library",
    },
}  # fmt: skip


@dataclass(frozen=True)
class SpecProblem:
    """One error of a spec: the key path (empty: the whole file), the reason, and where it stands."""

    path: str
    reason: str
    line: int | None = None
    column: int | None = None

    def located(self, file: str) -> str:
        """``FILE:LINE:COLUMN: key.path: message``, the form editors and CI jump to."""
        where = f"{file}:{self.line}:{self.column}" if self.line is not None else file
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


def path_parts(path: str) -> tuple[str, ...]:
    """``milestones.45.command[0]`` -> ``("milestones", "45", "command", "0")``."""
    return tuple(re.findall(r"[^.\[\]]+", path))


def located(problems: Iterable[SpecProblem], positions: Positions | None) -> list[SpecProblem]:
    """The problems with their line and column, in the order they stand in the file."""
    placed = []
    for problem in problems:
        if positions is not None and problem.line is None:
            line, column = positions.of(path_parts(problem.path), key=problem.reason.startswith("unknown "))
            problem = replace(problem, line=line, column=column)
        placed.append(problem)
    return sorted(placed, key=lambda p: (p.line or 0, p.column or 0))


def problems_error(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """Raised by a validator that finds several problems (``(key path under the validated value,
    reason)`` each) at once, so that every one is reported rather than the first."""
    first = ": ".join(p for p in problems[0] if p)
    return PydanticCustomError(PROBLEMS, "{first}", {"first": first, "problems": problems})


class Refused:
    """A value a before-validator of the whole spec already refused, left in place of the value so
    that its field fails with these problems while pydantic goes on checking the other fields
    (raising in a before-validator would hide every other error of the spec)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems


def raise_refused(value: Any) -> Any:
    """A field's before-validator: the problems of a ``Refused`` value, else the value."""
    if isinstance(value, Refused):
        raise problems_error(value.problems)
    return value


def split_problem(text: str, fields: Iterable[str]) -> tuple[str, str]:
    """``milestones.45: reason`` -> ``("milestones.45", "reason")`` when the text starts with a key
    path under one of ``fields``; else ``("", text)``."""
    found = re.match(r"([A-Za-z_][A-Za-z0-9_]*)((?:\.[^.:\[\]]+|\[[0-9]+\])*): (.+)", text, re.DOTALL)
    if found and found[1] in set(fields):
        return found[1] + found[2], found[3]
    return "", text


def pydantic_problems(
    exc: ValidationError, raw: Any, model: type[BaseModel], models_at: ModelsAt, cloud: str, prefix: str = ""
) -> list[SpecProblem]:
    """Every error of ``exc`` (``model`` validating ``raw``) as problems, one per key path."""
    found: dict[str, SpecProblem] = {}
    for error in exc.errors():
        loc = _spec_loc(error["loc"], raw)
        base = ".".join([*([prefix] if prefix else []), *loc])
        if error["type"] == PROBLEMS:
            for path, reason in error["ctx"]["problems"]:
                full = ".".join(p for p in (base, path) if p)
                found.setdefault(full, SpecProblem(full, reason))
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = unknown_key(loc[-1], models_at(model, loc[:-1]), cloud, loc[:-1])
        elif error["type"] == "missing":
            message = "is required"
        elif error["type"] == "literal_error":
            message += _nearest_value(error)
        elif not loc:
            path, message = split_problem(message, model.model_fields)
            base = ".".join(p for p in (prefix, path) if p)
        found.setdefault(base, SpecProblem(base, message))
    return list(found.values())


def _spec_loc(loc: tuple[int | str, ...], raw: Any) -> tuple[str, ...]:
    """pydantic's location without the union members it names (``command.list[str].0`` ->
    ``command.0``): a part that is not a key or index of the data is dropped, unless it is the
    last one under a mapping (a missing or unknown key)."""
    parts: list[str] = []
    current: Any = raw
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, Mapping):
            key = next((k for k in current if str(k) == str(part)), _MISSING)
            if key is not _MISSING:
                parts.append(str(part))
                current = current[key]
                continue
            if last:
                parts.append(str(part))
            continue
        if isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            parts.append(str(part))
            current = current[part]
            continue
    return tuple(parts)


_MISSING = object()
ModelsAt = typing.Callable[[type[BaseModel], tuple[str, ...]], list[type[BaseModel]]]


def models_at(model: type[BaseModel], parts: tuple[str, ...]) -> list[type[BaseModel]]:
    """The models that may stand at ``parts`` under ``model`` (through lists, dicts, unions)."""
    current: list[Any] = [model]
    for part in parts:
        following: list[Any] = []
        for item in current:
            if isinstance(item, type) and issubclass(item, BaseModel):
                field = item.model_fields.get(part)
                if field is not None:
                    following.extend(_members(field.annotation))
            elif typing.get_origin(item) in (list, dict):  # an index or a mapping key
                following.extend(_members(typing.get_args(item)[-1]))
        current = following
    return [m for m in current if isinstance(m, type) and issubclass(m, BaseModel)]


def _members(annotation: Any) -> list[Any]:
    """A field's type with unions and ``Annotated`` opened: models, and list/dict types."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    if origin in (list, dict) or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return [annotation]
    return []


def unknown_key(key: str, models: list[type[BaseModel]], cloud: str, where: tuple[str, ...]) -> str:
    """``unknown key`` with the nearest known one, or this cloud's word for another cloud's key."""
    known = sorted({name for m in models for name in m.model_fields})
    word = CLOUD_WORDS.get(cloud, {}).get(key) if where in ((), ("target",)) else None
    if word and word in known:  # before difflib, which would find a look-alike of another meaning
        return f"unknown key for cloud {cloud}; {cloud} calls it {word!r}"
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if near:
        return f"unknown key; did you mean {near[0]!r}?"
    return "unknown key"


def _nearest_value(error: Any) -> str:
    """``; did you mean 'ansible'?`` for a misspelt choice (``ansble``), else nothing."""
    expected = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
    if error["type"] != "literal_error" or not isinstance(error.get("input"), str) or not expected:
        return ""
    near = difflib.get_close_matches(error["input"], expected, n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""
