"""A loopback fake of the Compute Engine REST API (v1), for the Google Cloud target's tests.

Compute Engine cannot run here, so this fakes it at the HTTP boundary; the tests drive it with
the real ``google-api-python-client`` (its discovery-based ``compute`` v1 client) and real
``google-auth`` service account credentials, whose token request goes to this server's
``/token`` as ``token_uri``. Every request is matched to its method in the ``compute.v1.json``
discovery document shipped inside ``google-api-python-client`` (revision 20261106 in the version
pinned here: ``googleapiclient/discovery_cache/documents/compute.v1.json``) and refused with a 400,
as Compute Engine refuses it, when it breaks a rule that document publishes:

- path parameters against their ``pattern`` (whole: the client checks only a prefix with
  ``re.match``, so ``abc-`` or a 64-character name pass it), query parameters against their type,
  ``minimum`` and the documented range (``maxResults`` "0 to 500, inclusive");
- the body against the method's request schema: unknown fields, types, ``enum`` values, the
  ``pattern`` of a property (``Image.name``, ``Instance.name``...), fields whose
  ``annotations.required`` names the method (``Image.name`` for ``compute.images.insert``), and
  ``Image.family``, which "must comply with RFC1035";
- labels, by Compute Engine's "Requirements for labels" (cloud.google.com/compute/docs/labeling-
  resources, not in the discovery document): at most 64, keys ``[a-z][a-z0-9_-]{0,62}``, values
  ``[a-z0-9_-]{0,63}`` (the ASCII part: international lowercase letters are allowed too).

List methods page as documented: at most ``maxResults`` items (default 500) and a
``nextPageToken`` while more remain. Responses follow the resources' schemas in the same
document: Instance, Image, Operation (zone and global, polled through ``operations.wait``),
Policy, DeprecationStatus, and the error shape ``{"error": {"code", "message", "errors":
[{"reason"}]}}``.

``images.insert`` takes exactly one source (the ``Image.sourceImage`` description: "you must
provide the full or partial URL of one of the following: rawDisk.source, sourceDisk, sourceImage,
sourceSnapshot"), a ``sourceImage`` in one of the two formats it lists (a full URL or
``projects/P/global/images/N``) naming an image that exists and is READY ("An image can be used to
create other resources ... only after ... the status is set to READY"); the new image takes the
source's ``diskSizeGb`` and says where it came from in ``sourceImage`` and ``sourceImageId``. Fields
the schema marks ``readOnly`` (``status``, ``id``, ``sourceImageId``...) are output only: a request
cannot set them. ``requestId`` (any mutating method) must be a UUID other than the zero UUID, and a
request repeated with the same one gets the first one's answer and does nothing again ("the server
will know to ignore the request if it has already been completed").

``images.get`` and ``images.getFromFamily`` read other projects' images too (``foreign``: a public
image project such as ``rhel-cloud``); getFromFamily answers the family's latest image not
deprecated, or 404.

``instances.getSerialPortOutput`` answers the last 1 MB of port 1 as documented (``start``,
``next``, a negative ``start`` counting back from the end); what the port shows is
``guest_console``, the serial console file of the stand-in guest (a local qemu VM of the same
image), or nothing: the fake runs no guest of its own. Port 2 to 4 are empty (only port 1 is
enabled by default; the others need ``serial-port-enable``).

What it does not do: run anything (the "instance" is a chroot tree the playbooks run in, or a
stand-in guest), bill, or enforce quotas. Operations finish at once; ``wait`` returns them done,
except what a test makes fail: ``failing`` (the operation ends in an error, the image FAILED),
``stalled`` (the operation never finishes: ``wait`` returns it RUNNING, as Compute Engine's does
after two minutes, and the image stays PENDING), and :class:`Fault` (an HTTP error instead of the
answer, or after the request was carried out: an answer lost on the way).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.http_fake import serving_http

PROJECT = "imagebuild-test"
ZONE = "europe-west1-b"
MAX_RESULTS = 500  # images.list maxResults: "Acceptable values are 0 to 500, inclusive. (Default: 500)"
RFC1035 = "[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
MAX_LABELS = 64
SERIAL_BUFFER = 1024 * 1024  # getSerialPortOutput: "the last 1 MB of serial port output"
# requestId: "must be a valid UUID with the exception that zero UUID is not supported"
REQUEST_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ZERO_UUID = "00000000-0000-0000-0000-000000000000"
# Image.sourceImage: "https://www.googleapis.com/compute/v1/projects/project_id/global/images/image_name"
# or "projects/project_id/global/images/image_name" (any host: the fake's own links are its URL's)
SOURCE_IMAGE = re.compile(r"(?:https?://[^/]+/compute/v1/)?projects/(?P<project>[^/]+)/global/images/(?P<name>[^/]+)")
IMAGE_SOURCES = ("rawDisk", "sourceDisk", "sourceImage", "sourceSnapshot")


@cache
def discovery() -> dict[str, Any]:
    import googleapiclient

    path = Path(googleapiclient.__file__).parent / "discovery_cache/documents/compute.v1.json"
    return dict(json.loads(path.read_text()))


@cache
def methods() -> list[tuple[str, re.Pattern[str], str, dict[str, Any]]]:
    """(HTTP method, path regex, resource.method, method) of every discovery method; the regex
    captures the path parameters by name."""
    found = []

    def walk(resources: dict[str, Any]) -> None:
        for rname, resource in resources.items():
            for mname, method in (resource.get("methods") or {}).items():
                # paths hold letters, '/' and {params} ({+param} in a few: not ours)
                pattern = re.sub(r"\{\+?([A-Za-z_]+)\}", r"(?P<\1>[^/]+)", method["path"])
                found.append((method["httpMethod"], re.compile(f"^{pattern}$"), f"{rname}.{mname}", method))
            walk(resource.get("resources") or {})

    walk(discovery()["resources"])
    return found


def check_parameters(method: dict[str, Any], path: dict[str, str], query: dict[str, list[str]]) -> str | None:
    """Why the path and query parameters break the method's published parameters, or None."""
    parameters = method.get("parameters") or {}
    system = discovery().get("parameters") or {}  # alt, fields, prettyPrint...: any method takes them
    for name, value in path.items():
        pattern = parameters[name].get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            return f"{name}: {value!r} does not match {pattern}"
    for name, values in query.items():
        spec = parameters.get(name) or system.get(name)
        if spec is None or spec.get("location") != "query":
            return f"unknown parameter {name!r}"
        value = values[-1]
        if spec.get("type") == "integer":
            if not re.fullmatch(r"-?[0-9]+", value):
                return f"{name}: {value!r} is not an integer"
            if "minimum" in spec and int(value) < int(spec["minimum"]):
                return f"{name}: {value} is below {spec['minimum']}"
            if "maximum" in spec and int(value) > int(spec["maximum"]):
                return f"{name}: {value} is above {spec['maximum']}"
            if name == "maxResults" and int(value) > MAX_RESULTS:
                return f"maxResults: {value} is not 0 to {MAX_RESULTS}"
        if spec.get("format") == "int64" and not re.fullmatch(r"-?[0-9]+", value):  # int64 travels as a string
            return f"{name}: {value!r} is not an integer"
        if spec.get("type") == "boolean" and value not in ("true", "false"):
            return f"{name}: {value!r} is not a boolean"
        if "enum" in spec and value not in spec["enum"]:
            return f"{name}: {value!r} is not one of {spec['enum']}"
        if name == "requestId" and (not REQUEST_ID.fullmatch(value) or value == ZERO_UUID):
            return f"requestId: {value!r} is not a valid UUID (the zero UUID is not supported)"
    return None


