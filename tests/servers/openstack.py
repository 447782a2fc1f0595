"""A loopback fake of an OpenStack cloud: Keystone v3, Nova (compute v2.1), Glance (image v2) and
the two Neutron (network v2.0) reads the target makes.

No OpenStack control plane can run here, so this fakes one at the HTTP boundary. The tests drive
it with the real ``openstacksdk`` (version discovery, Keystone password auth with a project scope
and the catalog, microversion negotiation), and the shipped Packer template's ``openstack``
builder (gophercloud) talks to it the same way, over plain HTTP or, with ``tls_dir``, HTTPS with a
self-signed certificate. Request bodies are checked against Nova's and Glance's own schemas and
rules before anything happens (tests/servers/openstack_api: names, enums, required fields,
reserved properties, the publicize_image policy), answering with their statuses and messages. It
follows the OpenStack API references for the calls made:

- Identity v3: ``POST /v3/auth/tokens`` (password method, project scope; the token in
  ``X-Subject-Token``, the catalog in the body); every other call must carry ``X-Auth-Token``.
- Compute v2.1, microversions 2.1 to 2.100 (the ``OpenStack-API-Version: compute X`` header is
  echoed): flavors (show, list, detail), servers (create, show, list with the ``name`` regular
  expression filter, delete), server actions ``os-stop``, ``os-start``, ``createImage``
  (from 2.45 the body is ``{"image_id"}``, before it the ``Location`` header) and
  ``os-getConsoleOutput`` (``console_log``: the launch tests' stand-in guest's serial log). A snapshot
  inherits the server's image properties and adds the action's ``metadata``, as Nova does. A
  server gets the security groups asked for, each one the project must have (Neutron's
  ``default`` exists in every project, ``add_security_group`` adds more), else ``default``; a key
  pair must exist (``add_keypair``). The catalog lists public, internal and admin endpoints.
- Image v2 (version 2.16): images (create, show, list with ``name`` and other attribute filters in
  Glance's order: ``sort`` or ``sort_key``/``sort_dir``, not both, newest first by default; JSON-patch update with
  ``application/openstack-images-v2.1-json-patch``, delete), data upload (``PUT /file``), the
  interoperable import (``GET /v2/info/import`` and the ``OpenStack-image-import-methods``
  header of a create, ``PUT /stage``, ``POST /import`` with ``glance-direct``), the image's import
  tasks (``GET /tasks``), download (``GET /file``), members (only of ``shared`` images) and tags.
  Upload sets ``size``, ``checksum`` (MD5) and ``os_hash_algo``/``os_hash_value`` (SHA-512), as
  Glance does. An import runs as a task between two reads: the image is ``importing`` without
  checksums until then. With ``image_conversion`` set (the output format of Glance's
  ``image_conversion`` plugin), the task runs ``qemu-img info`` and ``qemu-img convert`` as the
  plugin does and stores the converted data, changing ``disk_format``, ``size`` and
  ``virtual_size``; a task that fails (``failing_imports``) leaves the image ``queued`` and its
  message in the task.
- Networking v2.0: show and list (``name`` filter) networks.

Projects: a token is scoped to one project (``PROJECT``, or ``OTHER_PROJECT`` for the same user:
another tenant of the cloud), and ``ADMIN_USER``'s tokens carry the ``admin`` role. As in Nova and
Glance: a server's ``tenant_id`` and an image's ``owner`` are the project of the token that made
it; a member sees its own project's servers only, and the images it owns, public and community
ones and those shared with its project (community ones are listed only when asked for with
``visibility=community``, shared ones once the member accepted); only the owner changes or deletes
an image (403 otherwise); an admin sees, changes and deletes everything (servers of other
projects are listed with ``all_tenants``).

What it does not do: boot anything (a "server" is a record; the playbooks run in a chroot tree
standing in for it), schedule, bill or enforce quotas. Status changes that take time in a real
cloud (``BUILD`` to ``ACTIVE``, ``queued``/``saving`` to ``active``) happen at the next read, so
the clients' waits are exercised. ``fail(method, path_pattern, status, times, body=...)`` plants
errors (``body``: only for requests whose body matches); ``corrupt_uploads`` stores the next uploads
cut in half (a transfer that went wrong); ``dying_uploads`` leaves the next uploads' images ``saving``
without data (the Glance API process died); ``server_requests`` keeps the bodies of server creates.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.servers.http_fake import serving_http
from tests.servers.openstack_api import (
    PUBLICIZE_REFUSED,
    create_image_problem,
    glance_problem,
    server_create_problem,
)

USER = "imagebuild"
PASSWORD = "os-fake-secret-42"
PROJECT = "images"
PROJECT_ID = "5f0e1a5d2c3b4a69b7c8d9e0f1a2b3c4"
OTHER_PROJECT = "partners"  # another tenant of the same cloud (USER is a member of both)
OTHER_PROJECT_ID = "9a8b7c6d5e4f40312a1b2c3d4e5f6a7b"
PROJECTS = {PROJECT: PROJECT_ID, OTHER_PROJECT: OTHER_PROJECT_ID}
ADMIN_USER, ADMIN_PASSWORD = "cloud-admin", "os-fake-admin-secret-7"  # the admin role, in PROJECT
REGION = "RegionOne"
COMPUTE_MAX = "2.100"
IMPORT = "glance-direct,web-download"  # the import methods offered (/v2/info/import, and a header on create)
IMAGE_JSON_PATCH = "application/openstack-images-v2.1-json-patch"
IMAGE_FIELDS = {
    "name",
    "visibility",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
    "protected",
    "tags",
    "os_hidden",
    "id",
}
READ_ONLY = {
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "owner",
    "created_at",
    "updated_at",
    "self",
    "file",
    "schema",
    "direct_url",
    "locations",
    "stores",  # glance/api/v2/images.py _disallowed_properties
}
RESERVED = {"location", "deleted", "deleted_at"}  # glance/api/v2/images.py _reserved_properties: 403


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _attribute(key: str, image: dict[str, Any]) -> str:
    return str(image.get(key) or "")


def _image_order(query: dict[str, list[str]]) -> list[tuple[str, bool]] | str:
    """Glance's list order (Image API v2 "List images"): ``sort=key:dir,...`` or
    ``sort_key``/``sort_dir`` (not both: 400), each direction ``asc`` or ``desc`` (the default);
    no key means ``created_at``, and Glance adds ``created_at`` and ``id`` to break ties. A list of
    (key, descending), or why Glance answers 400."""
    if "sort" in query and ("sort_key" in query or "sort_dir" in query):
        return "The sort and sort_key/sort_dir parameters cannot be used together."
    if "sort" in query:
        pairs = [(part.partition(":")[0], part.partition(":")[2] or "desc") for part in query["sort"][-1].split(",")]
    else:
        keys, dirs = query.get("sort_key", ["created_at"]), query.get("sort_dir", [])
        pairs = [(key, dirs[i] if i < len(dirs) else dirs[-1] if dirs else "desc") for i, key in enumerate(keys)]
    for key, direction in pairs:
        if direction not in ("asc", "desc"):
            return f"Invalid sort direction: {direction}"
        if not key:
            return "Invalid sort key"
    keys = [key for key, _ in pairs]
    pairs += [(key, pairs[0][1]) for key in ("created_at", "id") if key not in keys]
    return [(key, direction == "desc") for key, direction in pairs]


@dataclass
class Planted:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    message: str
    body: re.Pattern[bytes] | None = None  # only requests whose body matches


@dataclass(frozen=True)
class Scope:
    """What a token is: the project it is scoped to, its user, and whether it has the admin role."""

    project_id: str
    user: str = USER
    admin: bool = False


@dataclass
class FakeOpenstack:
    url: str = ""
    tokens: dict[str, Scope] = field(default_factory=dict)
    flavors: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    keypairs: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, bytes] = field(default_factory=dict)
    members: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    planted: list[Planted] = field(default_factory=list)
    corrupt_uploads: int = 0  # the next N uploads (PUT file or stage) are stored cut in half
    # Glance's image_conversion import plugin: the output_format imported data is converted to
    # (glance/async_/flows/plugins/image_conversion.py); None: the plugin is not enabled
    image_conversion: str | None = None
    failing_imports: list[str] = field(default_factory=list)  # the next import tasks fail with these messages
    dying_uploads: int = 0  # the next N data uploads leave their image saving with no data, answered 502
    stuck: set[str] = field(default_factory=set)  # images a dying upload left saving for good
    security_groups: dict[str, set[str]] = field(default_factory=dict)  # project -> Neutron group names
    tasks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # image -> its import tasks
    importing: dict[str, bytes] = field(default_factory=dict)  # image -> staged data an import is processing
    server_requests: list[dict[str, Any]] = field(default_factory=list)  # the bodies of POST /servers, as sent
    # What os-getConsoleOutput answers for every server: this file (the launch tests' stand-in
    # guest's serial log), else an empty console
    console_log: Path | None = None
    # Nova's os_compute_api:os-shelve:shelve policy refuses this login (a cloud that does not let
    # projects shelve): the shelve action answers 403 as Nova's policy enforcement does
    shelve_forbidden: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ips: Iterator[int] = field(default_factory=lambda: itertools.count(10))

    def __post_init__(self) -> None:
        for project in PROJECTS.values():  # Neutron makes every project a `default` group
            self.security_groups[project] = {"default"}
        self.flavors["f1"] = {"id": "f1", "name": "m1.small", "ram": 2048, "vcpus": 1, "disk": 20}
        self.flavors["f2"] = {"id": "f2", "name": "m1.large", "ram": 8192, "vcpus": 4, "disk": 80}
        net = "3c1a2b4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
        self.networks[net] = {
            "id": net,
            "name": "build-net",
            "status": "ACTIVE",
            "subnets": [],
            "project_id": PROJECT_ID,
            "tenant_id": PROJECT_ID,
            "admin_state_up": True,
            "shared": False,
            "router:external": False,
        }

    # -- test helpers --------------------------------------------------------------------------
    def add_image(self, name: str, data: bytes = b"base image", owner: str = PROJECT_ID, **properties: Any) -> str:
        """An active image of project ``owner`` (``visibility`` and any properties as keywords)."""
        image_id = str(uuid.uuid4())
        with self.lock:
            self.images[image_id] = self._image_record(
                image_id, {"name": name, "disk_format": "qcow2", "container_format": "bare", **properties}, owner
            )
            self._store(image_id, data)
        return image_id

    def _received(self, body: bytes) -> bytes:
        if self.corrupt_uploads > 0:
            self.corrupt_uploads -= 1
            return body[: len(body) // 2]
        return body

    def fail(
        self,
        method: str,
        path: str,
        status: int = 503,
        times: int = 1,
        message: str = "planted failure",
        body: bytes | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` on a path matching ``path`` (and whose body matches
        ``body``, a regular expression) answer ``status`` (with Nova's error body shape, which
        Glance and Neutron clients read as well)."""
        with self.lock:
            pattern = re.compile(body) if body is not None else None
            self.planted.append(Planted(method, re.compile(path), status, times, message, pattern))

    def add_security_group(self, name: str, project: str = PROJECT_ID) -> None:
        with self.lock:
            self.security_groups.setdefault(project, {"default"}).add(name)

    def add_keypair(self, name: str) -> None:
        """A key pair of the user's (Nova key pairs belong to a user), as if imported."""
        with self.lock:
            self.keypairs.setdefault(name, {"name": name, "user_id": "u-" + USER, "fingerprint": "fa:ke",
                                            "public_key": "ssh-ed25519 AAAAfake imagebuild"})  # fmt: skip

    def add_server(self, name: str, metadata: dict[str, str], project: str = PROJECT_ID) -> str:
        """An ACTIVE server of ``project`` with ``metadata`` (another tenant's look-alike, a lost
        worker's leftover), as if booted there."""
        server_id = str(uuid.uuid4())
        with self.lock:
            self.servers[server_id] = {
                "id": server_id, "name": name, "status": "ACTIVE", "metadata": dict(metadata), "tenant_id": project,
                "user_id": "u-" + USER, "image": {"id": ""}, "flavor": {}, "addresses": {}, "key_name": None,
                "security_groups": [{"name": "default"}], "created": _now(), "updated": _now(), "accessIPv4": "",
                "accessIPv6": "", "links": self._link(f"/compute/v2.1/servers/{server_id}"), "tags": [],
            }  # fmt: skip
        return server_id

    def remove_server(self, server_id: str) -> None:
        with self.lock:
            self.servers.pop(server_id, None)

    def network_id(self) -> str:
        return next(iter(self.networks))

    # -- records ---------------------------------------------------------------------------------
    def _image_record(self, image_id: str, body: dict[str, Any], owner: str) -> dict[str, Any]:
        now = _now()
        record = {
            "id": image_id,
            "name": None,
            "status": "queued",
            "visibility": "shared",
            "protected": False,
            "os_hidden": False,
            "checksum": None,
            "os_hash_algo": None,
            "os_hash_value": None,
            "size": None,
            "virtual_size": None,
            "disk_format": None,
            "container_format": None,
            "min_disk": 0,
            "min_ram": 0,
            "owner": owner,
            "tags": [],
            "created_at": now,
            "updated_at": now,
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image",
        }
        record.update({k: v for k, v in body.items() if k not in READ_ONLY})
        return record

    def _store(self, image_id: str, data: bytes) -> None:
        image = self.images[image_id]
        self.data[image_id] = data
        image.update(
            size=len(data),
            checksum=hashlib.md5(data).hexdigest(),
            os_hash_algo="sha512",
            os_hash_value=hashlib.sha512(data).hexdigest(),
            status="active",
            updated_at=_now(),
        )

    def _server_view(self, server: dict[str, Any]) -> dict[str, Any]:
        if server["status"] == "BUILD":
            server["status"] = "ACTIVE"  # "booted" by the time it is read again
            return {**server, "status": "BUILD"}
        return server

    def _image_view(self, image: dict[str, Any]) -> dict[str, Any]:
        shown = dict(image)
        if image["status"] == "saving" and image["id"] not in self.stuck:
            image["status"] = "active"  # finished by the next read
        elif image["status"] == "importing":
            self._finish_import(image)  # the import task runs between two reads
        return shown

    def _finish_import(self, image: dict[str, Any]) -> None:
        """The import task of glance/async_/flows/api_image_import.py: with the image_conversion
        plugin, the staged data is inspected (its format must be the claimed ``disk_format``) and
        converted to the plugin's ``output_format``, which sets ``disk_format``, ``container_format``
        bare, ``size`` and ``virtual_size``; the store then computes ``checksum`` and ``os_hash_value``
        of what it stored (glance/location.py ``_upload_to_store``), the converted data. A failed
        conversion reverts the image to ``queued`` and fails the task."""
        data = self.importing.pop(image["id"])
        task = self.tasks[image["id"]][-1]
        try:
            if self.failing_imports:
                raise RuntimeError(self.failing_imports.pop(0))
            if self.image_conversion is not None:
                data = self._convert(image, data, self.image_conversion)
        except RuntimeError as exc:
            image.update(status="queued", updated_at=_now())
            task.update(status="failure", message=str(exc), updated_at=_now())
            return
        self._store(image["id"], data)
        task.update(status="success", result={"image_id": image["id"]}, updated_at=_now())

    @staticmethod
    def _convert(image: dict[str, Any], data: bytes, output_format: str) -> bytes:
        """``qemu-img info`` then ``qemu-img convert -f <disk_format> -O <output_format>``, as the
        plugin runs them; the image's attributes change as the plugin sets them."""
        import subprocess
        import tempfile

        claimed = image["disk_format"]
        with tempfile.TemporaryDirectory(prefix="fake-glance-") as tmp:
            source = Path(tmp) / "staged"
            source.write_bytes(data)
            info = subprocess.run(
                ["qemu-img", "info", "--output=json", str(source)], capture_output=True, text=True, check=False
            )
            detected = json.loads(info.stdout).get("format") if info.returncode == 0 else None
            if detected != claimed:
                raise RuntimeError("Image format mismatch")
            virtual_size = int(json.loads(info.stdout).get("virtual-size", 0))
            if claimed == output_format:
                image["virtual_size"] = virtual_size
                return data
            target = Path(tmp) / f"staged.{output_format}"
            subprocess.run(
                ["qemu-img", "convert", "-f", claimed, "-O", output_format, str(source), str(target)],
                capture_output=True, check=True,
            )  # fmt: skip
            converted = target.read_bytes()
        image.update(disk_format=output_format, container_format="bare", virtual_size=virtual_size)
        return converted

    # -- who sees and changes what (Nova's and Glance's default policies) ------------------------
    @staticmethod
    def _image_refusal(scope: Scope, values: dict[str, Any]) -> tuple[int, dict[str, str], Any] | None:
        """Glance's refusal of image attributes (a create body, or one PATCH change): its schema and
        reserved names (tests/servers/openstack_api), and ``publicize_image`` (admin by default)."""
        problem = glance_problem(values)
        if problem is None and values.get("visibility") == "public" and not scope.admin:
            problem = 403, PUBLICIZE_REFUSED
        if problem is None:
            return None
        status, message = problem
        return status, {}, {"error": {"code": status, "message": message, "title": "Bad Request" if status == 400
                                      else "Forbidden"}}  # fmt: skip

    @staticmethod
    def _sees_server(scope: Scope, server: dict[str, Any]) -> bool:
        return scope.admin or server["tenant_id"] == scope.project_id

    def _sees_image(self, scope: Scope, image: dict[str, Any]) -> bool:
        """Glance's show: an image the project owns, a public or community one, or one shared
        with the project (whatever the member's status)."""
        return (
            scope.admin
            or image["owner"] == scope.project_id
            or image["visibility"] in ("public", "community")
            or (image["visibility"] == "shared" and scope.project_id in self.members.get(image["id"], {}))
        )

    def _lists_image(self, scope: Scope, image: dict[str, Any], visibility: str | None) -> bool:
        """Glance's list: owned and public images; community ones only when asked for
        (``visibility=community`` or ``all``); shared ones once the member accepted them."""
        if visibility not in (None, "all") and image["visibility"] != visibility:
            return False
        if scope.admin or image["owner"] == scope.project_id or image["visibility"] == "public":
            return True
        if image["visibility"] == "community":
            return visibility in ("community", "all")
        member = self.members.get(image["id"], {}).get(scope.project_id)
        return image["visibility"] == "shared" and member is not None and member["status"] == "accepted"

    # -- HTTP ------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(path)
        route, query = unquote(parts.path).rstrip("/") or "/", parse_qs(parts.query)
        with self.lock:
            self.calls.append((method, route))
            for plant in self.planted:
                if (
                    plant.times > 0
                    and plant.method == method
                    and plant.pattern.search(route)
                    and (plant.body is None or plant.body.search(body))
                ):
                    plant.times -= 1
                    return (
                        plant.status,
                        {},
                        {
                            "forbidden" if plant.status == 403 else "error": {
                                "code": plant.status,
                                "message": plant.message,
                            }
                        },
                    )
            service, _, rest = route.lstrip("/").partition("/")
            if service == "identity":
                return self.identity(method, "/" + rest, body)
            scope = self.tokens.get(headers.get("x-auth-token", ""))
            if scope is None:
                return (
                    401,
                    {},
                    {
                        "error": {
                            "code": 401,
                            "message": "The request you have made requires authentication.",
                            "title": "Unauthorized",
                        }
                    },
                )
            if service == "compute":
                return self.compute(scope, method, "/" + rest, query, headers, body)
            if service == "image":
                return self.image(scope, method, "/" + rest, query, headers, body)
            if service == "network":
                return self.network(method, "/" + rest, query)
        return 404, {}, {"error": {"code": 404, "message": f"fake: no route {method} {route}"}}

    def _link(self, path: str) -> list[dict[str, str]]:
        return [{"rel": "self", "href": f"{self.url}{path}"}]

    # Identity v3 ------------------------------------------------------------------------------
    def identity(self, method: str, route: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        version = {
            "id": "v3.14",
            "status": "stable",
            "updated": "2020-04-07T00:00:00Z",
            "links": self._link("/identity/v3/"),
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}],
        }
        if method == "GET" and route in ("/", ""):
            return 300, {}, {"versions": {"values": [version]}}
        if method == "GET" and route == "/v3":
            return 200, {}, {"version": version}
        if method == "POST" and route == "/v3/auth/tokens":
            auth = json.loads(body)["auth"]
            user = auth["identity"]["password"]["user"]
            project = (auth.get("scope") or {}).get("project") or {}
            admin = user.get("name") == ADMIN_USER and user.get("password") == ADMIN_PASSWORD
            if not admin and (user.get("name") != USER or user.get("password") != PASSWORD):
                return (
                    401,
                    {},
                    {
                        "error": {
                            "code": 401,
                            "message": "The request you have made requires authentication.",
                            "title": "Unauthorized",
                        }
                    },
                )
            name = project.get("name") or next((n for n, i in PROJECTS.items() if i == project.get("id")), PROJECT)
            if (
                PROJECTS.get(name) is None
                or project.get("id") not in (PROJECTS[name], None)
                or (admin and name != PROJECT)
            ):
                return 401, {}, {"error": {"code": 401, "message": "not a member of the project"}}
            token = uuid.uuid4().hex
            username = ADMIN_USER if admin else USER
            self.tokens[token] = Scope(PROJECTS[name], username, admin)
            domain = {"id": "default", "name": "Default"}
            catalog = [
                self._service("identity", "keystone", "/identity/v3"),
                self._service("compute", "nova", "/compute/v2.1"),
                self._service("image", "glance", "/image"),
                self._service("network", "neutron", "/network"),
            ]
            answer = {
                "token": {
                    "methods": ["password"],
                    "expires_at": "2099-01-01T00:00:00.000000Z",
                    "issued_at": _now(),
                    "user": {"id": "u-" + username, "name": username, "domain": domain, "password_expires_at": None},
                    "project": {"id": PROJECTS[name], "name": name, "domain": domain},
                    "roles": [{"id": "r-member", "name": "member"}] + ([{"id": "r-admin", "name": "admin"}] * admin),
                    "catalog": catalog,
                    "audit_ids": [uuid.uuid4().hex[:22]],
                }
            }
            return 201, {"X-Subject-Token": token}, answer
        return 404, {}, {"error": {"code": 404, "message": f"fake identity: no route {method} {route}"}}

    def _service(self, kind: str, name: str, path: str) -> dict[str, Any]:
        """A catalog entry with the three interfaces a deployment registers (one URL here)."""
        url = f"{self.url}{path}"
        endpoints = [{"id": uuid.uuid4().hex, "interface": interface, "region": REGION, "region_id": REGION, "url": url}
                     for interface in ("public", "internal", "admin")]  # fmt: skip
        return {"type": kind, "name": name, "id": uuid.uuid4().hex, "endpoints": endpoints}

    # Compute v2.1 -----------------------------------------------------------------------------
    def compute(
        self, scope: Scope, method: str, route: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        requested = headers.get("openstack-api-version", "compute 2.1").split()[-1]
        micro = tuple(int(p) for p in (COMPUTE_MAX if requested == "latest" else requested).split("."))
        echo = {"OpenStack-API-Version": f"compute {'.'.join(map(str, micro))}", "Vary": "OpenStack-API-Version"}
        version = {
            "id": "v2.1",
            "status": "CURRENT",
            "version": COMPUTE_MAX,
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": self._link("/compute/v2.1/"),
        }
        if method == "GET" and route in ("/", ""):
            return 200, {}, {"versions": [version]}
        if not route.startswith("/v2.1"):
            return 404, {}, {"itemNotFound": {"code": 404, "message": f"fake compute: no route {route}"}}
        route = route.removeprefix("/v2.1") or "/"
        if method == "GET" and route == "/":
            return 200, echo, {"version": version}
        if method == "GET" and route in ("/flavors", "/flavors/detail"):
            return 200, echo, {"flavors": [self._flavor(f) for f in self.flavors.values()]}
        if m := re.fullmatch(r"/flavors/([^/]+)", route):
            flavor = self.flavors.get(m[1])
            if flavor is None:
                return 404, echo, {"itemNotFound": {"code": 404, "message": f"Flavor {m[1]} could not be found."}}
            return 200, echo, {"flavor": self._flavor(flavor)}
        if method == "POST" and route == "/os-keypairs":
            return self._keypair(json.loads(body)["keypair"], micro, echo)
        if method == "DELETE" and (m := re.fullmatch(r"/os-keypairs/([^/]+)", route)):
            if self.keypairs.pop(m[1], None) is None:
                return 404, echo, {"itemNotFound": {"code": 404, "message": f"Keypair {m[1]} not found for user"}}
            return 202, echo, None
        if method == "POST" and route == "/servers":
            request = json.loads(body)
            self.server_requests.append(request)
            problem = server_create_problem(request, micro)
            if problem:
                return 400, echo, {"badRequest": {"code": 400, "message": problem}}
            return self._create_server(scope, request["server"], echo)
        if method == "GET" and route in ("/servers", "/servers/detail"):
            pattern = re.compile(query.get("name", [".*"])[0])
            every = scope.admin and query.get("all_tenants", ["0"])[0].lower() in ("1", "true")
            found = [
                self._server_view(s)
                for s in self.servers.values()
                if pattern.search(s["name"]) and (every or s["tenant_id"] == scope.project_id)
            ]
            return 200, echo, {"servers": found}
        if m := re.fullmatch(r"/servers/([^/]+)", route):
            server = self.servers.get(m[1])
            if server is None or not self._sees_server(scope, server):
                return 404, echo, {"itemNotFound": {"code": 404, "message": f"Instance {m[1]} could not be found."}}
            if method == "DELETE":
                del self.servers[m[1]]
                return 204, echo, None
            return 200, echo, {"server": self._server_view(server)}
        if method == "POST" and (m := re.fullmatch(r"/servers/([^/]+)/action", route)):
            return self._action(scope, m[1], json.loads(body), micro, echo)
        return 404, echo, {"itemNotFound": {"code": 404, "message": f"fake compute: no route {method} {route}"}}

    def _keypair(
        self, spec: dict[str, Any], micro: tuple[int, ...], echo: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        """Key pair create: with no public key Nova generates one and returns its private key
        (microversions before 2.92, which is what Packer's temporary key pair uses)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        name = spec["name"]
        if name in self.keypairs:
            return 409, echo, {"conflictingRequest": {"code": 409, "message": f"Key pair '{name}' already exists."}}
        made: dict[str, Any] = {"name": name, "user_id": "u-" + USER, "fingerprint": "fa:ke"}
        if spec.get("public_key"):
            made["public_key"] = spec["public_key"]
        elif micro >= (2, 92):
            return 400, echo, {"badRequest": {"code": 400, "message": "public_key is required from 2.92"}}
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            made["private_key"] = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            ).decode()
            made["public_key"] = (
                key.public_key()
                .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
                .decode()
            )
        self.keypairs[name] = made
        return 200, echo, {"keypair": made}

    def _flavor(self, flavor: dict[str, Any]) -> dict[str, Any]:
        return {
            **flavor,
            "links": self._link(f"/compute/v2.1/flavors/{flavor['id']}"),
            "swap": 0,
            "OS-FLV-EXT-DATA:ephemeral": 0,
            "os-flavor-access:is_public": True,
            "rxtx_factor": 1.0,
        }

    def _create_server(
        self, scope: Scope, spec: dict[str, Any], echo: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        def bad(message: str) -> tuple[int, dict[str, str], Any]:
            return 400, echo, {"badRequest": {"code": 400, "message": message}}

        image = self.images.get(spec.get("imageRef", ""))
        if image is None or image["status"] != "active" or not self._sees_image(scope, image):
            return bad(f"Image {spec.get('imageRef')} could not be found or is not active.")
        flavor = self.flavors.get(str(spec.get("flavorRef", "")).rsplit("/", 1)[-1])
        if flavor is None:
            return bad(f"Flavor {spec.get('flavorRef')} could not be found.")
        networks = spec.get("networks") or []
        if not isinstance(networks, list) or any(n.get("uuid") not in self.networks for n in networks):
            return bad(f"Network {networks} could not be found.")
        if spec.get("key_name") is not None and spec["key_name"] not in self.keypairs:
            return bad("Invalid key_name provided.")
        groups = [g["name"] for g in spec.get("security_groups") or [{"name": "default"}]]
        for group in groups:
            if group not in self.security_groups.get(scope.project_id, set()):
                return bad(f"Security group {group} not found.")
        metadata = spec.get("metadata") or {}
        server_id = str(uuid.uuid4())
        address = f"10.0.0.{next(self._ips)}"
        now = _now()
        self.servers[server_id] = {
            "id": server_id,
            "name": spec["name"],
            "status": "BUILD",
            "metadata": dict(metadata),
            "image": {"id": image["id"], "links": self._link(f"/compute/v2.1/images/{image['id']}")},
            "flavor": {
                "original_name": flavor["name"],
                "vcpus": flavor["vcpus"],
                "ram": flavor["ram"],
                "disk": flavor["disk"],
                "ephemeral": 0,
                "swap": 0,
                "extra_specs": {},
            },
            "addresses": {
                "build-net": [
                    {
                        "addr": address,
                        "version": 4,
                        "OS-EXT-IPS:type": "fixed",
                        "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:00:00:01",
                    }
                ]
            },
            "key_name": spec.get("key_name"),
            "security_groups": [{"name": group} for group in dict.fromkeys(groups)],
            "tenant_id": scope.project_id,
            "user_id": "u-" + scope.user,
            "created": now,
            "updated": now,
            "accessIPv4": "",
            "accessIPv6": "",
            "OS-EXT-STS:vm_state": "building",
            "OS-EXT-STS:task_state": None,
            "links": self._link(f"/compute/v2.1/servers/{server_id}"),
            "tags": [],
        }
        made = {
            "id": server_id,
            "links": self._link(f"/compute/v2.1/servers/{server_id}"),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": self.servers[server_id]["security_groups"],
            "adminPass": "fake-admin-pass",
        }
        return 202, echo, {"server": made}

    def _action(
        self, scope: Scope, server_id: str, action: dict[str, Any], micro: tuple[int, ...], echo: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        server = self.servers.get(server_id)
        if server is None or not self._sees_server(scope, server):
            return 404, echo, {"itemNotFound": {"code": 404, "message": f"Instance {server_id} could not be found."}}
        name = next(iter(action))
        conflict = {
            "conflictingRequest": {
                "code": 409,
                "message": f"Cannot '{name}' instance {server_id} while it is in vm_state {server['status'].lower()}",
            }
        }
        if name == "os-stop":
            if server["status"] != "ACTIVE":
                return 409, echo, conflict
            server["status"] = "SHUTOFF"
            return 202, echo, None
        if name == "os-start":
            if server["status"] != "SHUTOFF":
                return 409, echo, conflict
            server["status"] = "ACTIVE"
            return 202, echo, None
        # Shelve (os-shelve): from ACTIVE, SHUTOFF, PAUSED or SUSPENDED, body null; with the default
        # shelved_offload_time of 0 the server is offloaded at once (SHELVED_OFFLOADED: no host, no
        # compute charge, its disk kept as an image). Unshelve: from SHELVED(_OFFLOADED) to ACTIVE,
        # body null or (2.77+) {"availability_zone": ...}.
        if name == "shelve":
            if self.shelve_forbidden:
                message = "Policy doesn't allow os_compute_api:os-shelve:shelve to be performed."
                return 403, echo, {"forbidden": {"code": 403, "message": message}}
            if action[name] is not None:
                return 400, echo, {"badRequest": {"code": 400, "message": "Invalid input for field/attribute shelve."}}
            if server["status"] not in ("ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED"):
                return 409, echo, conflict
            server["status"] = "SHELVED_OFFLOADED"
            return 202, echo, None
        if name == "unshelve":
            body = action[name]
            if body is not None and (not isinstance(body, dict) or set(body) - {"availability_zone", "host"}):
                message = "Invalid input for field/attribute unshelve."
                return 400, echo, {"badRequest": {"code": 400, "message": message}}
            if server["status"] not in ("SHELVED", "SHELVED_OFFLOADED"):
                return 409, echo, conflict
            server["status"] = "ACTIVE"
            return 202, echo, None
        if name == "createImage":
            problem = create_image_problem(action)
            if problem:
                return 400, echo, {"badRequest": {"code": 400, "message": problem}}
            if server["status"] not in ("ACTIVE", "SHUTOFF"):
                return 409, echo, conflict
            spec = action[name]
            base = self.images.get(server["image"]["id"], {})
            inherited = {k: v for k, v in base.items() if k not in READ_ONLY | IMAGE_FIELDS}
            image_id = str(uuid.uuid4())
            props = {
                **inherited,
                **(spec.get("metadata") or {}),
                "image_type": "snapshot",
                "instance_uuid": server_id,
                "base_image_ref": base.get("id", ""),
                "owner_project_name": next(n for n, i in PROJECTS.items() if i == scope.project_id),
            }
            record = self._image_record(
                image_id,
                {
                    "name": spec["name"],
                    "disk_format": base.get("disk_format", "qcow2"),
                    "container_format": "bare",
                    "visibility": "private",
                    **props,
                },
                scope.project_id,  # Nova makes the snapshot in the requesting project
            )
            self.images[image_id] = record
            self._store(image_id, self.data.get(base.get("id", ""), b"") + f"+{server_id}".encode())
            record["status"] = "saving"  # active at the next read
            location = {"Location": f"{self.url}/image/v2/images/{image_id}"}
            if micro >= (2, 45):
                return 202, echo, {"image_id": image_id}
            return 202, {**echo, **location}, None
        if name == "os-getConsoleOutput":  # Nova: the console log, its last `length` lines if given
            if server["status"] not in ("ACTIVE", "SHUTOFF"):
                return 409, echo, conflict
            text = self.console_log.read_text(errors="replace") if self.console_log is not None else ""
            length = (action[name] or {}).get("length")
            lines = text.splitlines(keepends=True)
            return 200, echo, {"output": "".join(lines[-int(length) :] if length else lines)}
        return 400, echo, {"badRequest": {"code": 400, "message": f"fake: action {name} is not implemented"}}

    # Image v2 ----------------------------------------------------------------------------------
    def image(
        self, scope: Scope, method: str, route: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and route in ("/", ""):
            return (
                300,
                {},
                {
                    "versions": [
                        {"id": "v2.16", "status": "CURRENT", "links": self._link("/image/v2/")},
                        {"id": "v2.0", "status": "SUPPORTED", "links": self._link("/image/v2/")},
                    ]
                },
            )
        if method == "GET" and route == "/v2/info/import":
            return (
                200,
                {},
                {
                    "import-methods": {
                        "description": "Import methods available.",
                        "type": "array",
                        "value": IMPORT.split(","),
                    }
                },
            )
        if method == "GET" and route == "/v2/images":
            visibility = query.get("visibility", [None])[0]
            order = _image_order(query)
            if isinstance(order, str):
                return 400, {}, {"error": {"code": 400, "message": order}}
            found = [
                self._image_view(i)
                for i in self.images.values()
                if self._lists_image(scope, i, visibility)
                and all(
                    str(i.get(k)) == v[0]
                    for k, v in query.items()
                    if k not in ("limit", "marker", "sort", "sort_key", "sort_dir", "visibility")
                )
            ]
            for key, descending in reversed(order):  # the last key first: a stable sort keeps it under the others
                found.sort(key=functools.partial(_attribute, key), reverse=descending)
            return 200, {}, {"images": found, "first": "/v2/images", "schema": "/v2/schemas/images"}
        if method == "POST" and route == "/v2/images":
            spec = json.loads(body)
            bad = set(spec) & READ_ONLY
            if bad:
                return 403, {}, {"error": {"code": 403, "message": f"Attribute '{sorted(bad)[0]}' is read-only."}}
            if set(spec) & RESERVED:
                return 403, {}, {"error": {"code": 403, "message": f"Attribute '{sorted(set(spec) & RESERVED)[0]}' "
                                           "is reserved."}}  # fmt: skip
            refused = self._image_refusal(scope, spec)
            if refused:
                return refused
            image_id = spec.get("id") or str(uuid.uuid4())
            self.images[image_id] = self._image_record(image_id, {"visibility": "shared", **spec}, scope.project_id)
            created = {"Location": f"{self.url}/image/v2/images/{image_id}", "OpenStack-image-import-methods": IMPORT}
            return 201, created, self.images[image_id]
        m = re.fullmatch(r"/v2/images/([^/]+)(/[^/]+)?(/[^/]+)?", route)
        if not m or m[1] not in self.images or not self._sees_image(scope, self.images[m[1]]):
            return 404, {}, {"error": {"code": 404, "message": f"No image found with ID {m[1] if m else route}"}}
        image_id, sub, arg = m[1], m[2] or "", (m[3] or "").lstrip("/")
        image = self.images[image_id]
        reads = method == "GET" and sub in ("", "/members", "/file", "/tasks")
        if not reads and not scope.admin and image["owner"] != scope.project_id:
            return 403, {}, {"error": {"code": 403, "message": f"You are not permitted to modify image {image_id}."}}
        if sub == "" and method == "GET":
            return 200, {}, self._image_view(image)
        if sub == "/tasks" and method == "GET":  # image API 2.12
            return 200, {}, {"tasks": self.tasks.get(image_id, [])}
        if sub == "" and method == "DELETE":
            if image["protected"]:
                return 403, {}, {"error": {"code": 403, "message": f"Image {image_id} is protected"}}
            del self.images[image_id]
            self.data.pop(image_id, None)
            self.importing.pop(image_id, None)
            return 204, {}, None
        if sub == "" and method == "PATCH":
            if headers.get("content-type", "").split(";")[0] != IMAGE_JSON_PATCH:
                return 415, {}, {"error": {"code": 415, "message": "Unsupported Content-Type"}}
            for op in json.loads(body):
                key = op["path"].lstrip("/")
                if key in READ_ONLY:
                    return 403, {}, {"error": {"code": 403, "message": f"Attribute '{key}' is read-only."}}
                if key in RESERVED:
                    return 403, {}, {"error": {"code": 403, "message": f"Attribute '{key}' is reserved."}}
                refused = self._image_refusal(scope, {key: op.get("value")}) if op["op"] != "remove" else None
                if refused:
                    return refused
                if op["op"] in ("add", "replace"):
                    image[key] = op["value"]
                elif op["op"] == "remove":
                    image.pop(key, None)
            image["updated_at"] = _now()
            return 200, {}, image
        if sub == "/file" and method == "GET":  # download: the stored data, its MD5 as Glance sends it
            if image_id not in self.data or image["status"] != "active":
                return 204, {}, None
            return (
                200,
                {"Content-Type": "application/octet-stream", "Content-MD5": image["checksum"]},
                self.data[image_id],
            )
        if sub == "/file" and method == "PUT":
            if image["status"] != "queued":
                return (
                    409,
                    {},
                    {
                        "error": {
                            "code": 409,
                            "message": f"Image status transition from {image['status']} to saving is not allowed",
                        }
                    },
                )
            return self._upload(image, headers, body)
        if sub == "/stage" and method == "PUT":
            if image["status"] != "queued":
                return 409, {}, {"error": {"code": 409, "message": "Image is not in queued state"}}
            self.data[image_id] = self._received(body)
            image["status"] = "uploading"
            return 204, {}, None
        if sub == "/import" and method == "POST":
            wanted = json.loads(body).get("method", {}).get("name")
            if wanted != "glance-direct" or image["status"] != "uploading":
                return 409, {}, {"error": {"code": 409, "message": f"Import method {wanted} needs a staged image"}}
            self.importing[image_id] = self.data.pop(image_id)
            image.update(status="importing", updated_at=_now())  # checksums once the task finished
            now = _now()
            self.tasks.setdefault(image_id, []).append(
                {"id": str(uuid.uuid4()), "type": "api_image_import", "status": "processing", "owner": scope.project_id,
                 "image_id": image_id, "input": {"image_id": image_id, "import_req": {"method": {"name": wanted}}},
                 "result": None, "message": "", "user_id": "u-" + scope.user, "request_id": "req-" + uuid.uuid4().hex,
                 "created_at": now, "updated_at": now, "expires_at": None}
            )  # fmt: skip
            return 202, {}, None
        if sub == "/members":
            return self._members(method, image, arg, body)
        if sub == "/tags" and method in ("PUT", "DELETE") and arg:
            tags = image["tags"]
            if method == "PUT" and arg not in tags:
                tags.append(arg)
            elif method == "DELETE" and arg in tags:
                tags.remove(arg)
            return 204, {}, None
        return 404, {}, {"error": {"code": 404, "message": f"fake image: no route {method} {route}"}}

    def _upload(self, image: dict[str, Any], headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        """``PUT /v2/images/{id}/file`` of a queued image as glance/api/v2/image_data.py takes it:
        415 for another content type than ``application/octet-stream`` (its RequestDeserializer);
        400 while ``disk_format`` or ``container_format`` is unset (glance/domain Image.status
        refuses queued -> saving without them); a body shorter than its ``Content-Length`` (the
        client gave up half-way) stores nothing and the image goes back to ``queued`` (``_restore``).
        ``dying_uploads``: the API process handling the upload dies, leaving the image ``saving``
        with no data (Glance's images stuck in saving), and the client gets its proxy's 502."""

        def error(status: int, message: str) -> tuple[int, dict[str, str], Any]:
            return status, {}, {"error": {"code": status, "message": message}}

        if headers.get("content-type", "").split(";")[0].strip() != "application/octet-stream":
            return error(415, f"Invalid content type {headers.get('content-type')}")
        missing = [k for k in ("disk_format", "container_format") if not image.get(k)]
        if missing:
            word = "Property" if len(missing) == 1 else "Properties"
            return error(400, f"{word} {', '.join(missing)} must be set prior to saving data.")
        if self.dying_uploads > 0:
            self.dying_uploads -= 1
            self.stuck.add(image["id"])
            image.update(status="saving", updated_at=_now())
            return error(502, "Bad Gateway")
        if len(body) < int(headers.get("content-length") or 0):
            return error(400, "Unable to read the image data: the request body ended early")
        self._store(image["id"], self._received(body))
        return 204, {}, None

    def _members(self, method: str, image: dict[str, Any], member: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        found = self.members.setdefault(image["id"], {})
        if image["visibility"] != "shared":
            return 403, {}, {"error": {"code": 403, "message": "Only shared images have members."}}
        if method == "GET" and member:
            if member not in found:
                return 404, {}, {"error": {"code": 404, "message": f"{member} is not a member of {image['id']}"}}
            return 200, {}, found[member]
        if method == "GET":
            return 200, {}, {"members": list(found.values()), "schema": "/v2/schemas/members"}
        if method == "POST":
            project = json.loads(body)["member"]
            if project in found:
                return 409, {}, {"error": {"code": 409, "message": f"Member {project} already exists"}}
            now = _now()
            found[project] = {
                "member_id": project,
                "image_id": image["id"],
                "status": "pending",
                "created_at": now,
                "updated_at": now,
                "schema": "/v2/schemas/member",
            }
            return 200, {}, found[project]
        return 404, {}, {"error": {"code": 404, "message": "fake: members route"}}

    # Networking v2.0 ---------------------------------------------------------------------------
    def network(self, method: str, route: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and route in ("/", ""):
            return 200, {}, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": self._link("/network/v2.0/")}]}
        if method == "GET" and route == "/v2.0/networks":
            found = [n for n in self.networks.values() if all(str(n.get(k)) == v[0] for k, v in query.items())]
            return 200, {}, {"networks": found}
        if method == "GET" and (m := re.fullmatch(r"/v2.0/networks/([^/]+)", route)):
            if m[1] not in self.networks:
                return (
                    404,
                    {},
                    {
                        "NeutronError": {
                            "type": "NetworkNotFound",
                            "message": f"Network {m[1]} could not be found.",
                            "detail": "",
                        }
                    },
                )
            return 200, {}, {"network": self.networks[m[1]]}
        return (
            404,
            {},
            {"NeutronError": {"type": "HTTPNotFound", "message": f"fake network: no route {route}", "detail": ""}},
        )


@contextlib.contextmanager
def fake_openstack(tls_dir: Path | None = None) -> Iterator[FakeOpenstack]:
    """The fake on a loopback port: plain HTTP, or HTTPS with a self-signed certificate written to
    ``tls_dir`` (a private cloud's own CA, which no client trusts unless told to)."""
    fake = FakeOpenstack()
    serving = serving_https(fake.handle, tls_dir) if tls_dir else serving_http(fake.handle, "fake-openstack")
    with serving as url:
        fake.url = url
        yield fake


@contextlib.contextmanager
def serving_https(handle: Any, tls_dir: Path) -> Iterator[str]:
    """``handle`` served over TLS with a new self-signed certificate for 127.0.0.1 (its PEM in
    ``tls_dir/cert.pem``)."""
    import ssl
    import threading
    from http.server import ThreadingHTTPServer

    from tests.servers.http_fake import _handler

    cert, key = _self_signed(tls_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(handle))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="fake-openstack-tls", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-openstack")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def connection_uri(
    fake: FakeOpenstack, password: str = PASSWORD, *, user: str = USER, project: str = PROJECT, **extra: Any
) -> str:
    """An Airflow connection (JSON form) that logs in to the fake (``project``: which tenant;
    ``extra``: more of the connection's extra, such as ``insecure`` or ``interface``)."""
    extra = {"auth_url": f"{fake.url}/identity/v3", "project_name": project, "region_name": REGION, **extra}
    return json.dumps({"conn_type": "generic", "login": user, "password": password, "extra": extra})
