"""The state store as a Concourse resource type (``concourse/resource/{check,in,out}``).

It speaks Concourse's resource protocol: a JSON request on stdin, a JSON answer on stdout, logs
on stderr, exit status 0 or 1.

``source``: ``store`` (a store URL, required), ``pipeline``, ``cloud`` or ``build_id`` to follow
only some builds, and ``env`` (variables the store's client reads, such as AWS credentials from
Concourse's credential manager).

- ``check``: a version per build that changed, ``{"build_id": ID, "version": "N"}`` (N: the
  record's version counter, raised by every write), oldest change first. Without a version, the
  newest change only.
- ``in`` (get): the build into the destination folder: ``build.json`` (the record, lease token
  removed), ``build_id``, ``current_state``, ``status``, ``version``.
- ``out`` (put) with ``params.action``: ``begin`` (``state``, ``owner``, ``lease_seconds``; the
  token goes to the log), ``complete`` (``state``, ``token`` or ``token_file``, ``outputs`` or
  ``outputs_file``), ``fail`` (``state``, ``token``/``token_file``, ``error``) or ``reset``
  (``to``, ``reason``). The build is ``build_id`` or ``build_id_file`` (paths are relative to
  the put's sources folder). A ``fail`` whose lease already ended (the step recorded its own
  failure) or without a token file (the step failed before it began) records nothing and
  succeeds: it is what the rendered pipelines' ``on_failure``/``on_error``/``on_abort`` hooks send.

Bad requests exit 1 with one line naming the field and the reason, with nothing written: every
param is read strictly (:mod:`.request`: unknown keys, fractions, booleans, ``NaN``, deep nesting
and text that is not UTF-8 are refused), a file param is read only inside the put's sources folder
and its content is never quoted back, and a ``reset`` meets the same rule as the CLI's and the
API's (the store's: a delivered build whose host and checkpoints are gone cannot be reset to a
milestone that needs them).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from airflow_provider_imagebuild.build.catalog import check_code
from airflow_provider_imagebuild.build.ids import check_build_id, check_cloud, check_name, check_owner, check_token
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.build.values import MAX_LEASE_SECONDS, check_outputs
from airflow_provider_imagebuild.concourse.request import (
    ENV_NAME_RE,
    confined_file,
    integer,
    known_keys,
    mapping,
    parse_json,
    read_request,
    text,
    write_own_file,
)
from airflow_provider_imagebuild.errors import Conflict, ImageBuildError, InvalidInput
from airflow_provider_imagebuild.redact.shell import shell_redactor
from airflow_provider_imagebuild.store import BuildStore, ListFilter, open_store, parse_store_url

SOURCE_KEYS = {"store", "pipeline", "cloud", "build_id", "env"}
VERSION_KEYS = {"build_id", "version"}
_WHICH = ("action", "build_id", "build_id_file")
# What each action reads; anything else (a misspelt ``lease_second``, ``outputs`` on a begin) is refused.
ACTION_PARAMS: dict[str, frozenset[str]] = {
    "begin": frozenset({*_WHICH, "state", "owner", "lease_seconds"}),
    "complete": frozenset({*_WHICH, "state", "token", "token_file", "outputs", "outputs_file"}),
    "fail": frozenset({*_WHICH, "state", "token", "token_file", "error"}),
    "reset": frozenset({*_WHICH, "to", "reason"}),
}
ACTIONS = tuple(ACTION_PARAMS)
PUT_PARAMS = frozenset().union(*ACTION_PARAMS.values())
MAX_VERSION = 2**63 - 1


def open_source(source: Mapping[str, Any]) -> BuildStore:
    """The store ``source`` names, every key checked before the environment is touched."""
    known_keys(source, SOURCE_KEYS, "source")
    env: dict[str, str] = {}
    for name, value in mapping(source.get("env"), "source.env").items():
        if not ENV_NAME_RE.fullmatch(name):
            raise InvalidInput("source.env", "holds a name that is not an environment variable name")
        given = text({name: value}, name, "source.env")
        if given is None or "\x00" in given:
            raise InvalidInput(f"source.env.{name}", "must be a non-empty string without NUL characters")
        env[name] = given
    url = parse_store_url(text(source, "store", "source"), "source.store")
    if source.get("pipeline") is not None:
        check_name(source["pipeline"], "source.pipeline")
    if source.get("cloud") is not None:
        check_cloud(source["cloud"], "source.cloud")
    if source.get("build_id") is not None:
        check_build_id(source["build_id"], "source.build_id")
    os.environ.update(env)
    return open_store(url)


def version_of(rec: BuildRecord) -> dict[str, str]:
    return {"build_id": rec.build_id, "version": str(rec.version)}


def given_version(value: Any) -> dict[str, str]:
    """A version Concourse hands back: ``{"build_id": ID, "version": "N"}``."""
    version = mapping(value, "version")
    known_keys(version, VERSION_KEYS, "version")
    build_id = check_build_id(text(version, "build_id", "version"), "version.build_id")
    return {"build_id": build_id, "version": str(integer(version, "version", "version", 0, MAX_VERSION))}


def _matches(rec: BuildRecord, source: Mapping[str, Any]) -> bool:
    return all(source.get(k) in (None, getattr(rec, k)) for k in ("pipeline", "cloud", "build_id"))


def check(request: Mapping[str, Any]) -> list[dict[str, str]]:
    source = mapping(request.get("source"), "source")
    store = open_source(source)
    flt = ListFilter.checked(pipeline=source.get("pipeline"), cloud=source.get("cloud"))
    records, problems = store.scan_builds(flt)
    for problem in problems:
        log(f"skipped: {problem}")
    found = sorted((r for r in records if _matches(r, source)), key=lambda r: (r.updated_at, r.build_id))
    if not found:
        return []
    if not request.get("version"):
        return [version_of(found[-1])]
    given = given_version(request["version"])
    build_id, number = given["build_id"], given["version"]
    current = next((r for r in found if r.build_id == build_id), None)
    if current is None:
        since = ""
    elif str(current.version) == number:
        since = current.updated_at
    else:
        since = current.created_at  # changed since: everything after it began (repeats are harmless)
    later = [version_of(r) for r in found if r.updated_at > since and version_of(r) != given]
    return [given, *later]


def get(request: Mapping[str, Any], destination: Path) -> dict[str, Any]:
    source = mapping(request.get("source"), "source")
    version = given_version(request.get("version"))
    known_keys(mapping(request.get("params"), "params"), (), "params")  # a get takes no params
    rec = open_source(source).get(version["build_id"])
    public = rec.to_public()  # lease ids, never the lease token
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput("destination", f"cannot be made ({exc.strerror})") from None
    write_own_file(destination, "build.json", json.dumps(public, indent=2, sort_keys=True) + "\n")
    for name, value in (
        ("build_id", rec.build_id),
        ("current_state", str(rec.current_state)),
        ("status", rec.status),
        ("version", str(rec.version)),
    ):
        write_own_file(destination, name, value + "\n")
    return {"version": version, "metadata": _metadata(rec)}


def _metadata(rec: BuildRecord) -> list[dict[str, str]]:
    return [
        {"name": "pipeline", "value": rec.pipeline},
        {"name": "current_state", "value": str(rec.current_state)},
        {"name": "status", "value": rec.status},
        {"name": "delivered", "value": str(rec.delivered).lower()},
    ]


@contextmanager
def params_named() -> Iterator[None]:
    """The store names the fields of its own arguments (``lease_seconds``, ``outputs.x``); here
    they came from the put's params, so the error says ``params.lease_seconds``."""
    try:
        yield
    except InvalidInput as exc:
        head = exc.field.split(".")[0].split("[")[0]
        if head in PUT_PARAMS:
            raise InvalidInput(f"params.{exc.field}", exc.reason) from None
        raise


