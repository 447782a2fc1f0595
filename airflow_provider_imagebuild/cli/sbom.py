"""``imagebuild build sbom BUILD_ID``: what is inside a build's image (#33).

The seal writes the image's bill of materials (CycloneDX JSON) beside the image; this prints it,
proven first (:mod:`..sbom.stored`): a summary and one line per package for a person, the document
itself with ``--json`` (for grype, trivy, Dependency-Track: ``imagebuild build sbom ID --json >
image.cdx.json``). Exit 4 when the build has none or the file is on another worker's disk, 2 when
the file is not what the seal recorded.
"""

from __future__ import annotations

import json
from typing import Any

import click

from airflow_provider_imagebuild.cli.output import emit, handles_errors, note


@click.command("sbom")
@click.argument("build_id")
@click.option(
    "--json", "as_json", is_flag=True, help="The CycloneDX JSON document itself (as the seal wrote it beside the image)"
)
@click.pass_context
@handles_errors
def build_sbom(ctx: click.Context, build_id: str, as_json: bool) -> None:
    """Show the software bill of materials of a build's image: its packages, versions and licenses."""
    from airflow_provider_imagebuild.cli.context import command_store
    from airflow_provider_imagebuild.sbom.cyclonedx import summary
    from airflow_provider_imagebuild.sbom.stored import read_sbom

    ref, text = read_sbom(command_store(ctx).get(build_id))
    if as_json:
        click.echo(text)
        return
    doc = json.loads(text)
    emit(False, lambda: doc, lambda render: _table(render, build_id, doc))
    about = summary(text)
    kernel = ", ".join(about["kernel"]) or "none listed"
    note(
        f"{about['format']}: {about['packages']} packages ({about['licensed']} with a license), kernel {kernel}; "
        f"{ref.path} (sha256 {ref.sha256[:12]}...)"
    )


def _table(render: Any, build_id: str, doc: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"packages in the image of build {build_id}", title_justify="left")
    for column in ("package", "version", "arch", "licenses"):
        table.add_column(column)
    for component in doc.get("components") or []:
        purl = str(component.get("purl", ""))
        arch = purl.split("arch=", 1)[1].split("&", 1)[0] if "arch=" in purl else ""
        licenses = [
            str((entry.get("license") or {}).get("id") or (entry.get("license") or {}).get("name") or "")
            for entry in component.get("licenses") or []
        ]
        cells = (
            str(component.get("name", "")),
            str(component.get("version", "")),
            arch,
            ", ".join(filter(None, licenses)),
        )
        table.add_row(*(Text(cell) for cell in cells))  # the image's words, never rich markup
    return table
