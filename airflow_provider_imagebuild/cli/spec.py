"""``imagebuild spec``: pipeline specs checked and planned from a shell, before Airflow sees them.

A merge-request job runs ``imagebuild spec check dags/pipelines``: the same validation as the DAG
file (file, key path and reason; a DAG id used twice), without importing Airflow, so that a
broken spec is refused in review instead of turning up as an import error on the DAG processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from airflow_provider_imagebuild.cli.output import emit, handles_errors, print_json, redactor
from airflow_provider_imagebuild.errors import InvalidInput, NotFound
from airflow_provider_imagebuild.plan import plan_from_spec
from airflow_provider_imagebuild.spec.pipeline import CLOUDS, SpecError, load_spec, load_specs, pipelines_folder
from airflow_provider_imagebuild.spec.schema import schema_json


def spec_files_below(folder: Path) -> list[Path]:
    """The spec files (``*.yaml``, ``*.yml``) of a folder and its sub-folders, in a stable order
    (hidden folders skipped: ``.git``, a virtualenv's ``.venv``)."""
    found = [*folder.rglob("*.yaml"), *folder.rglob("*.yml")]
    visible = [p for p in found if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    return sorted(p for p in visible if p.is_file())


def _spec_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders expanded to the specs below them; by default the DAG file's folder."""
    if not paths:
        paths = [pipelines_folder()]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = spec_files_below(path)
            if not found:
                raise NotFound(f"{path}: no pipeline specs (*.yaml, *.yml) in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise NotFound(f"{path}: no such file or folder")
    return files


@click.group("spec")
def spec_group() -> None:
    """Check pipeline specs and show the DAG each one becomes."""


def _problem_lines(errors: list[SpecError]) -> list[str]:
    """Every problem of every refused spec as ``FILE:LINE:COLUMN: key.path: message`` (redacted)."""
    redact = redactor()
    return [redact(problem.located(exc.file)) for exc in errors for problem in exc.problems]


def _summary(ok: int, invalid: int) -> str:
    return f"{ok} ok, {invalid} invalid"


@spec_group.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The valid specs (file, DAG, milestones) and every error as JSON")
@handles_errors
def spec_check(paths: tuple[Path, ...], as_json: bool) -> None:
    """Validate specs: files, or folders searched for *.yaml/*.yml below them (default:
    $IMAGEBUILD_PIPELINES_DIR, else dags/pipelines). Prints one line per valid spec, every error as
    FILE:LINE:COLUMN: key.path: message (on stderr), and a summary line; exits 2 when any spec is
    invalid."""
    loaded, errors = load_specs(_spec_paths(paths))
    redact = redactor()
    if as_json:
        print_json(
            {
                "valid": [
                    {"file": str(path), "dag_id": spec.effective_dag_id, "milestones": plan_from_spec(spec).codes}
                    for path, spec in loaded
                ],
                "invalid": [
                    {
                        "file": exc.file,
                        "line": problem.line,
                        "column": problem.column,
                        "key": problem.path,
                        "reason": redact(problem.reason),
                    }
                    for exc in errors
                    for problem in exc.problems
                ],
                "summary": {"ok": len(loaded), "invalid": len(errors)},
            }
        )
    else:
        for path, spec in loaded:
            click.echo(f"ok {path}: DAG {spec.effective_dag_id}, {len(plan_from_spec(spec).steps)} milestones")
        for line in _problem_lines(errors):
            click.echo(line, err=True)
        click.echo(_summary(len(loaded), len(errors)))
    if errors:
        raise SystemExit(InvalidInput.exit_code)


@spec_group.command("plan")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The plan (its steps, actions and retry policies) as JSON")
@handles_errors
def spec_plan(paths: tuple[Path, ...], as_json: bool) -> None:
    """The DAG a spec becomes: one row per milestone task, with its phase, action and retry policy.
    Given a folder (or several paths), the plan of each spec below it, every error as
    FILE:LINE:COLUMN: key.path: message, and a summary line."""
    if len(paths) == 1 and not paths[0].is_dir():
        if not paths[0].is_file():
            raise NotFound(f"{paths[0]}: no such file")
        plan = plan_from_spec(load_spec(paths[0]))
        emit(as_json, plan.to_public, lambda render: render.plan_table(plan))
        return
    loaded, errors = load_specs(_spec_paths(paths))
    plans = [(path, plan_from_spec(spec)) for path, spec in loaded]
    if as_json:
        redact = redactor()
        print_json(
            {
                "plans": [{"file": str(path), **plan.to_public()} for path, plan in plans],
                "invalid": [
                    {"file": exc.file, "line": p.line, "column": p.column, "key": p.path, "reason": redact(p.reason)}
                    for exc in errors
                    for p in exc.problems
                ],
                "summary": {"ok": len(plans), "invalid": len(errors)},
            }
        )
    else:
        for path, plan in plans:
            click.echo(f"# {path}")
            emit(False, plan.to_public, lambda render, plan=plan: render.plan_table(plan))  # type: ignore[misc]
        for line in _problem_lines(errors):
            click.echo(line, err=True)
        click.echo(_summary(len(plans), len(errors)))
    if errors:
        raise SystemExit(InvalidInput.exit_code)


@spec_group.command("schema")
@click.option("--cloud", type=click.Choice(CLOUDS), default=None, help="Only this cloud's spec (default: every cloud)")
@handles_errors
def spec_schema_command(cloud: str | None) -> None:
    """The JSON Schema (draft 2020-12) of a spec, from the models spec check uses: one variant per
    cloud, chosen by `cloud:`. For editors (`# yaml-language-server: $schema=...`) and CI."""
    click.echo(schema_json(cloud), nl=False)
