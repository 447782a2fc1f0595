"""What every ``imagebuild`` command shares: the store it uses, chosen once per command, and who is
at the keyboard.

A module of its own, below ``cli/main.py`` and the command modules it gathers (``retention``,
``sbom``...): those need the store too, and reaching back into ``main`` for it made an import circle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.hooks.store_choice import StoreChoice, choose_store, open_choice
from airflow_provider_imagebuild.store import BuildStore


def command_choice(ctx: click.Context) -> StoreChoice:
    """The store this command uses: ``--store`` or ``--conn-id``, else the order a task follows
    (:mod:`airflow_provider_imagebuild.hooks.store_choice`), chosen once per command."""
    obj = ctx.find_root().obj
    if obj.get("choice") is None:
        obj["choice"] = choose_store(obj.get("url"), obj.get("conn_id"), url_from="--store", conn_from="--conn-id")
    choice: StoreChoice = obj["choice"]
    return choice


def command_store(ctx: click.Context) -> BuildStore:
    """The chosen store, opened once per command."""
    obj = ctx.find_root().obj
    if obj.get("store") is None:
        obj["store"] = open_choice(command_choice(ctx))
    store: BuildStore = obj["store"]
    return store


def actor() -> str:
    """Who is at the keyboard, for the build's history."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def given_specs(paths: tuple[str, ...]) -> tuple[list[Any], Path]:
    """The specs a command over pipelines works on (``gc``, ``retention``): the ``--spec`` files,
    else the pipelines folder's, and that folder (for messages). A file that is not there or a
    broken spec stops the command in one line before anything is listed or deleted: a collector
    that skipped a broken spec would judge its pipeline's resources without it."""
    from airflow_provider_imagebuild.spec.pipeline import load_specs, pipelines_folder, spec_files

    folder = pipelines_folder()
    files = [Path(p) for p in paths] if paths else (spec_files(folder) if folder.is_dir() else [])
    for f in files:
        if not f.is_file():
            raise InvalidInput("--spec", f"{f} is not a file")
    loaded, errors = load_specs(files)
    if errors:
        raise errors[0]
    return [spec for _, spec in loaded], folder
