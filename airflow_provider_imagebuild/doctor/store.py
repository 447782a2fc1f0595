"""Which store a pipeline's builds are recorded in, why that one, and whether it takes a write.

The choice is :func:`airflow_provider_imagebuild.hooks.store_choice.choose_store`, the one order
every part uses (the tasks, the watchdog, the UI, the CLI); only ``--store`` differs: for the doctor
it stands in for ``$IMAGEBUILD_STORE`` as the tasks would read it.

The check reads one record and writes and deletes a probe record through the store's own
compare-and-swap (:meth:`BuildStore.probe`), so a read-only disk, a missing table or a policy that
refuses writes shows with the backend's reason. A local store that does not exist yet is not
created: its folder is checked instead (the first build creates it).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.doctor.findings import MISSING, OK, SKIPPED, Finding
from airflow_provider_imagebuild.errors import ImageBuildError
from airflow_provider_imagebuild.hooks import store_choice
from airflow_provider_imagebuild.hooks.store_choice import ENV_URL, STORE_CONN_ENV, STORE_ENV, StoreChoice
from airflow_provider_imagebuild.redact.patterns import Redactor, redact_patterns
from airflow_provider_imagebuild.store import BuildStore, open_store, parse_store_url
from airflow_provider_imagebuild.store.base import PROBE_BUILD_ID
from airflow_provider_imagebuild.store.url import StoreURL

__all__ = ["STORE_CONN_ENV", "STORE_ENV", "StoreChoice", "choose_store", "examine_store"]
INIT_FIX = "if it was never prepared: imagebuild --store URL store init (schema, folder, table or bucket)"
WRITE_FIX = "give this worker write access to the store (its disk, or the policy of the credentials it uses)"


def choose_store(
    spec_store: str | None, spec_conn_id: str | None, cli_url: str | None = None, cli_from: str = ""
) -> StoreChoice:
    """The store a pipeline's tasks open, and why. ``cli_url`` is ``--store``, in the place
    ``$IMAGEBUILD_STORE`` takes."""
    env = dict(os.environ)
    if cli_url:
        env[STORE_ENV] = cli_url
    choice = store_choice.choose_store(spec_store, spec_conn_id, env=env)
    if choice.rule == ENV_URL and cli_url and cli_from:
        choice = replace(choice, chosen_by=cli_from)
    return choice


def _uncreated(parsed: StoreURL) -> Path | None:
    """The file or folder of a local store that its first write would create, when it is missing."""
    if parsed.scheme in ("sqlite", "sqlite+s3"):
        path = Path(parsed.path)
        return None if path.exists() else path
    if parsed.scheme == "file":
        builds = Path(parsed.path) / "builds"
        return None if builds.exists() else builds
    return None


def _creatable(path: Path) -> str | None:
    """Why ``path`` could not be created (None: it could), judged on its nearest existing folder."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        return f"{folder} is on a read-only file system"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable by this user"
    return None


def _open(choice: StoreChoice) -> tuple[BuildStore, StoreURL]:
    if choice.conn_id:
        from airflow_provider_imagebuild.hooks.build_state import BuildStateHook

        hook = BuildStateHook(choice.conn_id)
        url, _ = hook.store_settings()
        return hook.get_store(), parse_store_url(url, f"connection {choice.conn_id}.store_url")
    parsed = parse_store_url(choice.url, "store")
    return open_store(parsed), parsed


def _why(exc: BaseException, redact: Redactor) -> str:
    """An error as one line: a typed error's own text, else its type and text, redacted (an SDK's
    error may quote what it was given: ``redact`` knows the secrets of the connections read)."""
    if isinstance(exc, ImageBuildError):
        text = str(exc)
    elif isinstance(exc, ImportError):
        text = f"cannot import {exc.name or 'a module'} the store needs ({exc})"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(" ".join(text.split()))


def examine_store(
    choice: StoreChoice, needed_by: list[str], probe: bool = True, redact: Redactor = redact_patterns
) -> tuple[dict[str, Any], Finding]:
    """The store's entry of the report (its ``--json`` form) and its finding."""
    entry: dict[str, Any] = {
        "store": choice.label,
        "url": None,
        "conn_id": choice.conn_id,
        "chosen_by": choice.chosen_by,
        "needed_by": needed_by,
        "exists": None,
        "reachable": None,
        "writable": None,
        "problem": None,
    }
    check = f"store {choice.label}"

    def failed(problem: str, fix: str = "") -> tuple[dict[str, Any], Finding]:
        entry["problem"] = problem
        return entry, Finding(check, MISSING, problem, fix, tuple(needed_by))

    try:
        store, parsed = _open(choice)
    except Exception as exc:
        fix = "define the connection (type imagebuild_state, extra.store_url)" if choice.conn_id else ""
        return failed(f"cannot be opened: {_why(exc, redact)}", fix)
    entry["url"] = redact_patterns(parsed.raw or choice.url or "")
    chosen = f"chosen by {choice.chosen_by}" if not choice.conn_id else f"{entry['url']}, chosen by {choice.chosen_by}"
    missing = _uncreated(parsed)
    if missing is not None:
        entry["exists"] = False
        why = _creatable(missing)
        if why:
            return failed(f"{chosen}: {missing} does not exist and cannot be created: {why}", INIT_FIX)
        entry["writable"] = True
        detail = f"{chosen}: not created yet; the first build (or store init) creates {missing}"
        return entry, Finding(check, OK, detail, "", tuple(needed_by))
    if not probe:
        return entry, Finding(check, SKIPPED, f"{chosen}: not probed (--no-store-probe)", "", tuple(needed_by))
    try:
        store.find(PROBE_BUILD_ID)
        entry["exists"] = entry["reachable"] = True
        store.probe()
        entry["writable"] = True
    except Exception as exc:
        if entry["reachable"]:
            entry["writable"] = False
            return failed(f"{chosen}: answers but refuses a write: {_why(exc, redact)}", WRITE_FIX)
        entry["reachable"] = False
        return failed(f"{chosen}: cannot be read: {_why(exc, redact)}", INIT_FIX)
    finally:
        store.close()
    return entry, Finding(check, OK, f"{chosen}: read and probe write ok", "", tuple(needed_by))
