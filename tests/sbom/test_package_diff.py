"""Which packages changed since the last delivered build (#33), where an operator looks: ``imagebuild
build diff`` (text and --json) and the failed build's page (the same lines a failure notice
carries). Two builds sealed with real bills of materials (the fixture image's dpkg database, and a
copy with openssl upgraded and nginx removed); equal ``packages_sha256`` says "none changed"
without a file read, and a document on another worker's disk is "unknown", never a failure."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from airflow_provider_imagebuild.sbom.cyclonedx import sbom_document
from airflow_provider_imagebuild.sbom.inventory import inventory_of_root
from airflow_provider_imagebuild.store import BuildStore, open_store
from airflow_provider_imagebuild.targets.base import file_hash
from tests.cli.test_cli import run
from tests.plugin.test_next_moves import may, store  # noqa: F401 - fixtures
from tests.plugin.test_pages import DAG, PLAN, client_for, owner

IMAGE = Path(__file__).parent / "data" / "bookworm"
SAME = {"spec": "1111111111111111"}  # equal fingerprints: only the packages differ (the mirror moved on)


def _upgraded(tmp_path: Path) -> Path:
    """The fixture image with openssl and libssl3 upgraded and nginx removed."""
    later = tmp_path / "later"
    shutil.copytree(IMAGE, later, symlinks=True)
    status = later / "var/lib/dpkg/status"
    stanzas = [s for s in status.read_text().strip().split("\n\n") if not s.startswith("Package: nginx\n")]
    status.write_text("\n\n".join(s.replace("3.0.20-1~deb12u2", "3.0.21-1~deb12u1") for s in stanzas) + "\n")
    return later


def _sealed(where: BuildStore, tmp_path: Path, build_id: str, root: Path | None, **outputs: object) -> None:
    """A build of the pipeline through its seal (95), its document written from ``root`` (None:
    the file stays on another worker), delivered when ``deliver`` is set."""
    where.create_build(build_id, pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
    where.set_metadata(build_id, {"dag_id": DAG})
    sbom = tmp_path / f"{build_id}.cdx.json"
    text = sbom_document(inventory_of_root(root or IMAGE), image_name="web", image_version=build_id, built_with={})
    sbom.write_text(text)
    sealed = {"sbom_file": str(sbom), "sbom_sha256": file_hash(sbom), "sbom_packages": 9, **outputs}
    if root is None:
        sbom.unlink()
    for code in PLAN[1:4]:
        lease = where.begin(build_id, code, owner=owner(f"s{code:03d}_x", 1))
        done = sealed if code == 95 else {}
        where.complete(build_id, code, token=lease.token, outputs=done, fingerprint=f"{code:064d}", inputs=SAME)


def _deliver(where: BuildStore, build_id: str) -> None:
    lease = where.begin(build_id, 100, owner=owner("s100_x", 1))
    where.complete(build_id, 100, token=lease.token, fingerprint="1" * 64, inputs=SAME)


def test_build_diff_names_the_packages_changed_between_two_builds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    where = open_store(url)
    _sealed(where, tmp_path, "night-1", IMAGE, packages_sha256="a" * 64)
    _sealed(where, tmp_path, "night-2", _upgraded(tmp_path), packages_sha256="b" * 64)
    _sealed(where, tmp_path, "night-3", None, packages_sha256="a" * 64)  # elsewhere, yet the same packages
    _sealed(where, tmp_path, "night-4", None, packages_sha256="c" * 64)  # elsewhere, other packages

    shown = run("build", "diff", "night-1", "night-2", store=url)
    assert shown.returncode == 0, shown.stderr
    seal = shown.stdout[shown.stdout.index("95 · ") :]
    for line in (
        "package libssl3 3.0.20-1~deb12u2 -> 3.0.21-1~deb12u1",
        "package openssl 3.0.20-1~deb12u2 -> 3.0.21-1~deb12u1",
        "package nginx 1.22.1-9+deb12u9 removed",
    ):
        assert line in seal, shown.stdout
    assert "\tchanged\t" in seal.splitlines()[0]  # equal fingerprints do not hide the packages

    as_json = run("build", "diff", "night-1", "night-4", "--json", store=url)
    assert as_json.returncode == 0, as_json.stderr
    found = {m["code"]: m for m in json.loads(as_json.stdout)["milestones"]}
    assert found[95]["changes"] == [
        {
            "name": "packages",
            "kind": "packages",
            "before": "unknown",
            "after": "a bill of materials is on another worker's disk",
            "summary": None,
            "description": "packages unknown: a bill of materials is on another worker's disk",
        }
    ]
    same = run("build", "diff", "night-1", "night-3", "--json", store=url)  # no file read: the digests agree
    assert same.returncode == 0 and all(not m["changes"] for m in json.loads(same.stdout)["milestones"])

    # A hand-made document the record's digest proves, nested past Python's limit: unknown, one row.
    deep = tmp_path / "deep" / "night-5.cdx.json"  # named as night-5's (another name is refused before it is read)
    deep.parent.mkdir()
    deep.write_text('{"bomFormat": "CycloneDX", "components": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _sealed(where, tmp_path, "night-5", IMAGE, sbom_file=str(deep), sbom_sha256=file_hash(deep))
    nested = run("build", "diff", "night-1", "night-5", store=url)
    assert nested.returncode == 0 and "packages unknown: " in nested.stdout, nested.stderr
    assert "is not a CycloneDX document" in nested.stdout, nested.stdout
    refused = run("build", "sbom", "night-5", store=url)
    assert refused.returncode == 2 and "is not a CycloneDX document" in refused.stderr, refused.stderr


def test_the_failed_page_names_the_packages_changed_since_the_last_delivered_build(
    store: BuildStore,  # noqa: F811
    may: None,  # noqa: F811
    tmp_path: Path,
) -> None:
    _sealed(store, tmp_path, "night-1", IMAGE, packages_sha256="a" * 64)
    _deliver(store, "night-1")
    _sealed(store, tmp_path, "night-2", _upgraded(tmp_path), packages_sha256="b" * 64)
    lease = store.begin("night-2", 100, owner=owner("s100_x", 1))
    store.fail("night-2", 100, token=lease.token, error="launch test failed", fingerprint="1" * 64, inputs=SAME)

    page = html.unescape(client_for("viewer").get("/builds/night-2").text)
    found = re.search(r'<ul id="failure-changed">(.*?)</ul>', page, re.S)
    assert found, page
    [seal] = [line for line in re.findall(r"<li>(.*?)</li>", found.group(1)) if "package" in line]
    assert seal.startswith("95 · ") and seal.endswith(
        "package libssl3 3.0.20-1~deb12u2 -> 3.0.21-1~deb12u1; package openssl 3.0.20-1~deb12u2 -> "
        "3.0.21-1~deb12u1; package nginx 1.22.1-9+deb12u9 removed"
    ), seal
