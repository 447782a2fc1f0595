"""``imagebuild doctor``: a worker's check, run by a platform engineer on each worker.

Exit 0 when everything the given specs need is here, 1 when something is missing (each missing
thing named, with who needs it and how to install it), 2 when a spec is invalid. Without SPEC,
the specs of ``$IMAGEBUILD_PIPELINES_DIR`` (else ``dags/pipelines``) when that folder exists;
without any spec, only the store is needed and the rest is shown as found.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from airflow_provider_imagebuild.cli.output import handles_errors, print_json, redactor
from airflow_provider_imagebuild.cli.spec import _spec_paths
from airflow_provider_imagebuild.doctor.findings import ABSENT, MISSING, OK, SKIPPED, WARN
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec.pipeline import load_specs, pipelines_folder, spec_files

STATUS_STYLE = {OK: "green", MISSING: "bold red", WARN: "yellow", ABSENT: "dim", SKIPPED: "dim"}


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While the checks run, whatever they print goes to stderr: Airflow's loggers write to
    stdout (a connection read by a hook logs there), and stdout carries the report alone, which
    ``--json`` makes a document a script parses. Both the Python stream and file descriptor 1 are
    moved, as some loggers hold the stream they were made with."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptors 1 and 2 to move (a daemon): nothing prints there either
        saved = -1
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        if sys.__stdout__ is not None:
            sys.__stdout__.flush()
        if saved >= 0:
            os.dup2(saved, 1)
            os.close(saved)


def _default_specs() -> list[Path]:
    """The worker's specs (the DAG file's folder), or none when there is no such folder."""
    folder = pipelines_folder()
    return spec_files(folder) if folder.is_dir() else []


def _who(needed_by: list[str]) -> str:
    """Who needs a thing, one line per spec file: ``web.yaml: milestones.10: ansible, ... (+6)``."""
    fields: dict[str, list[str]] = {}
    for who in needed_by:
        file, _, field = who.partition(" (")
        fields.setdefault(file, [])
        if field:
            fields[file].append(field.removesuffix(")"))
    lines = []
    for file, found in fields.items():
        name = Path(file).name if file.endswith((".yaml", ".yml")) else file
        shown = ", ".join(found[:2]) + (f" (+{len(found) - 2})" if len(found) > 2 else "")
        lines.append(f"{name}: {shown}" if shown else name)
    return "\n".join(lines)


def _table(report: dict[str, Any]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    specs = report["specs"]
    title = f"{len(specs)} spec(s)" if specs else "no specs: only the store is needed"
    table = Table(title=f"imagebuild doctor · {title}", title_justify="left")
    for column in ("check", "status", "detail", "needed by / fix"):
        table.add_column(column, overflow="fold")
    for finding in report["findings"]:
        status = finding["status"]
        fix = f"→ {finding['fix']}" if finding["fix"] and status != OK else ""
        tail = "\n".join(part for part in (_who(finding["needed_by"]), fix) if part)
        style = STATUS_STYLE.get(status, "")
        table.add_row(escape(finding["check"]), f"[{style}]{status}[/]", escape(finding["detail"]), escape(tail))
    return table


@click.command("doctor")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path), metavar="[SPEC|FOLDER]...")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (the same keys on every run)")
@click.option("--no-store-probe", is_flag=True, help="Do not reach the store: no network at all")
@click.option(
    "--airflow-db", is_flag=True, help="Also read connections from Airflow's metadata database (where it is reachable)"
)
@click.pass_context
@handles_errors
def doctor(ctx: click.Context, paths: Sequence[Path], as_json: bool, no_store_probe: bool, airflow_db: bool) -> None:
    """Check this worker against the specs it runs: Packer (version, plugins, what each template
    needs), Ansible, the local target's tools, the Python extras of each cloud, destination and
    notification, the Airflow connections the specs name, and the store (which one, why, and a
    probe write that leaves nothing behind). Exit 0 healthy, 1 something needed is missing."""
    from airflow_provider_imagebuild.doctor.connections import use_airflow_db
    from airflow_provider_imagebuild.doctor.report import examine

    files = _spec_paths(paths) if paths else _default_specs()
    loaded, errors = load_specs(files)
    redact = redactor()
    for exc in errors:
        click.echo(f"imagebuild: error: {redact(str(exc))}", err=True)
    if errors:
        raise SystemExit(InvalidInput.exit_code)
    root = ctx.find_root()
    given = root.get_parameter_source("store_url") == ParameterSource.COMMANDLINE
    if airflow_db:
        use_airflow_db()
    with _stdout_to_stderr():
        report = examine(
            loaded,
            cli_store=root.params.get("store_url"),
            cli_store_from="--store" if given else "$IMAGEBUILD_STORE",
            probe_store=not no_store_probe,
            redact=lambda text: redactor()(text),  # made at each use: it learns the secrets of what was read
        )
    public = report.to_public()
    if as_json:
        print_json(public)
    else:
        from airflow_provider_imagebuild.cli import render

        render.console().print(_table(public))
        missing = public["missing"]
        if missing:
            click.echo(f"{len(missing)} missing: " + "; ".join(f["check"] for f in missing))
        else:
            click.echo("healthy: everything " + ("the specs need" if public["specs"] else "needed") + " is here")
    raise SystemExit(0 if report.ok else 1)
