"""Reading a spec's YAML without YAML 1.1's surprises, duplicate keys or alias bombs.

PyYAML implements YAML 1.1, where ``050`` is octal 40, ``1:30`` is 90, ``no`` is False and
``2026-01-01`` a date; in a spec those turn milestone codes and names into other values without
a word. Specs are read with the YAML 1.2 core schema instead: integers are decimal digits,
booleans are ``true``/``false``, ``null``/``~`` is null, floats look like floats, and everything
else is a string (pydantic then refuses what has the wrong type, naming the key). A key given
twice in one mapping is an error with its line, not "the last one wins".

Anchors and aliases stay allowed (``<<: *defaults`` is handy), but the document is measured as
it would be once every alias is expanded: a "billion laughs" spec, a recursive alias or a spec
nested absurdly deep is refused before anything walks it (the DAG processor, pydantic, or
Airflow's scan of operator arguments would otherwise spend minutes on it). The file's size is
bounded too, so that a huge spec fails in milliseconds, not after parsing.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

MAX_SPEC_BYTES = 512 * 1024
MAX_NODES = 20_000  # after alias expansion; a large real spec has a few thousand
MAX_DEPTH = 40

# libyaml's parser: ~10x faster than the pure-Python one (the DAG processor reads every spec on
# every pass). ``yaml.CParser`` is not exported at the top: it lives in ``yaml._yaml``.
_Parser: Any = getattr(yaml, "__with_libyaml__", False) and importlib.import_module("yaml._yaml").CParser


class SpecResolver(BaseResolver):
    """The YAML 1.2 core schema's implicit types (plus ``<<`` merge keys).

    It also counts the nodes the parser makes (every node is resolved once), so that a document
    of too many values is refused while it is read, not after (a flat list of 150,000 values in
    the size limit would otherwise take seconds to compose)."""

    nodes = 0

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ComposerError(None, None, f"the spec holds more than {MAX_NODES} values; split it", None)
        return super().resolve(kind, value, implicit)


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^[-+]?[0-9]+$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
):
    SpecResolver.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


class SpecConstructor(SafeConstructor):
    """Safe construction with decimal integers and refused duplicate keys."""

    def construct_yaml_int(self, node: ScalarNode) -> int:
        value = str(self.construct_scalar(node))
        if not re.fullmatch(r"[-+]?[0-9]+", value):  # an explicit !!int such as 0x1F or 1_000
            raise ConstructorError(None, None, f"{value!r} is not a decimal integer", node.start_mark)
        return int(value, 10)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeConstructor reports it
            if first is not None:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"key {key!r} is given twice (first on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


SpecConstructor.add_constructor("tag:yaml.org,2002:int", SpecConstructor.construct_yaml_int)  # type: ignore[type-var]


def _expanded_size(node: Node, memo: dict[int, int], path: set[int], depth: int) -> int:
    """How many nodes ``node`` stands for with every alias expanded (shared nodes are counted as
    often as they are referenced, and measured once)."""
    ident = id(node)
    if ident in memo:
        return memo[ident]
    if ident in path:
        raise ConstructorError(None, None, "a recursive alias (an anchor used inside itself)", node.start_mark)
    if depth > MAX_DEPTH:
        raise ConstructorError(None, None, f"the spec is nested more than {MAX_DEPTH} levels deep", node.start_mark)
    size = 1
    if isinstance(node, (SequenceNode, MappingNode)):
        path.add(ident)
        children = node.value if isinstance(node, SequenceNode) else [n for pair in node.value for n in pair]
        for child in children:
            size += _expanded_size(child, memo, path, depth + 1)
            if size > MAX_NODES:
                raise ConstructorError(
                    None,
                    None,
                    f"the spec expands to more than {MAX_NODES} values (an alias bomb?); split it or drop the aliases",
                    node.start_mark,
                )
        path.discard(ident)
    memo[ident] = size
    return size


if _Parser:

    class _Loader(_Parser, SpecConstructor, SpecResolver):
        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            SpecConstructor.__init__(self)
            SpecResolver.__init__(self)

else:  # pragma: no cover - PyYAML without libyaml

    class _Loader(  # type: ignore[no-redef]
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        SpecConstructor,
        SpecResolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            SpecConstructor.__init__(self)
            SpecResolver.__init__(self)


# -- Positions: where each key and value stands, so every error names its line and column ------
Position = tuple[int, int]  # 1-based line and column, as editors and compilers print them


class Positions:
    """The line and column of every key and value of a loaded spec, by key path (``("milestones",
    "45", "action")``; list items by their index), so that an error pydantic finds in the data is
    printed where it stands in the file (``web.yaml:12:7: milestones.45.action: ...``)."""

    def __init__(self) -> None:
        self.keys: dict[tuple[str, ...], Position] = {}
        self.values: dict[tuple[str, ...], Position] = {(): (1, 1)}

    def add(self, node: Node, path: tuple[str, ...], seen: set[tuple[int, tuple[str, ...]]]) -> None:
        if (id(node), path) in seen:  # an alias met again at the same path
            return
        seen.add((id(node), path))
        self.values.setdefault(path, _position(node))
        if isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self.keys.setdefault((*path, str(index)), _position(item))
                self.add(item, (*path, str(index)), seen)
        elif isinstance(node, MappingNode):
            merged: list[Node] = []
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *defaults``: its keys stand here
                    merged.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
                    continue
                child = (*path, str(key_node.value))
                self.keys.setdefault(child, _position(key_node))
                self.add(value_node, child, seen)
            for source in merged:  # the mapping's own keys win, as they do in the data
                if isinstance(source, MappingNode):
                    for key_node, value_node in source.value:
                        child = (*path, str(key_node.value))
                        if child not in self.keys:
                            self.keys[child] = _position(key_node)
                            self.add(value_node, child, seen)

    def of(self, parts: tuple[str, ...], *, key: bool = False) -> Position:
        """Where ``parts`` stands: its key (an unknown key) or its value; a path the file does not
        hold (a missing key) stands at the nearest mapping that does."""
        for end in range(len(parts), -1, -1):
            prefix = parts[:end]
            if key and end == len(parts) and prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)


def _position(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def load_yaml_with_positions(text: str) -> tuple[Any, Positions]:
    """The document in ``text`` and where each of its keys and values stands (raises
    ``yaml.YAMLError`` with a mark on bad input)."""
    loader = _Loader(text)
    positions = Positions()
    try:
        node = loader.get_single_node()
        if node is None:
            return None, positions
        _expanded_size(node, {}, set(), 0)
        positions.add(node, (), set())
        return loader.construct_document(node), positions
    finally:
        loader.dispose()


def load_yaml(text: str) -> Any:
    """The document in ``text`` (raises ``yaml.YAMLError`` with a mark on bad input)."""
    return load_yaml_with_positions(text)[0]


# -- Placeholders: values a person must fill in before the spec is used --------------------------
# `imagebuild init` writes `<REPLACE: what to put here>` where the sample's value is one only the
# team knows (the vendor image, the account's network, the build key). The rule is generic, so it
# holds for every key of every cloud and for specs people copy by hand: any string value holding
# a placeholder refuses the spec, naming the key path and what to fill in.
PLACEHOLDER_RE = re.compile(r"<REPLACE:\s*(?P<what>[^<>]*?)\s*>")


def placeholders(data: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``(key.path, what)`` still to fill in ``data`` (a loaded spec), in document order."""
    found: list[tuple[str, str]] = []
    if isinstance(data, str):
        found.extend((path, m["what"] or "this value") for m in PLACEHOLDER_RE.finditer(data))
    elif isinstance(data, dict):
        for key, value in data.items():
            found.extend(placeholders(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found.extend(placeholders(item, f"{path}.{index}" if path else str(index)))
    return found


def unfilled(data: Any) -> tuple[str, str] | None:
    """The first placeholder of ``data`` as ``(key.path, reason)``, the others named in the reason;
    None when every value is filled in."""
    found = placeholders(data)
    if not found:
        return None
    (path, what), *more = found
    also = f" (also to fill in: {', '.join(p for p, _ in more)})" if more else ""
    return path, f"fill in {what}{also}"
