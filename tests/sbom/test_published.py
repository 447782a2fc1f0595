"""A sealed build's bill of materials after the seal: copied beside the image in the local catalog
as ``IMAGE.cdx.json`` (named in ``metadata.json``), printed by ``imagebuild build sbom``; a path or
digest written into the store by hand is refused by both, never copied or printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.sbom.cyclonedx import sbom_document
from airflow_provider_imagebuild.sbom.inventory import inventory_of_root
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import BuildStore, open_store
from airflow_provider_imagebuild.targets.base import file_hash
from airflow_provider_imagebuild.targets.local import LocalTarget

IMAGE = Path(__file__).parent / "data" / "bookworm"


def _sealed(tmp_path: Path, build_id: str, **override: Any) -> tuple[BuildStore, LocalTarget, BuildRecord]:
    """A build sealed as the seal leaves it: the image and its bill of materials side by side."""
    settings = TargetSpec(catalog=str(tmp_path / "catalog"), work_dir=str(tmp_path / "work"))
    target = LocalTarget(settings, pipeline="nightly", image_type="base")
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    build = store.create_build(build_id, pipeline="nightly", cloud="local", image_type="base", plan=[0, 95, 100])
    image = target.image_path(build)
    image.parent.mkdir(parents=True)
    image.write_bytes(b"qcow2" * 1000)
    sbom = target.sbom_file(build)
    sbom.write_text(
        sbom_document(inventory_of_root(IMAGE), image_name="nightly", image_version=build_id, built_with={})
    )
    outputs = {
        "image_id": str(image),
        "image_sha256": file_hash(image),
        "sbom_file": str(sbom),
        "sbom_sha256": file_hash(sbom),
        "sbom_packages": 9,
        **override,
    }
    lease = store.begin(build_id, 95, owner="test")
    store.complete(build_id, 95, token=lease.token, outputs=outputs)
    return store, target, store.get(build_id)


def test_the_catalog_keeps_the_bill_of_materials_beside_the_image(tmp_path: Path) -> None:
    _, target, build = _sealed(tmp_path, "night-1")
    outputs = target.publish(build, build.milestones[95].outputs["image_id"])
    version = tmp_path / "catalog/nightly/versions/night-1"
    copy = version / "nightly-night-1.cdx.json"
    assert outputs["catalog_sbom"] == str(copy) and copy.read_text() == target.sbom_file(build).read_text()
    meta = json.loads((version / "metadata.json").read_text())
    assert meta["image"] == "nightly-night-1.qcow2"
    assert meta["sbom"] == {"file": copy.name, "sha256": file_hash(copy), "format": "CycloneDX", "packages": 9}
    assert json.loads((tmp_path / "catalog/nightly/latest" / meta["sbom"]["file"]).read_text())["bomFormat"] == (
        "CycloneDX"
    )


@pytest.mark.parametrize(
    ("foreign", "reason"),
    [
        ("/etc/passwd", "is not a file of build night-2"),
        ("image", "is not the bill of materials of this build"),  # the build's own image, as its SBOM
        ("changed", r"the sealed sbom .* does not match"),
    ],
)
def test_a_hand_written_bill_of_materials_is_not_published(tmp_path: Path, foreign: str, reason: str) -> None:
    store, target, build = _sealed(tmp_path, "night-2")
    sealed = dict(build.milestones[95].outputs)
    if foreign == "image":
        sealed.update(sbom_file=sealed["image_id"], sbom_sha256=sealed["image_sha256"])
    elif foreign == "changed":
        target.sbom_file(build).write_text('{"bomFormat": "CycloneDX", "components": []}')
    else:
        sealed.update(sbom_file=foreign)
    store.reset("night-2", to=95, reason="written by hand")
    lease = store.begin("night-2", 95, owner="test")
    store.complete("night-2", 95, token=lease.token, outputs=sealed)
    with pytest.raises(InvalidInput, match=rf"^milestones\.95\.outputs\.sbom_(file|sha256): .*{reason}"):
        target.publish(store.get("night-2"), sealed["image_id"])
    assert not (tmp_path / "catalog/nightly/latest").exists()


def test_imagebuild_build_sbom_prints_the_packages_or_the_document(tmp_path: Path) -> None:
    store, target, build = _sealed(tmp_path, "night-3")
    url = f"sqlite:///{tmp_path}/state.db"
    shown = CliRunner().invoke(cli, ["--store", url, "build", "sbom", "night-3"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "openssl\t3.0.20-1~deb12u2\tamd64\tApache-2.0, Artistic, Artistic or GPL-1+, GPL-1+" in lines
    assert lines[-1].startswith("# CycloneDX 1.6: 9 packages (3 with a license), kernel linux-image-6.1.0-50-cloud")
    document = CliRunner().invoke(cli, ["--store", url, "build", "sbom", "night-3", "--json"])
    assert document.exit_code == 0 and document.output == target.sbom_file(build).read_text() + "\n"

    none = CliRunner().invoke(cli, ["--store", url, "build", "sbom", "nope"])
    assert none.exit_code == 4
    published = target.publish(build, build.milestones[95].outputs["image_id"])  # the catalog's copy
    lease = store.begin("night-3", 100, owner="test")
    store.complete("night-3", 100, token=lease.token, outputs={"destinations": {"catalog": published}})
    target.sbom_file(build).unlink()  # the work folder cleaned after delivery: the catalog's copy is read
    copied = CliRunner().invoke(cli, ["--store", url, "build", "sbom", "night-3"])
    assert copied.exit_code == 0 and copied.output.splitlines()[-1].endswith(
        f"; {published['catalog_sbom']} (sha256 {build.milestones[95].outputs['sbom_sha256'][:12]}...)"
    )
    Path(published["catalog_sbom"]).unlink()
    gone = CliRunner().invoke(cli, ["--store", url, "build", "sbom", "night-3"])
    assert (
        gone.exit_code == 4 and "is not on this machine (it is kept on the worker that sealed the build)" in gone.output
    )


def test_the_images_words_are_printed_as_they_are_without_terminal_escapes(tmp_path: Path) -> None:
    """A license name that looks like rich markup is printed as written; a terminal escape in an
    image's copyright file never reaches the terminal."""
    import shutil

    image = tmp_path / "image"
    shutil.copytree(IMAGE, image, symlinks=True)
    (image / "usr/share/doc/sudo/copyright").write_text("Format: x\n\nLicense: [bold]ISC[/bold] \x1b[31mred\n")
    _, target, build = _sealed(tmp_path, "night-7")
    text = sbom_document(inventory_of_root(image), image_name="nightly", image_version="night-7", built_with={})
    target.sbom_file(build).write_text(text)
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    store.reset("night-7", to=95, reason="the document of the image above")
    lease = store.begin("night-7", 95, owner="test")
    outputs = {**build.milestones[95].outputs, "sbom_sha256": file_hash(target.sbom_file(build))}
    store.complete("night-7", 95, token=lease.token, outputs=outputs)
    shown = CliRunner().invoke(cli, ["--store", f"sqlite:///{tmp_path}/state.db", "build", "sbom", "night-7"])
    assert "sudo\t1.9.13p3-1+deb12u4\tamd64\t[bold]ISC[/bold] [31mred" in shown.output.splitlines()
    assert "\x1b" not in shown.output


