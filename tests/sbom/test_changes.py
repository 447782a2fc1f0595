"""Packages changed between two builds' bills of materials, each made from a real dpkg database
(the fixture image's, and a copy of it with one package upgraded, one removed, one added)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from airflow_provider_imagebuild.sbom.changes import package_changes
from airflow_provider_imagebuild.sbom.cyclonedx import sbom_document
from airflow_provider_imagebuild.sbom.inventory import inventory_of_root

IMAGE = Path(__file__).parent / "data" / "bookworm"


def _document(root: Path, build_id: str) -> str:
    return sbom_document(inventory_of_root(root), image_name="web", image_version=build_id, built_with={})


def test_the_packages_changed_since_the_last_build_are_named(tmp_path: Path) -> None:
    later = tmp_path / "later"
    shutil.copytree(IMAGE, later, symlinks=True)
    status = later / "var/lib/dpkg/status"
    stanzas = status.read_text().strip().split("\n\n")
    kept = [s for s in stanzas if not s.startswith("Package: nginx\n")]
    kept = [s.replace("Version: 3.0.20-1~deb12u2", "Version: 3.0.21-1~deb12u1") for s in kept]
    curl = re.sub(r"(?m)^Package: zlib1g$", "Package: curl", next(s for s in kept if s.startswith("Package: zlib1g")))
    status.write_text("\n\n".join([*kept, curl]) + "\n")

    changes = package_changes(_document(IMAGE, "web-1"), _document(later, "web-2"))
    assert changes.lines() == [
        "libssl3 3.0.20-1~deb12u2 -> 3.0.21-1~deb12u1",
        "openssl 3.0.20-1~deb12u2 -> 3.0.21-1~deb12u1",
        "curl 1:1.2.13.dfsg-1 added",
        "nginx 1.22.1-9+deb12u9 removed",
    ]
    assert not package_changes(_document(IMAGE, "web-1"), _document(IMAGE, "web-3"))
