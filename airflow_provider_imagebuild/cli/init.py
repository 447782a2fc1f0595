"""``imagebuild init``: start a new image-build project (see :mod:`airflow_provider_imagebuild.scaffold`)."""

from __future__ import annotations

from pathlib import Path

import click

from airflow_provider_imagebuild.cli.output import handles_errors, print_json


@click.command("init")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--cloud", required=True, help="local, aws, azure, gcp, openstack or vsphere")
@click.option("--os", "os_name", required=True, help="The image's OS, e.g. rhel-8.10 or debian-12")
@click.option("--image-type", required=True, help="What the image is for, e.g. webserver")
@click.option("--name", default=None, help="The pipeline's name (default <cloud>-<os>-<image-type>)")
@click.option(
    "--force",
    is_flag=True,
    help="Write into a folder that is not empty. Missing files are written; files already as init writes "
    "them are left alone; a file that differs is kept and init's version goes beside it as FILE.new (listed, "
    "exit 0). A symbolic link, or a folder where a file goes (or the reverse), inside FOLDER is refused before "
    "anything is written: init never writes through a link.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="What was written, left alone and put beside, the connection to create and the values to fill in, as JSON",
)
@handles_errors
def init(folder: Path, cloud: str, os_name: str, image_type: str, name: str | None, force: bool, as_json: bool) -> None:
    """A ready project in FOLDER: a pipeline spec for the cloud, the playbooks per milestone,
    group_vars, the Packer template where the cloud uses one, the DAG file, a README and a
    Makefile (make doctor, make check, make run BUILD_ID=...).

    FOLDER must be empty or missing unless --force; with --force no file of yours is replaced
    (see --force)."""
    from airflow_provider_imagebuild.scaffold.project import connection_todo, plan_scaffold, write_scaffold
    from airflow_provider_imagebuild.spec.yaml_reader import load_yaml, placeholders

    plan = plan_scaffold(folder, cloud, os_name, image_type, name, force)
    report = write_scaffold(plan)
    todo = placeholders(load_yaml(plan.spec_path.read_text()))
    if as_json:
        print_json({"folder": str(folder), "pipeline": plan.name, "dag_id": plan.dag_id,
                    "written": [str(p) for p in report.written], "unchanged": [str(p) for p in report.unchanged],
                    "beside": [str(p) for p in report.beside], "connection": connection_todo(plan.cloud),
                    "fill_in": [{"key": key_path, "what": what} for key_path, what in todo]})  # fmt: skip
        return
    same = f" ({_files(len(report.unchanged))} already as init writes them, left alone)" if report.unchanged else ""
    click.echo(f"wrote {_files(len(report.written))} into {folder}{same}: pipeline {plan.name}, DAG {plan.dag_id}")
    if report.beside:
        click.echo(f"kept {_files(len(report.beside))} of yours that differ from what init writes; init's version")
        click.echo("is beside each as .new, to compare and merge by hand:")
        for path in report.beside:
            click.echo(f"  {path}")
    click.echo(f"before the first run: {connection_todo(plan.cloud)}")
    if todo:
        click.echo(f"and fill in these values of {plan.spec_path} (`make check` names those left):")
        for key_path, what in todo:
            click.echo(f"  {key_path}: {what}")
    click.echo(f"then: cd {folder} && make doctor && make check && make run BUILD_ID=first-try")


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


@click.command("ansible-callback-path")
def ansible_callback_path() -> None:
    """The folder of the provider's Ansible callback plugin ``imagebuild`` (for ANSIBLE_CALLBACK_PLUGINS)."""
    from airflow_provider_imagebuild.ansible_plugins import callback

    click.echo(Path(callback.__file__).parent)