def test_imagebuild_build_sbom_never_prints_a_file_the_seal_did_not_write(tmp_path: Path) -> None:
    """``sbom_file`` set by hand to a file of the worker's, even with its right digest."""
    secret = tmp_path / "elsewhere" / "nightly-night-4.cdx.json"  # named as the build's, to reach the content check
    secret.parent.mkdir()
    secret.write_text('{"password": "hunter2"}')
    _sealed(tmp_path, "night-4", sbom_file=str(secret), sbom_sha256=file_hash(secret))
    url = f"sqlite:///{tmp_path}/state.db"
    for args in (["build", "sbom", "night-4"], ["build", "sbom", "night-4", "--json"]):
        refused = CliRunner().invoke(cli, ["--store", url, *args])
        assert refused.exit_code == 2 and "hunter2" not in refused.output
        assert "sbom_file: " in refused.output and "is not a CycloneDX document" in refused.output
    _sealed(tmp_path / "b", "night-5", sbom_file="/etc/passwd", sbom_sha256="0" * 64)
    refused = CliRunner().invoke(cli, ["--store", f"sqlite:///{tmp_path}/b/state.db", "build", "sbom", "night-5"])
    assert refused.exit_code == 2 and "is not a bill of materials file (*.cdx.json)" in refused.output
    assert "root:" not in refused.output


