"""``imagebuild concourse render`` and ``imagebuild milestone run``: the same builds from
Concourse or any shell job (see :mod:`airflow_provider_imagebuild.concourse`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from airflow_provider_imagebuild.build.catalog import parse_code
from airflow_provider_imagebuild.cli.output import fail, handles_errors, print_json


@click.group("concourse")
def concourse_group() -> None:
    """Run pipeline specs on Concourse."""


@concourse_group.command("render")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default stdout)")
@click.option(
    "--repo-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The root of the repository Concourse checks out (the spec's folder is relative to it)",
)
@handles_errors
def render(spec: Path, output: Path | None, repo_root: Path) -> None:
    """A Concourse pipeline for SPEC: one job, one task step per milestone, resumable."""
    from airflow_provider_imagebuild.build.ids import without_controls
    from airflow_provider_imagebuild.concourse.render import render_yaml
    from airflow_provider_imagebuild.errors import InvalidInput
    from airflow_provider_imagebuild.spec import load_spec

    loaded = load_spec(spec)
    try:
        spec.resolve().relative_to(repo_root.resolve())
    except ValueError:
        raise InvalidInput("--repo-root", f"{without_controls(str(spec))} is not inside {repo_root}") from None
    text = render_yaml(loaded, spec, repo_root)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}: job build-{loaded.pipeline}, {text.count('- task: ')} milestone steps")


@click.group("milestone")
def milestone_group() -> None:
    """Run one milestone of a spec outside Airflow."""


@milestone_group.command("run")
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("state")
@click.option("--build-id", required=True)
@click.option("--engine", default="shell", show_default=True, help="Who runs it, in the lease owner's name")
@click.option("--json", "as_json", is_flag=True, help="Print the outputs as JSON")
@handles_errors
def run(spec: Path, state: str, build_id: str, engine: str, as_json: bool) -> None:
    """Run milestone STATE of SPEC for build BUILD_ID as the Airflow task would (skip if reached,
    lease, action, complete or fail). Exit 0 done, 2 a failure not worth retrying (bad input, an
    injected failure, another run holds the build), 1 a failure worth retrying."""
    from airflow_provider_imagebuild.concourse.request import integer

    code = parse_code(state, "STATE")  # checked before Airflow is imported (seconds)
    tried = integer({"IMAGEBUILD_TRY": os.environ.get("IMAGEBUILD_TRY", "1")}, "IMAGEBUILD_TRY", "env", 1, 10_000)

    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

    from airflow_provider_imagebuild.concourse.run import run_milestone

    try:
        outputs = run_milestone(spec, code, build_id, engine=engine, try_number=tried)
    except AirflowSkipException as exc:
        click.echo(f"milestone {code} of {build_id} skipped: {exc}")
        return
    except AirflowFailException as exc:
        fail(f"milestone {code} of {build_id}: {exc}", 2)
        return
    except AirflowException as exc:
        fail(f"milestone {code} of {build_id}: {exc}", 1)
        return
    if as_json:
        print_json(outputs)
    else:
        click.echo(f"milestone {code} of {build_id} done")