@cache
def output_only(schema: str) -> frozenset[str]:
    """The properties of ``schema`` the discovery document marks ``readOnly`` (output only)."""
    properties = discovery()["schemas"][schema].get("properties") or {}
    return frozenset(k for k, v in properties.items() if v.get("readOnly"))


def check_labels(labels: dict[str, Any], where: str) -> str | None:
    """Compute Engine's requirements for labels (see the module's docstring)."""
    if len(labels) > MAX_LABELS:
        return f"{where}: {len(labels)} labels, at most {MAX_LABELS}"
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key):
            return f"{where}: label key {key!r} is not [a-z][a-z0-9_-]{{0,62}}"
        if not isinstance(value, str) or not LABEL_VALUE.fullmatch(value):
            return f"{where}.{key}: label value {value!r} is not [a-z0-9_-]{{0,63}}"
    return None


def check(value: Any, schema: dict[str, Any], where: str, method: str = "") -> str | None:
    """Why ``value`` does not fit the discovery ``schema`` as a request of ``method``
    (``compute.images.insert``: its required fields), or None."""
    schemas = discovery()["schemas"]
    if "$ref" in schema:
        schema = schemas[schema["$ref"]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return f"{where}: expected an object"
        properties, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        for key, spec in properties.items():
            if method in (spec.get("annotations") or {}).get("required", []) and value.get(key) is None:
                return f"{where}.{key}: required for {method}"
        if isinstance(value.get("labels"), dict) and "labels" in properties:
            problem = check_labels(value["labels"], f"{where}.labels")
            if problem:
                return problem
        for key, item in value.items():
            if key in properties:
                problem = check(item, properties[key], f"{where}.{key}", method)
            elif extra:
                problem = check(item, extra, f"{where}.{key}", method)
            else:
                problem = f"{where}: unknown field {key!r}"
            if problem:
                return problem
        return None
    if kind == "array":
        if not isinstance(value, list):
            return f"{where}: expected a list"
        for i, item in enumerate(value):
            problem = check(item, schema.get("items") or {}, f"{where}[{i}]", method)
            if problem:
                return problem
        return None
    if kind == "string":
        if schema.get("format") in ("int64", "uint64") and isinstance(value, int) and not isinstance(value, bool):
            return None
        if not isinstance(value, str):
            return f"{where}: expected a string"
        if "enum" in schema and value not in schema["enum"]:
            return f"{where}: {value!r} is not one of {schema['enum'][:8]}"
        # Image.family "must comply with RFC1035" (its description; no pattern is published for it)
        pattern = schema.get("pattern") or (RFC1035 if where == "Image.family" else None)
        if pattern and not re.fullmatch(pattern, value):
            return f"{where}: {value!r} does not match {pattern}"
        return None
    if kind == "integer":
        return None if isinstance(value, int) and not isinstance(value, bool) else f"{where}: expected an integer"
    if kind == "boolean":
        return None if isinstance(value, bool) else f"{where}: expected a boolean"
    if kind == "number":
        return (
            None if isinstance(value, (int, float)) and not isinstance(value, bool) else f"{where}: expected a number"
        )
    return None


def _error(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "errors": [{"reason": reason, "message": message}]}}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())


