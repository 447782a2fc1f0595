"""Request bodies checked against Azure's published REST descriptions (tests/servers/azure_specs/,
extracts of azure-rest-api-specs, sources in the README there), as Resource Manager checks them:
the JSON types, closed enums, ``required`` members, members the model does not have (Compute's
"Could not find member"), and the lengths and disallowed values the descriptions publish.

``readOnly`` members are accepted and ignored, as ARM does with what a GET returned.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPECS = Path(__file__).parent / "azure_specs"
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


@dataclass(frozen=True)
class Problem:
    """Why Resource Manager refuses a body: its error code and message (one line)."""

    code: str
    message: str


@functools.cache
def definitions(spec: str) -> dict[str, Any]:
    return dict(json.loads((SPECS / f"{spec}.json").read_text())["definitions"])


def _ref(spec: str, ref: str) -> dict[str, Any]:
    return dict(definitions(spec)[ref.rsplit("/", 1)[-1]])


def _flattened(spec: str, schema: dict[str, Any]) -> tuple[dict[str, Any], list[str], bool]:
    """A model's members, required members and openness, with its ``allOf`` parents merged in."""
    if "$ref" in schema:
        schema = _ref(spec, schema["$ref"])
    members: dict[str, Any] = {}
    required: list[str] = []
    open_model = bool(schema.get("x-imagebuild-open")) or (schema.get("type") == "object" and "properties" not in
                                                          schema and "allOf" not in schema)  # fmt: skip
    for parent in schema.get("allOf", []):
        more, needed, _ = _flattened(spec, parent)
        members.update(more)
        required += needed
    members.update(schema.get("properties", {}))
    required += schema.get("required", [])
    return members, required, open_model


def check(spec: str, model: str, body: Any) -> Problem | None:
    """The first reason ARM would refuse ``body`` as a ``model`` of ``spec``, or None."""
    return _check(spec, {"$ref": f"#/definitions/{model}"}, body, model, "")


def _check(spec: str, schema: dict[str, Any], value: Any, model: str, path: str) -> Problem | None:
    if "$ref" in schema:
        model = schema["$ref"].rsplit("/", 1)[-1]
        schema = _ref(spec, schema["$ref"])
    where = path or "(body)"
    kind = schema.get("type") or ("object" if "properties" in schema or "allOf" in schema else None)
    if kind and not (isinstance(value, JSON_TYPES[kind]) and not (kind in ("integer", "number") and
                                                                  isinstance(value, bool))):  # fmt: skip
        return Problem("InvalidRequestContent", f"Error converting value {value!r} to type '{kind}'. Path '{where}'.")
    if "enum" in schema and value not in schema["enum"]:
        return Problem("InvalidParameter", f"The value '{value}' of parameter '{where}' is not allowed. Allowed "
                                           f"values are: {', '.join(schema['enum'])}.")  # fmt: skip
    if isinstance(value, str):
        if value in schema.get("x-imagebuild-disallowed", []):
            return Problem("InvalidParameter", f"The value '{value}' of parameter '{where}' is not allowed.")
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            return Problem("InvalidParameter", f"The length of parameter '{where}' is out of range.")
    if kind == "array":
        for i, item in enumerate(value):
            found = _check(spec, schema.get("items", {}), item, model, f"{path}[{i}]")
            if found:
                return found
    if kind == "object":
        members, required, open_model = _flattened(spec, schema)
        for name in required:
            if value.get(name) is None:
                return Problem("InvalidParameter", f"Required parameter '{path + '.' if path else ''}{name}' is "
                                                   "missing (null).")  # fmt: skip
        for name, item in value.items():
            if name in members:
                if members[name].get("readOnly"):
                    continue
                found = _check(spec, members[name], item, model, f"{path + '.' if path else ''}{name}")
                if found:
                    return found
            elif not open_model and "additionalProperties" not in schema:
                return Problem(
                    "InvalidRequestContent",
                    f"The request content was invalid and could not be deserialized: 'Could not find member "
                    f"'{name}' on object of type '{model}'. Path '{path + '.' if path else ''}{name}'.'",
                )
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name, item in value.items():
                found = _check(spec, extra, item, model, f"{path}.{name}" if path else name)
                if found:
                    return found
    return None