def _build_id(sources: Path, params: Mapping[str, Any]) -> str:
    from_file = confined_file(sources, params, "build_id_file")
    if from_file:
        try:
            return check_build_id(from_file)
        except InvalidInput:  # its reason would quote the file's content
            raise InvalidInput(
                "params.build_id_file",
                "its content is not a valid build id (1-128 ASCII letters, digits, '.', '_' or '-')",
            ) from None
    return check_build_id(text(params, "build_id", "params"), "params.build_id")


def _code(params: Mapping[str, Any], key: str) -> int:
    return check_code(integer(params, key, "params", 0, 100), f"params.{key}")


def _file_outputs(sources: Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs ``outputs_file`` holds, checked as the store will check them, with errors that
    name keys only when they are identifiers (the file's text is not quoted)."""
    content = confined_file(sources, params, "outputs_file")
    if not content:
        return {}
    found = parse_json(content, "params.outputs_file")
    if not isinstance(found, dict):
        raise InvalidInput("params.outputs_file", "must hold a JSON object")
    try:
        check_outputs(found, "outputs")
    except InvalidInput as exc:
        key = exc.field.removeprefix("outputs.") if exc.field.startswith("outputs.") else "a key"
        reason = exc.reason.split(", got ")[0]
        raise InvalidInput("params.outputs_file", f"holds outputs the store refuses: {key} {reason}") from None
    return found


def put(request: Mapping[str, Any], sources: Path) -> dict[str, Any]:
    source = mapping(request.get("source"), "source")
    params = mapping(request.get("params"), "params")
    action = params.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
        raise InvalidInput("params.action", f"must be one of {', '.join(ACTIONS)}")
    known_keys(params, ACTION_PARAMS[action], "params")
    build_id = _build_id(sources, params)
    with params_named():
        return _put(action, build_id, params, open_source(source), sources)


def _put(action: str, build_id: str, params: Mapping[str, Any], store: BuildStore, sources: Path) -> dict[str, Any]:
    if action == "reset":  # refused by the store when the build could not run from there
        to = _code(params, "to")
        rec = store.reset(build_id, to=to, reason=str(text(params, "reason", "params")), actor="concourse")
        log(f"build {build_id} reset: next milestone {rec.next_state}")
        return {"version": version_of(rec), "metadata": _metadata(rec)}
    state = _code(params, "state")
    if action == "begin":
        seconds = integer(params, "lease_seconds", "params", 1, MAX_LEASE_SECONDS, default=300)
        owner = check_owner(text(params, "owner", "params", required=False) or "concourse", "params.owner")
        lease = store.begin(build_id, state, owner=owner, lease_seconds=seconds)
        log(f"milestone {state} of {build_id} begun; lease token {lease.token}")
        rec = store.get(build_id)
        return {"version": version_of(rec), "metadata": _metadata(rec)}
    from_file = confined_file(sources, params, "token_file")
    if from_file:
        token = check_token(from_file, "params.token_file")
    elif action == "fail" and params.get("token") is None:
        log(f"no lease token for milestone {state} of {build_id}: its step failed before it began; nothing to record")
        rec = store.get(build_id)
        return {"version": version_of(rec), "metadata": _metadata(rec)}
    else:
        token = check_token(params.get("token"), "params.token")
    if action == "complete":
        outputs = {**_file_outputs(sources, params), **mapping(params.get("outputs"), "params.outputs")}
        rec = store.complete(build_id, state, token=token, outputs=outputs)
        log(f"milestone {state} of {build_id} completed")
    else:
        error = str(text(params, "error", "params"))
        try:
            rec = store.fail(build_id, state, token=token, error=error)
            log(f"milestone {state} of {build_id}: failure recorded")
        except Conflict as exc:
            log(f"milestone {state} of {build_id}: nothing recorded, the attempt is already over ({exc})")
            rec = store.get(build_id)
    return {"version": version_of(rec), "metadata": _metadata(rec)}


def log(message: str, given: object = None) -> None:
    """One line on stderr (Concourse's log), secrets redacted as the CLI redacts what it prints:
    the shared patterns plus the secrets of the environment (``source.env`` once applied) and of
    ``given`` (the request, for errors: its store URL's password, its secret-looking keys)."""
    print(shell_redactor(given)(" ".join(message.splitlines())), file=sys.stderr)


def main(argv: list[str] | None = None, stdin: TextIO | BinaryIO | None = None, stdout: TextIO | None = None) -> int:
    """``python -m airflow_provider_imagebuild.concourse.resource {check|in|out} [DIR]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[Mapping[str, Any], list[str]], Any]] = {
        "check": lambda request, rest: check(request),
        "in": lambda request, rest: get(request, Path(rest[0])),
        "out": lambda request, rest: put(request, Path(rest[0])),
    }
    if not args or args[0] not in commands or (args[0] != "check" and len(args) < 2):
        log("usage: check | in DESTINATION | out SOURCES (a JSON request on stdin)")
        return 1
    request: object = None
    try:
        request = read_request(stdin or sys.stdin)
        answer = commands[args[0]](request, args[1:])
    except ImageBuildError as exc:
        log(f"imagebuild resource: {exc}", request)
        return 1
    except Exception as exc:  # the protocol's promise: one line, never a traceback
        log(f"imagebuild resource: unexpected {type(exc).__name__}: {exc}", request)
        return 1
    json.dump(answer, stdout or sys.stdout)
    (stdout or sys.stdout).write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
