"""What every ``imagebuild`` command shares: the store it uses, chosen once per command, and who is
at the keyboard.

A module of its own, below ``cli/main.py`` and the command modules it gathers (``retention``,
``sbom``...): those need the store too, and reaching back into ``main`` for it made an import circle.
"""

from __future__ import annotations

import click

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
