"""Editing a sample spec's YAML text in place, so that a generated spec keeps the sample's comments.

``imagebuild init`` starts from the shipped sample of the cloud: its notes (what each milestone
does, what the connection needs, why a setting is there) are most of what a team reads first. A
``yaml.safe_dump`` of the loaded sample throws them away, and no round-trip YAML library is a
dependency of the provider. The samples are written in a plain shape (block mappings at the top
and in ``target``, one key per line, flow collections on one line), so a value is replaced on its
own line: the key, its indentation and its trailing comment stay as they are. Every edit is
checked by loading the result and comparing the value at its key path, so a sample whose shape
this module cannot edit fails loudly instead of producing a wrong spec.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec.yaml_reader import load_yaml

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>(?: .*)?)$")
_PLAIN = re.compile(r"^[A-Za-z0-9_./@+~-][A-Za-z0-9_./@+~ -]*$")


def yaml_text(value: Any) -> str:
    """``value`` as YAML flow text on one line: plain where the spec loader reads it back as the same
    value, double-quoted otherwise (a placeholder's ``: `` or a version such as ``"12"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value == value.strip() and _reads_back(value):
            return value
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar
    if isinstance(value, dict):
        return "{" + ", ".join(f"{yaml_text(str(k))}: {yaml_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_text(v) for v in value) + "]"
    raise TypeError(f"no YAML text for {type(value).__name__}")


def _reads_back(value: str) -> bool:
    """A plain scalar both the spec loader (YAML 1.2) and YAML 1.1 readers (PyYAML, Ansible) read
    as the same string: ``yes`` or ``010`` stay quoted for the people who read the spec with those."""
    return load_yaml(f"v: {value}") == {"v": value} and yaml.safe_load(f"v: {value}") == {"v": value}


def _comment_start(rest: str) -> int:
    """Where a trailing ``# comment`` starts in the text after ``key:`` (-1: none), quotes respected."""
    quote = ""
    escaped = False
    for index, char in enumerate(rest):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'" and (index == 0 or rest[index - 1] in " [{,:"):
            quote = char
        elif char == "#" and (index == 0 or rest[index - 1] in " \t"):
            return index
    return -1


def _find(lines: list[str], path: list[str]) -> int | None:
    """The index of the line holding the block key ``path`` (None when the sample has no such key)."""
    stack: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _KEY_LINE.match(line)
        if found is None:
            continue
        indent = len(found["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, found["key"]))
        if [key for _, key in stack] == path:
            return index
    return None


def _block_end(lines: list[str], start: int) -> tuple[int, int]:
    """After the key line ``start``: the index where its block ends and its children's indentation."""
    indent = len(lines[start]) - len(lines[start].lstrip())
    child = indent + 2
    end = start + 1
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if not line.strip():
            continue
        own = len(line) - len(line.lstrip())
        if own <= indent:
            break
        if not line.lstrip().startswith("#") and child == indent + 2 and end == start + 1:
            child = own
        end = index + 1
    return end, child


def set_value(text: str, path: str, value: Any, keep_comment: bool = True) -> str:
    """``text`` with the value at the block key ``path`` (``target.source_image``) replaced by
    ``value``, its trailing comment kept unless ``keep_comment`` is false. A key the sample lacks
    is added at the end of its parent mapping (which must be there)."""
    lines = text.split("\n")
    parts = path.split(".")
    at = _find(lines, parts)
    if at is None:
        parent = _find(lines, parts[:-1]) if len(parts) > 1 else None
        if parent is None:
            raise InvalidInput(path, "the sample spec has no such key to fill in (has the sample changed?)")
        end, child = _block_end(lines, parent)
        lines.insert(end, f"{' ' * child}{parts[-1]}: {yaml_text(value)}")
        return _checked("\n".join(lines), path, value)
    found = _KEY_LINE.match(lines[at])
    assert found is not None  # _find matched it
    rest = found["rest"]
    comment_at = _comment_start(rest)
    comment = rest[comment_at:] if comment_at >= 0 and keep_comment else ""
    if comment:
        width = len(rest[:comment_at]) - len(rest[:comment_at].rstrip())
        comment = " " * max(width, 1) + comment
    lead = rest[: len(rest) - len(rest.lstrip())] or " "  # the sample's alignment (`5:  {...}`)
    lines[at] = f"{found['indent']}{found['key']}:{lead}{yaml_text(value)}{comment}"
    return _checked("\n".join(lines), path, value)


def value_at(data: Any, path: str) -> Any:
    """The value at ``path`` in loaded YAML (milestone codes are int keys); KeyError when missing."""
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, dict) and part.isdigit() and int(part) in data else data[part]
    return data


def _checked(text: str, path: str, value: Any) -> str:
    try:
        loaded = value_at(load_yaml(text), path)
    except Exception as exc:  # the edit broke the document: a shape this module cannot edit
        raise InvalidInput(path, f"cannot be set in the sample spec's text ({exc})") from None
    if loaded != value:
        raise InvalidInput(path, f"reads back as {loaded!r} instead of {value!r} from the sample spec's text")
    return text