def test_published_images_carry_the_sbom_digest(tmp_path: Path, fake_os: Any) -> None:
    """AWS and Azure tag the published image ``Sbom`` (the OpenStack target and a Glance
    destination: the ``imagebuild_sbom`` property) with the document's SHA-256 and package count,
    so whoever finds the image can fetch its bill of materials and check it is this one."""
    import subprocess

    from airflow_provider_imagebuild.destinations import destination_for
    from airflow_provider_imagebuild.spec.pipeline import parse_spec
    from airflow_provider_imagebuild.targets.base import built_with_tags
    from tests.conftest import OPENSTACK_CONN_ID

    store, target, build = _sealed(tmp_path, "night-6")
    tag = f"cyclonedx sha256:{build.milestones[95].outputs['sbom_sha256']} packages:9"
    assert built_with_tags(build)["Sbom"] == tag
    image = target.image_path(build)
    raw = image.with_name("disk.raw")
    raw.write_bytes(b"golden" * 100_000)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(image)], check=True)
    glance = {"glance": {"openstack_conn_id": OPENSTACK_CONN_ID, "visibility": "private"}}
    spec = parse_spec(
        {"pipeline": "nightly", "cloud": "local", "image_type": "base", "publish": [glance],
         "milestones": {95: {"action": "seal"}, 100: {"action": "publish"}}}
    ).publish[0]  # fmt: skip
    published = destination_for(spec, pipeline="nightly", image_type="base").publish(build, image)
    assert fake_os.images[published["image_id"]]["imagebuild_sbom"] == tag

    store.reset("night-6", to=95, reason="a digest written by hand")
    lease = store.begin("night-6", 95, owner="test")
    store.complete("night-6", 95, token=lease.token, outputs={"image_id": str(image), "sbom_sha256": "not a digest"})
    assert "Sbom" not in built_with_tags(store.get("night-6"))


def test_a_build_never_shows_another_builds_bill_of_materials(tmp_path: Path) -> None:
    """Whoever can write one build's record can name another build's document (another team's
    pipeline on the same worker) with the digest its published image is tagged with: it is still
    not this build's file, so it is refused, never served under this build's name."""
    _, _, theirs = _sealed(tmp_path, "night-6")
    elsewhere = str(theirs.milestones[95].outputs["sbom_file"])
    _sealed(tmp_path / "b", "night-7", sbom_file=elsewhere, sbom_sha256=theirs.milestones[95].outputs["sbom_sha256"])
    refused = CliRunner().invoke(cli, ["--store", f"sqlite:///{tmp_path}/b/state.db", "build", "sbom", "night-7"])
    assert refused.exit_code == 2 and "is not build night-7's bill of materials" in refused.output, refused.output
    shown = CliRunner().invoke(cli, ["--store", f"sqlite:///{tmp_path}/state.db", "build", "sbom", "night-6"])
    assert shown.exit_code == 0, shown.output


def test_a_build_delivered_unchanged_shows_the_bill_of_materials_of_the_build_it_reused(tmp_path: Path) -> None:
    """Nothing changed (#32): night-9 delivered night-8's image again, so night-8's document is its
    own; a build that merely names night-8's file without having reused it is still refused."""
    store, target, source = _sealed(tmp_path, "night-8")
    store.create_build("night-9", pipeline="nightly", cloud="local", image_type="base", plan=[0, 95, 100])
    lease = store.begin("night-9", 95, owner="test")
    seal = source.completed_attempt(95)
    assert seal is not None
    made = ("a" * 64, {"previous": ""})
    taken = [(95, dict(source.milestones[95].outputs), *made), (100, {}, "b" * 64, {"previous": "a" * 64})]
    store.reuse("night-9", 95, token=lease.token, source="night-8", taken=taken)
    url = f"sqlite:///{tmp_path}/state.db"
    shown = CliRunner().invoke(cli, ["--store", url, "build", "sbom", "night-9", "--json"])
    assert shown.exit_code == 0 and shown.output == target.sbom_file(source).read_text() + "\n", shown.output
    _sealed(tmp_path / "b", "night-10", sbom_file=str(target.sbom_file(source)),
            sbom_sha256=source.milestones[95].outputs["sbom_sha256"])  # fmt: skip
    refused = CliRunner().invoke(cli, ["--store", f"sqlite:///{tmp_path}/b/state.db", "build", "sbom", "night-10"])
    assert refused.exit_code == 2 and "is not build night-10's bill of materials" in refused.output
