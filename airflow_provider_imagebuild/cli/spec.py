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
from airflow_provider_imagebuild.spec import load_spec, load_specs, pipelines_folder, spec_files


def _spec_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders expanded to their specs; by default the DAG file's folder."""
    if not paths:
        paths = [pipelines_folder()]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = spec_files(path)
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


@spec_group.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="The valid specs (file, DAG, milestones) and the invalid ones as JSON"
)
@handles_errors
def spec_check(paths: tuple[Path, ...], as_json: bool) -> None:
    """Validate specs: files, or folders of *.yaml/*.yml (default: $IMAGEBUILD_PIPELINES_DIR, else
    dags/pipelines). Prints one line per spec; exits 2 when any spec is invalid."""
    loaded, errors = load_specs(_spec_paths(paths))
    redact = redactor()
    if as_json:
        print_json(
            {
                "valid": [
                    {"file": str(path), "dag_id": spec.effective_dag_id, "milestones": plan_from_spec(spec).codes}
                    for path, spec in loaded
                ],
                "invalid": [{"file": exc.file, "key": exc.path, "reason": redact(exc.reason)} for exc in errors],
            }
        )
    else:
        for path, spec in loaded:
            click.echo(f"ok {path}: DAG {spec.effective_dag_id}, {len(plan_from_spec(spec).steps)} milestones")
        for exc in errors:
            click.echo(f"imagebuild: error: {redact(str(exc))}", err=True)
    if errors:
        raise SystemExit(InvalidInput.exit_code)


@spec_group.command("plan")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The plan (its steps, actions and retry policies) as JSON")
@handles_errors
def spec_plan(path: Path, as_json: bool) -> None:
    """The DAG a spec becomes: one row per milestone task, with its phase, action and retry policy."""
    if not path.is_file():
        raise NotFound(f"{path}: no such file")
    plan = plan_from_spec(load_spec(path))
    emit(as_json, plan.to_public, lambda render: render.plan_table(plan))
