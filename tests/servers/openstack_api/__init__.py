"""What Nova and Glance refuse, from their own published sources: the fake (tests/servers/openstack.py)
checks every request body against these before it acts, so that a client sending what a real cloud
refuses fails here too.

Neither service publishes an OpenAPI description; their request schemas are Python in their source
trees, so the two JSON files beside this module are extracted mechanically from them (source path
and commit in each file's ``$comment``):

- ``nova-server-schemas.json``: POST /servers (microversions 2.1-2.18, what gophercloud sends
  without a microversion header; 2.94 and later, what openstacksdk negotiates) and the
  ``createImage`` action. Nova validates with a Draft 4 validator and answers 400
  ``Invalid input for field/attribute <field>. Value: <value>. <reason>``
  (nova/api/validation/validators.py), or ``An invalid 'name' value was provided...`` for names.
- ``glance-image-schema.json``: the image schema Glance validates create bodies and each PATCH
  change with (glance/api/v2/images.py), answering 400 ``Provided object does not match schema
  'image': <reason>`` (glance/schema.py, glance/common/exception.py InvalidObject).

Rules that are code rather than schema, each from the file named:

- Glance: a custom property name longer than 255 characters is 400 (images.py
  ``_get_request_body``, LP #1737952); ``os_glance_*`` properties are reserved, 403 ``Attribute
  '<key>' is reserved.``; read-only attributes are 403 ``Attribute '<key>' is read-only.``;
  ``visibility: public`` needs the ``publicize_image`` policy, admin by default
  (glance/policies/image.py), else 403 ``You are not authorized to complete publicize_image
  action.`` (glance/common/exception.py Forbidden).
- Nova: a security group the project does not have is 400 ``Security group <name> not found.``
  (nova/api/openstack/compute/servers.py maps SecurityGroupNotFound to HTTPBadRequest); a key pair
  the user does not have is 400 ``Invalid key_name provided.``; without ``security_groups`` a
  server gets the project's ``default`` group.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from pathlib import Path
from typing import Any

import jsonschema

HERE = Path(__file__).parent
PUBLICIZE_REFUSED = "You are not authorized to complete publicize_image action."
RESERVED_PREFIX = "os_glance_"


@functools.cache
def _nova() -> dict[str, Any]:
    return dict(json.loads((HERE / "nova-server-schemas.json").read_text()))


@functools.cache
def glance_image_schema() -> dict[str, Any]:
    return dict(json.loads((HERE / "glance-image-schema.json").read_text()))


def _printable(char: str) -> bool:
    """nova/api/validation/parameter_types.py ``_is_printable``: not a control or format character,
    not a line or paragraph separator (a horizontal space is printable); only the Basic Multilingual
    Plane is in Nova's ranges."""
    category = unicodedata.category(char)
    return ord(char) < 0xFFFF and not category.startswith("C") and (not category.startswith("Z") or category == "Zs")


def valid_nova_name(value: object) -> bool:
    """Nova's ``name`` format: printable characters, not starting or ending with whitespace (an empty
    string passes here; ``minLength`` refuses it)."""
    if not isinstance(value, str):
        return False
    if not all(_printable(c) for c in value):
        return False
    ends = (value[:1], value[-1:])
    return not any(c and (c.isspace() or unicodedata.category(c) == "Zs") for c in ends)


_FORMATS = jsonschema.FormatChecker()
_FORMATS.checks("name")(valid_nova_name)


@_FORMATS.checks("uuid")
def _uuid(value: object) -> bool:
    import uuid

    if not isinstance(value, str):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _microversion_schema(micro: tuple[int, ...]) -> str:
    if micro < (2, 19):
        return "create"
    if micro >= (2, 94):
        return "create_v294"
    raise LookupError(f"fake: Nova's create schema for {'.'.join(map(str, micro))} is not kept (2.1-2.18, 2.94+)")


def _nova_problem(name: str, body: Any) -> str | None:
    doc = _nova()
    validator = jsonschema.Draft4Validator({**doc, "$ref": f"#/{name}"}, format_checker=_FORMATS)
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is None:
        return None
    if error.validator == "format" and error.validator_value == "name":
        return (
            "An invalid 'name' value was provided. The name must be: printable characters. "
            "Can not start or end with whitespace."
        )
    if error.path:
        return f"Invalid input for field/attribute {error.path[-1]}. Value: {error.instance}. {error.message}"
    return str(error.message)


def server_create_problem(body: Any, micro: tuple[int, ...]) -> str | None:
    """Why Nova refuses a POST /servers body at ``micro`` (400), or None."""
    try:
        schema = _microversion_schema(micro)
    except LookupError as exc:
        return str(exc)
    return _nova_problem(schema, body)


def create_image_problem(body: Any) -> str | None:
    """Why Nova refuses a ``createImage`` action body (400), or None."""
    return _nova_problem("create_image", body)


def glance_problem(values: dict[str, Any]) -> tuple[int, str] | None:
    """Why Glance refuses image attributes (a create body, or one PATCH change as ``{key: value}``):
    (status, message), or None."""
    schema = glance_image_schema()
    for key in values:
        if key not in schema["properties"] and len(key) > 255:
            return 400, "Custom property should not be greater than 255 characters."
        if key.startswith(RESERVED_PREFIX):
            return 403, f"Attribute '{key}' is reserved."
    error = jsonschema.exceptions.best_match(jsonschema.Draft4Validator(schema).iter_errors(values))
    if error is None:
        return None
    return 400, f"Provided object does not match schema 'image': {error.message}"
