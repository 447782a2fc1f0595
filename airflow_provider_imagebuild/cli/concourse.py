"""``imagebuild concourse render`` and ``imagebuild milestone run``: the same builds from
Concourse or any shell job (see :mod:`airflow_provider_imagebuild.concourse`)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click

from airflow_provider_imagebuild.build.catalog import parse_code
from airflow_provider_imagebuild.cli.output import fail, handles_errors, print_json
from airflow_provider_imagebuild.errors import Conflict


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
    from airflow_provider_imagebuild.spec.pipeline import load_spec

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
@click.argument("milestone")
@click.option("--build-id", required=True)
@click.option("--engine", default="shell", show_default=True, help="Who runs it, in the lease owner's name")
@click.option("--json", "as_json", is_flag=True, help="Print the milestone's outputs as JSON")
@handles_errors
def run(spec: Path, milestone: str, build_id: str, engine: str, as_json: bool) -> None:
    """Run MILESTONE of SPEC for build BUILD_ID as the Airflow task would (skip if reached, lease,
    action, complete or fail). Exit 0 done (or already reached), 1 a failure worth retrying (run
    the step again), 2 a failure not worth retrying (bad input, an injected failure), 3 a conflict
    (another run holds the build's lease, an earlier milestone is not done), 4 no such build."""
    from airflow_provider_imagebuild.concourse.request import integer

    code = parse_code(milestone, "MILESTONE")  # checked before Airflow is imported (seconds)
    tried = integer({"IMAGEBUILD_TRY": os.environ.get("IMAGEBUILD_TRY", "1")}, "IMAGEBUILD_TRY", "env", 1, 10_000)

    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

    from airflow_provider_imagebuild.concourse.run import run_milestone
    from airflow_provider_imagebuild.rerun import run_outside_airflow

    again = ["imagebuild", "milestone", "run", str(spec), str(code), "--build-id", build_id]
    run_outside_airflow(shlex.join(again + (["--engine", engine] if engine != "shell" else [])))
    name = f"milestone {code} of build {build_id}"
    try:
        outputs = run_milestone(spec, code, build_id, engine=engine, try_number=tried)
    except AirflowSkipException as exc:
        click.echo(f"{name} skipped: {exc}")
        return
    except AirflowFailException as exc:
        fail(f"{name}: {exc}", EXIT_CONFLICT if _conflict(exc) else 2)
        return
    except AirflowException as exc:
        fail(f"{name}: {exc}", EXIT_CONFLICT if _conflict(exc) else 1)
        return
    if as_json:
        print_json(outputs)
    else:
        click.echo(f"{name} done")


EXIT_CONFLICT = Conflict.exit_code  # the CLI's contract: 3 for a lease held or a milestone out of order


def _conflict(exc: BaseException) -> bool:
    """Whether the store's refusal (a lease held by another run, a milestone out of order) is what
    stopped the task: the operator reports it as a failure not worth retrying, with it as cause."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, Conflict):
            return True
        seen.add(id(link))
        link = link.__cause__
    return False
