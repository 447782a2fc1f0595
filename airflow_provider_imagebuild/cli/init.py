"""``imagebuild init``: start a new image-build project (see :mod:`airflow_provider_imagebuild.scaffold`)."""

from __future__ import annotations

from pathlib import Path

import click

from airflow_provider_imagebuild.cli.output import handles_errors


@click.command("init")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--cloud", required=True, help="local, aws, azure, gcp, openstack or vsphere")
@click.option("--os", "os_name", required=True, help="The image's OS, e.g. rhel-8.10 or debian-12")
@click.option("--image-type", required=True, help="What the image is for, e.g. webserver")
@click.option("--name", default=None, help="The pipeline's name (default <cloud>-<os>-<image-type>)")
@click.option("--force", is_flag=True, help="Write into a folder that is not empty")
@handles_errors
def init(folder: Path, cloud: str, os_name: str, image_type: str, name: str | None, force: bool) -> None:
    """A ready project in FOLDER: a pipeline spec for the cloud, the playbooks per milestone,
    group_vars, the Packer template where the cloud uses one, the DAG file, a README and a
    Makefile (make check, make run BUILD_ID=...)."""
    from airflow_provider_imagebuild.scaffold import TODO, plan_scaffold, write_scaffold

    plan = plan_scaffold(folder, cloud, os_name, image_type, name, force)
    written = write_scaffold(plan)
    click.echo(f"wrote {len(written)} files and the playbooks into {folder}: pipeline {plan.name}, DAG {plan.dag_id}")
    click.echo(f"before the first run: {TODO[cloud]}")
    click.echo(f"then: cd {folder} && make check && make run BUILD_ID=first-try")


@click.command("ansible-callback-path")
def ansible_callback_path() -> None:
    """The folder of the provider's Ansible callback plugin ``imagebuild`` (for ANSIBLE_CALLBACK_PLUGINS)."""
    from airflow_provider_imagebuild.ansible_plugins import callback

    click.echo(Path(callback.__file__).parent)