@dataclass
class Fault:
    """Answer the next ``times`` requests of ``method`` (``images.insert``...) with ``status``."""

    method: str
    status: int = 429
    reason: str = "rateLimitExceeded"
    times: int = 1
    processed: bool = False  # the request is carried out first, its answer lost: the client sees ``status``


@dataclass
class FakeGce:
    project: str = PROJECT
    zone: str = ZONE
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    disks: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    failing: list[str] = field(default_factory=list)  # methods whose next operation ends in an error
    stalled: list[str] = field(default_factory=list)  # methods whose next operation never finishes
    answered: dict[str, tuple[int, Any]] = field(default_factory=dict)  # requestId -> the first answer
    calls: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # requests the schema check refused
    pages: int = 0  # list pages served
    guest_console: Path | None = None  # what every instance's serial port 1 shows (the stand-in guest's)
    foreign: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # other projects' images
    url: str = ""
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._stalled_ops: set[str] = set()

    # -- test controls -----------------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"{self.url}/compute/v1/projects/{self.project}"

    def add_image(self, name: str, labels: dict[str, str] | None = None, family: str | None = None) -> dict[str, Any]:
        """An image that exists before the test (a vendor image, or one Packer made)."""
        with self.lock:
            image = {"kind": "compute#image", "id": str(next(self._ids)), "name": name, "status": "READY",
                     "selfLink": f"{self.base}/global/images/{name}", "creationTimestamp": _now(),
                     "labels": dict(labels or {}), "labelFingerprint": uuid.uuid4().hex[:12],
                     "diskSizeGb": "20"}  # fmt: skip
            if family:
                image["family"] = family
            self.images[name] = image
            return image

    def add_foreign_image(self, project: str, name: str, family: str | None = None) -> dict[str, Any]:
        """An image of another project (a public image project such as ``rhel-cloud``), which
        images.get and images.getFromFamily read there; this project's lists never show it."""
        with self.lock:
            image = {"kind": "compute#image", "id": str(next(self._ids)), "name": name, "status": "READY",
                     "selfLink": f"{self.url}/compute/v1/projects/{project}/global/images/{name}",
                     "creationTimestamp": _now(), "labels": {}, "labelFingerprint": uuid.uuid4().hex[:12],
                     "diskSizeGb": "20", **({"family": family} if family else {})}  # fmt: skip
            self.foreign.setdefault(project, {})[name] = image
            return image

    def remove_instance(self, name: str) -> None:
        """The instance vanishes (deleted by someone, preempted and reclaimed) with its boot disk."""
        with self.lock:
            self.instances.pop(name, None)
            self.disks.pop(name, None)

    def fail_next(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    # -- HTTP ------------------------------------------------------------------------------------
    def handle(self, method: str, raw: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        parts = urlsplit(raw)
        path, query = parts.path, parse_qs(parts.query)
        with self.lock:
            if path == "/token" and method == "POST":
                return 200, {
                    "access_token": f"fake-gce-token-{uuid.uuid4().hex[:8]}",
                    "expires_in": 3600,
                    "token_type": "Bearer",
                }
            if not headers.get("authorization", "").startswith("Bearer fake-gce-token-"):
                return 401, _error(401, "required", "Request is missing required authentication credential.")
            relative = path.removeprefix("/compute/v1/")
            matches = ((name, m, rx.match(relative)) for verb, rx, name, m in methods() if verb == method)
            match = next(((name, m, found) for name, m, found in matches if found), None)
            if match is None:
                return 404, _error(404, "notFound", f"no method for {method} {path}")
            name, spec, found = match
            self.calls.append(name)
            payload = json.loads(body) if body else None
            problem = check_parameters(spec, found.groupdict(), query)
            if problem is None and "request" in spec:
                problem = (
                    "missing request body"
                    if payload is None
                    else check(payload, spec["request"], spec["request"]["$ref"], spec["id"])
                )
            if problem:
                self.refused.append(f"{name}: {problem}")
                return 400, _error(400, "invalid", f"Invalid value: {problem}")
            fault = next((f for f in self.faults if f.method == name), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                if not fault.processed:
                    return fault.status, _error(fault.status, fault.reason, "Injected by the test.")
            request_id = (query.get("requestId") or [""])[-1]
            if request_id in self.answered:  # done already: the first answer, nothing done again
                status, answer = self.answered[request_id]
                return status, self.operations.get(str(answer.get("name")), answer) if status == 200 else answer
            handler = getattr(self, "_" + name.replace(".", "_"), None)
            if handler is None:
                return 501, _error(501, "notImplemented", f"the fake does not implement {name}")
            segments = relative.split("/")
            status, answer = handler(segments, query, payload)
            if request_id and status == 200:
                self.answered[request_id] = (status, answer)
            if fault is not None:  # carried out, the answer lost
                return fault.status, _error(fault.status, fault.reason, "Injected by the test (after the request).")
            return status, answer

    # operations
    def _operation(self, kind: str, target: str, zone: bool, error: str | None = None) -> tuple[int, Any]:
        op_name = f"operation-{uuid.uuid4().hex[:16]}"
        where = f"zones/{self.zone}" if zone else "global"
        op: dict[str, Any] = {
            "kind": "compute#operation", "id": str(next(self._ids)), "name": op_name, "operationType": kind,
            "status": "RUNNING", "progress": 0, "targetLink": target, "insertTime": _now(), "startTime": _now(),
            "selfLink": f"{self.base}/{where}/operations/{op_name}",
        }  # fmt: skip
        if zone:
            op["zone"] = f"{self.base}/zones/{self.zone}"
        if error:
            op["error"] = {"errors": [{"code": error, "message": "Injected: the operation failed."}]}
        self.operations[op_name] = op
        return 200, op

    def _finish(self, segments: list[str], query: Any = None, body: Any = None) -> tuple[int, Any]:
        op = self.operations.get(segments[-2] if segments[-1] == "wait" else segments[-1])
        if op is None:
            return 404, _error(404, "notFound", "operation not found")
        if op["name"] in self._stalled_ops:
            return 200, op  # wait's two minutes are up: still RUNNING
        op.update(status="DONE", progress=100, endTime=_now())
        return 200, op

    _zoneOperations_wait = _zoneOperations_get = _globalOperations_wait = _globalOperations_get = _finish

    def _failure(self, name: str) -> str | None:
        if name in self.failing:
            self.failing.remove(name)
            return "INTERNAL_ERROR"
        return None

    def _stalls(self, name: str) -> bool:
        if name in self.stalled:
            self.stalled.remove(name)
            return True
        return False

    # instances
    def _instances_insert(self, segments: list[str], query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        name = body["name"]
        if name in self.instances:
            return 409, _error(409, "alreadyExists", f"The resource '{name}' already exists")
        boot = body["disks"][0]
        source = str(boot.get("initializeParams", {}).get("sourceImage", "")).rsplit("/", 1)[-1]
        image = self.images.get(source)
        if image is None or image.get("status") != "READY":
            return 400, _error(
                400, "invalid", f"The resource 'projects/{self.project}/global/images/{source}' was not found"
            )
        disk = f"{self.base}/zones/{self.zone}/disks/{name}"
        self.disks[name] = {"name": name, "sourceImage": image["selfLink"], "selfLink": disk}
        nics = []
        for i, nic in enumerate(body.get("networkInterfaces") or []):
            found = {**nic, "name": f"nic{i}", "networkIP": f"10.128.0.{next(self._ids) % 250 + 2}"}
            for config in found.get("accessConfigs") or []:
                config["natIP"] = f"203.0.113.{next(self._ids) % 250 + 2}"
            nics.append(found)
        instance = {
            **body, "kind": "compute#instance", "id": str(next(self._ids)), "status": "RUNNING",
            "zone": f"{self.base}/zones/{self.zone}", "selfLink": f"{self.base}/zones/{self.zone}/instances/{name}",
            "creationTimestamp": _now(), "networkInterfaces": nics,
            "disks": [{**boot, "source": disk, "deviceName": "persistent-disk-0", "type": "PERSISTENT"}],
        }  # fmt: skip
        instance["disks"][0].pop("initializeParams", None)
        self.instances[name] = instance
        return self._operation("insert", instance["selfLink"], True)

    def _instances_get(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        found = self.instances.get(segments[-1])
        if found is None:
            return 404, _error(404, "notFound", f"The resource 'instances/{segments[-1]}' was not found")
        return 200, found

    def _instances_getSerialPortOutput(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        found = self.instances.get(segments[-2])
        if found is None:
            return 404, _error(404, "notFound", f"The resource 'instances/{segments[-2]}' was not found")
        port = int((query.get("port") or ["1"])[0])
        raw = b""
        if port == 1 and self.guest_console is not None and self.guest_console.exists():
            raw = self.guest_console.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        first = max(len(text) - SERIAL_BUFFER, 0)  # older output is discarded
        start = int((query.get("start") or ["0"])[0])
        start = max(len(text) + start, first) if start < 0 else max(start, first)
        contents = text[start:]
        link = f"{found['selfLink']}/serialPort?port={port}"
        return 200, {"kind": "compute#serialPortOutput", "contents": contents, "start": str(start),
                     "next": str(start + len(contents)), "selfLink": link}  # fmt: skip

    def _instances_delete(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        found = self.instances.pop(segments[-1], None)
        if found is None:
            return 404, _error(404, "notFound", f"The resource 'instances/{segments[-1]}' was not found")
        if found["disks"][0].get("autoDelete"):
            self.disks.pop(segments[-1], None)
        return self._operation("delete", found["selfLink"], True)

    def _power(self, segments: list[str], status: str) -> tuple[int, Any]:
        found = self.instances.get(segments[-2])
        if found is None:
            return 404, _error(404, "notFound", f"The resource 'instances/{segments[-2]}' was not found")
        found["status"] = status
        return self._operation(segments[-1], found["selfLink"], True)

    def _instances_stop(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        return self._power(segments, "TERMINATED")

    def _instances_start(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        return self._power(segments, "RUNNING")

    # images
    def _images_insert(self, segments: list[str], query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        name = body["name"]
        if name in self.images:
            return 409, _error(
                409, "alreadyExists", f"The resource 'projects/{self.project}/global/images/{name}' already exists"
            )
        sources = [k for k in IMAGE_SOURCES if body.get(k)]
        if len(sources) != 1:
            return 400, _error(400, "invalid", f"exactly one of {', '.join(IMAGE_SOURCES)} is required, not {sources}")
        source_disk = str(body.get("sourceDisk", "")).rsplit("/", 1)[-1]
        source: dict[str, Any] = {}
        if body.get("sourceDisk"):
            if source_disk not in self.disks:
                return 400, _error(400, "invalid", f"The resource 'disks/{source_disk}' was not found")
            if self.instances.get(source_disk, {}).get("status") == "RUNNING" and not query.get("forceCreate"):
                return 400, _error(
                    400,
                    "resourceInUseByAnotherResource",
                    f"The disk resource '{source_disk}' is already being used by a running instance",
                )
        elif body.get("sourceImage"):
            link = SOURCE_IMAGE.fullmatch(str(body["sourceImage"]))
            if link is None:
                return 400, _error(
                    400, "invalid", f"Invalid value for field 'resource.sourceImage': {body['sourceImage']!r}"
                )
            found = self.images.get(link["name"]) if link["project"] == self.project else None
            if found is None:
                return 400, _error(
                    400,
                    "invalid",
                    f"The resource 'projects/{link['project']}/global/images/{link['name']}' was not found",
                )
            if found.get("status") != "READY":
                return 400, _error(400, "resourceNotReady", f"The resource '{found['selfLink']}' is not ready")
            source = {"sourceImage": found["selfLink"], "sourceImageId": found["id"], "diskSizeGb": found["diskSizeGb"]}
        else:
            return 400, _error(400, "invalid", f"the fake does not implement an image from {sources[0]}")
        image = self.add_image(name, body.get("labels"), body.get("family"))
        ignored = output_only("Image") | {"labels"}
        image.update({k: v for k, v in body.items() if k not in ignored}, **source)
        error = self._failure("images.insert")
        if error:
            image["status"] = "FAILED"
        stalled = not error and self._stalls("images.insert")
        if stalled:
            image["status"] = "PENDING"
        status, op = self._operation("insert", image["selfLink"], False, error)
        if stalled:
            self._stalled_ops.add(op["name"])
        return status, op

    def _images_get(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        found = self._project_images(segments[1]).get(segments[-1])
        if found is None:
            return 404, _error(
                404, "notFound", f"The resource 'projects/{segments[1]}/global/images/{segments[-1]}' was not found"
            )
        return 200, found

    def _project_images(self, project: str) -> dict[str, dict[str, Any]]:
        return self.images if project == self.project else self.foreign.get(project, {})

    def _images_getFromFamily(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        """Compute Engine returns "the latest image that is part of an image family and is not
        deprecated": latest by creation time (then by id: the fake's clock has whole seconds), any
        deprecation state but ACTIVE left out; none is a 404 naming the family."""
        project, family = segments[1], segments[-1]
        candidates = [
            i
            for i in self._project_images(project).values()
            if i.get("family") == family and (i.get("deprecated") or {}).get("state", "ACTIVE") == "ACTIVE"
        ]
        if not candidates:
            return 404, _error(
                404, "notFound", f"The resource 'projects/{project}/global/images/family/{family}' was not found"
            )
        return 200, max(candidates, key=lambda i: (i["creationTimestamp"], int(i["id"])))

    def _images_delete(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        found = self.images.pop(segments[-1], None)
        if found is None:
            return 404, _error(404, "notFound", f"The resource 'images/{segments[-1]}' was not found")
        return self._operation("delete", found["selfLink"], False)

    def _images_list(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        items = list(self.images.values())
        flt = (query.get("filter") or [""])[0]
        family = re.fullmatch(r'family = "([^"]+)"', flt)
        if family:
            items = [i for i in items if i.get("family") == family.group(1)]
            return self._page("compute#imageList", items, query)
        return self._labelled("compute#imageList", items, query)

    def _instances_list(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        zone = segments[-2]
        items = [i for i in self.instances.values() if str(i.get("zone", "")).endswith(f"/zones/{zone}")]
        return self._labelled("compute#instanceList", items, query)

    def _labelled(self, kind: str, items: list[dict[str, Any]], query: Any) -> tuple[int, Any]:
        """A list filtered as Compute Engine filters by labels: ``labels.KEY = "VALUE"`` terms, each
        in parentheses and joined by spaces or AND (all must hold); the fake understands no other
        filter."""
        flt = (query.get("filter") or [""])[0].strip()
        term = r'\(?labels\.([a-z][a-z0-9_-]*) = "([^"]*)"\)?'
        if flt and not re.fullmatch(rf"{term}(?:\s+(?:AND\s+)?{term})*", flt):
            return 400, _error(400, "invalid", f"the fake understands only family or label filters, not {flt!r}")
        wanted = re.findall(term, flt)
        items = [i for i in items if all((i.get("labels") or {}).get(k) == v for k, v in wanted)]
        return self._page(kind, items, query)

    def _page(self, kind: str, items: list[dict[str, Any]], query: Any) -> tuple[int, Any]:
        """One page of a list: ``maxResults`` items (default 500) from ``pageToken`` on, and a
        ``nextPageToken`` while more remain (the token is opaque to the client)."""
        size = int((query.get("maxResults") or [str(MAX_RESULTS)])[0])
        token = (query.get("pageToken") or [""])[0]
        start = int(token.removeprefix("page-")) if re.fullmatch(r"page-[0-9]+", token) else 0 if not token else -1
        if start < 0 or start > len(items):
            return 400, _error(400, "invalid", f"Invalid value for field 'pageToken': {token!r}")
        page: dict[str, Any] = {"kind": kind, "items": items[start : start + size]}
        if start + size < len(items):
            page["nextPageToken"] = f"page-{start + size}"
        self.pages += 1
        return 200, page

    def _images_setLabels(self, segments: list[str], query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        found = self.images.get(segments[-2])
        if found is None:
            return 404, _error(404, "notFound", "image not found")
        if body.get("labelFingerprint") != found["labelFingerprint"]:
            return 412, _error(
                412, "conditionNotMet", "Labels fingerprint either invalid or resource labels have changed"
            )
        found.update(labels=dict(body.get("labels") or {}), labelFingerprint=uuid.uuid4().hex[:12])
        return self._operation("setLabels", found["selfLink"], False)

    def _images_deprecate(self, segments: list[str], query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        found = self.images.get(segments[-2])
        if found is None:
            return 404, _error(404, "notFound", "image not found")
        found["deprecated"] = dict(body)
        return self._operation("setDeprecation", found["selfLink"], False)

    def _images_getIamPolicy(self, segments: list[str], query: Any, body: Any) -> tuple[int, Any]:
        if segments[-2] not in self.images:
            return 404, _error(404, "notFound", "image not found")
        return 200, self.policies.setdefault(segments[-2], {"version": 1, "etag": "BwAAAAA=", "bindings": []})

    def _images_setIamPolicy(self, segments: list[str], query: Any, body: dict[str, Any]) -> tuple[int, Any]:
        current = self.policies.setdefault(segments[-2], {"version": 1, "etag": "BwAAAAA=", "bindings": []})
        if body["policy"].get("etag") != current["etag"]:
            return 409, _error(409, "conflict", "There were concurrent policy changes.")
        self.policies[segments[-2]] = {**body["policy"], "etag": f"Bw{uuid.uuid4().hex[:6]}="}
        return 200, self.policies[segments[-2]]


@contextlib.contextmanager
def serving(fake: FakeGce) -> Iterator[FakeGce]:
    """Serve ``fake`` on a free loopback port (``fake.url``) for the duration of the block."""

    def handle(method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        status, answer = fake.handle(method, path, headers, body)
        return status, {}, answer

    with serving_http(handle, "fake-gce") as url:
        fake.url = url
        yield fake


def service_account_key(token_uri: str) -> dict[str, str]:
    """A service account key file whose token requests go to ``token_uri`` (a fresh RSA key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": f"imagebuild@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": token_uri,
    }
