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

Bad requests exit 1 naming the field and the reason, with nothing written.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from airflow_provider_imagebuild.build.catalog import parse_code
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import Conflict, ImageBuildError, InvalidInput
from airflow_provider_imagebuild.redact import redact_patterns
from airflow_provider_imagebuild.store import BuildStore, ListFilter, open_store

SOURCE_KEYS = {"store", "pipeline", "cloud", "build_id", "env"}
ACTIONS = ("begin", "complete", "fail", "reset")


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be a mapping")
    return value


def _text(params: Mapping[str, Any], key: str, field: str) -> str:
    value = params.get(key)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise InvalidInput(f"{field}.{key}", "is required (a string)")
    return str(value)


def open_source(source: Mapping[str, Any]) -> BuildStore:
    unknown = set(source) - SOURCE_KEYS
    if unknown:
        raise InvalidInput(f"source.{sorted(unknown)[0]}", f"unknown key (known: {', '.join(sorted(SOURCE_KEYS))})")
    for name, value in _mapping(source.get("env"), "source.env").items():
        os.environ[str(name)] = str(value)
    return open_store(_text(source, "store", "source"))


def version_of(rec: BuildRecord) -> dict[str, str]:
    return {"build_id": rec.build_id, "version": str(rec.version)}


def _matches(rec: BuildRecord, source: Mapping[str, Any]) -> bool:
    return all(source.get(k) in (None, getattr(rec, k)) for k in ("pipeline", "cloud", "build_id"))


def check(request: Mapping[str, Any]) -> list[dict[str, str]]:
    source = _mapping(request.get("source"), "source")
    store = open_source(source)
    flt = ListFilter.checked(pipeline=source.get("pipeline"), cloud=source.get("cloud"))
    records, problems = store.scan_builds(flt)
    for problem in problems:
        log(f"skipped: {problem}")
    found = sorted((r for r in records if _matches(r, source)), key=lambda r: (r.updated_at, r.build_id))
    if not found:
        return []
    given = request.get("version")
    if not given:
        return [version_of(found[-1])]
    given = _mapping(given, "version")
    build_id, number = _text(given, "build_id", "version"), _text(given, "version", "version")
    current = next((r for r in found if r.build_id == build_id), None)
    if current is None:
        since = ""
    elif str(current.version) == number:
        since = current.updated_at
    else:
        since = current.created_at  # changed since: everything after it began (repeats are harmless)
    later = [
        version_of(r)
        for r in found
        if r.updated_at > since and version_of(r) != {"build_id": build_id, "version": number}
    ]
    return [{"build_id": build_id, "version": number}, *later]


def get(request: Mapping[str, Any], destination: Path) -> dict[str, Any]:
    source = _mapping(request.get("source"), "source")
    version = _mapping(request.get("version"), "version")
    build_id = _text(version, "build_id", "version")
    rec = open_source(source).get(build_id)
    public = rec.to_public()  # lease ids, never the lease token
    destination.mkdir(parents=True, exist_ok=True)
    (destination / "build.json").write_text(json.dumps(public, indent=2, sort_keys=True) + "\n")
    for name, value in (
        ("build_id", rec.build_id),
        ("current_state", str(rec.current_state)),
        ("status", rec.status),
        ("version", str(rec.version)),
    ):
        (destination / name).write_text(value + "\n")
    return {"version": version, "metadata": _metadata(rec)}


def _metadata(rec: BuildRecord) -> list[dict[str, str]]:
    return [
        {"name": "pipeline", "value": rec.pipeline},
        {"name": "current_state", "value": str(rec.current_state)},
        {"name": "status", "value": rec.status},
        {"name": "delivered", "value": str(rec.delivered).lower()},
    ]


def _file_text(sources: Path, params: Mapping[str, Any], key: str) -> str | None:
    """The content of the file ``params[key]`` names (relative to the sources folder), or None if
    the file is not there; a path leaving the sources folder is refused."""
    name = params.get(key)
    if name is None:
        return None
    if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise InvalidInput(f"params.{key}", "must be a relative path inside the put's sources")
    path = sources / name
    return path.read_text().strip() if path.is_file() else None


def put(request: Mapping[str, Any], sources: Path) -> dict[str, Any]:
    source = _mapping(request.get("source"), "source")
    params = _mapping(request.get("params"), "params")
    action = params.get("action")
    if action not in ACTIONS:
        raise InvalidInput("params.action", f"must be one of {', '.join(ACTIONS)}, got {action!r}")
    build_id = _file_text(sources, params, "build_id_file") or _text(params, "build_id", "params")
    store = open_source(source)
    if action == "reset":
        to = parse_code(_text(params, "to", "params"), "params.to")
        rec = store.reset(build_id, to=to, reason=_text(params, "reason", "params"), actor="concourse")
        log(f"build {build_id} reset: next milestone {rec.next_state}")
        return {"version": version_of(rec), "metadata": _metadata(rec)}
    state = parse_code(_text(params, "state", "params"), "params.state")
    if action == "begin":
        seconds = int(params.get("lease_seconds", 300))
        lease = store.begin(build_id, state, owner=str(params.get("owner") or "concourse"), lease_seconds=seconds)
        log(f"milestone {state} of {build_id} begun; lease token {lease.token}")
        rec = store.get(build_id)
        return {"version": version_of(rec), "metadata": _metadata(rec)}
    token = _file_text(sources, params, "token_file") or params.get("token")
    if action == "fail" and not token:
        log(f"no lease token for milestone {state} of {build_id}: its step failed before it began; nothing to record")
        rec = store.get(build_id)
        return {"version": version_of(rec), "metadata": _metadata(rec)}
    token = _text({"token": token}, "token", "params")
    if action == "complete":
        outputs = _mapping(params.get("outputs"), "params.outputs")
        from_file = _file_text(sources, params, "outputs_file")
        if from_file:
            outputs = {**_mapping(json.loads(from_file), "params.outputs_file"), **outputs}
        rec = store.complete(build_id, state, token=token, outputs={str(k): v for k, v in outputs.items()})
        log(f"milestone {state} of {build_id} completed")
    else:
        try:
            rec = store.fail(build_id, state, token=token, error=_text(params, "error", "params"))
            log(f"milestone {state} of {build_id}: failure recorded")
        except Conflict as exc:
            log(f"milestone {state} of {build_id}: nothing recorded, the attempt is already over ({exc})")
            rec = store.get(build_id)
    return {"version": version_of(rec), "metadata": _metadata(rec)}


def log(message: str) -> None:
    print(redact_patterns(message), file=sys.stderr)


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
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
    try:
        request = json.load(stdin or sys.stdin)
        if not isinstance(request, dict):
            raise InvalidInput("request", "must be a JSON object")
        answer = commands[args[0]](request, args[1:])
    except json.JSONDecodeError as exc:
        log(f"imagebuild resource: the request is not JSON: {exc}")
        return 1
    except ImageBuildError as exc:
        log(f"imagebuild resource: {exc}")
        return 1
    json.dump(answer, stdout or sys.stdout)
    (stdout or sys.stdout).write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
