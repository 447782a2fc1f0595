"""The image's packages from its own package database, and the CycloneDX document made of them.

Real databases: this machine's dpkg status file and /usr/share/doc (checked against dpkg-query, a
real process), and a fixture tree cut from the local target's bootstrapped Debian 12 image
(``data/bookworm``: nine stanzas of its status file, four of its copyright files, its os-release).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.sbom.cyclonedx import packages_of, sbom_document, summary
from airflow_provider_imagebuild.sbom.inventory import (
    COLLECT_SCRIPT,
    DPKG,
    RPM,
    inventory_of_root,
    parse_collected,
    parse_rpm_query,
)

BOOKWORM = Path(__file__).parent / "data" / "bookworm"


def test_this_machines_dpkg_database_is_read_as_dpkg_query_lists_it() -> None:
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    installed = sorted(tuple(line.split("\t")[1:]) for line in listed.splitlines() if line.startswith("installed\t"))
    inventory = inventory_of_root(Path("/"))
    assert inventory.kind == DPKG
    assert sorted((p.name, p.version, p.arch) for p in inventory.packages) == installed
    # Licenses from the machine-readable copyright files: dpkg's own lists GPL-2+ among others.
    copyright_text = Path("/usr/share/doc/dpkg/copyright").read_text()
    (dpkg,) = inventory.named("dpkg")
    assert dpkg.licenses and all(f"License: {name}" in copyright_text for name in dpkg.licenses)


def test_the_hosts_collector_script_reads_what_the_worker_reads_in_a_tree() -> None:
    """What sbom/collect-packages.yml runs on a cloud's build host (a real sh here, on this
    machine) gives the same inventory as reading the tree directly."""
    printed = subprocess.run(["sh", "-c", COLLECT_SCRIPT], capture_output=True, text=True, check=True).stdout
    over_ansible, in_place = parse_collected(printed), inventory_of_root(Path("/"))
    assert over_ansible.packages == in_place.packages and len(in_place.packages) > 50
    assert over_ansible.os_release == in_place.os_release and in_place.os_release["ID"]


def test_the_image_becomes_a_valid_cyclonedx_document_with_licenses_kernel_and_toolchain() -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    inventory = inventory_of_root(BOOKWORM)
    assert inventory.os_release["VERSION_CODENAME"] == "bookworm"  # etc/os-release links to usr/lib
    assert [k.name for k in inventory.kernels] == ["linux-image-6.1.0-50-cloud-amd64"]  # not the meta package
    text = sbom_document(
        inventory,
        image_name="web",
        image_version="web-7",
        built_with={"built_with.ansible_core": "2.19.3", "built_with.packer": "1.11.2"},
    )
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    by_name = {c["name"]: c for c in doc["components"]}
    assert sorted(by_name) == sorted(p.name for p in inventory.packages) and len(by_name) == 9
    assert by_name["libssl3"]["purl"] == "pkg:deb/debian/libssl3@3.0.20-1~deb12u2?arch=amd64&upstream=openssl"
    openssl = by_name["openssl"]["licenses"]
    assert {"license": {"id": "Apache-2.0"}} in openssl  # an SPDX id where the name is one
    assert {"license": {"name": "Artistic or GPL-1+"}} in openssl and len(openssl) == 4  # else the image's own
    assert "licenses" not in by_name["nginx"]  # no copyright file in the fixture: none, not a guess
    assert {"name": "imagebuild:kernel", "value": "true"} in by_name["linux-image-6.1.0-50-cloud-amd64"]["properties"]
    tools = {t["name"]: t["version"] for t in doc["metadata"]["tools"]["components"]}
    assert tools == {"ansible-core": "2.19.3", "packer": "1.11.2"}
    assert doc["metadata"]["component"]["type"] == "operating-system"
    assert summary(text)["kernel"] == ["linux-image-6.1.0-50-cloud-amd64 6.1.176-1"]
    assert packages_of(text)[0] == ("base-files", "12.4+deb12u15", "amd64")


def test_links_out_of_the_image_are_not_followed(tmp_path: Path) -> None:
    """An image's /usr/share/doc entry (or its status file) that links out of its tree would make
    the worker read its own files into the document: it is not followed."""
    root = tmp_path / "image"
    shutil.copytree(BOOKWORM, root, symlinks=True)
    outside = tmp_path / "worker-doc"
    outside.mkdir()
    (outside / "copyright").write_text("Format: x\n\nFiles: *\nLicense: WORKER-SECRET\n")
    shutil.rmtree(root / "usr/share/doc/openssl")
    (root / "usr/share/doc/openssl").symlink_to(outside)  # absolute: out of the tree
    (root / "usr/share/doc/nginx").mkdir()
    (root / "usr/share/doc/nginx/copyright").symlink_to("../zlib1g/copyright")  # relative, inside: followed
    inventory = inventory_of_root(root)
    assert inventory.named("openssl")[0].licenses == ()
    assert inventory.named("nginx")[0].licenses == inventory.named("zlib1g")[0].licenses != ()

    (root / "var/lib/dpkg/status").unlink()
    (root / "var/lib/dpkg/status").symlink_to("/var/lib/dpkg/status")
    with pytest.raises(InvalidInput, match=r"^sbom: no dpkg package database in .*image"):
        inventory_of_root(root)


def test_rpm_query_lines_are_packages_with_epoch_license_and_source() -> None:
    """Lines as ``rpm -qa --queryformat RPM_QUERY`` prints them (a RHEL 9 host's)."""
    printed = (
        "openssl\t1:3.0.7-27.el9\tx86_64\tApache-2.0\topenssl-3.0.7-27.el9.src.rpm\n"
        "openssl-libs\t1:3.0.7-27.el9\tx86_64\tApache-2.0\topenssl-3.0.7-27.el9.src.rpm\n"
        "gpg-pubkey\tfd431d51-4ae0493b\t(none)\tpubkey\t(none)\n"
        "kernel-core\t5.14.0-427.13.1.el9_4\tx86_64\tGPLv2\tkernel-5.14.0-427.13.1.el9_4.src.rpm\n"
        "basesystem\t11-13.el9\tnoarch\t(none)\tbasesystem-11-13.el9.src.rpm\n"
    )
    inventory = parse_collected(f"#imagebuild:rpm\n{printed}#imagebuild:os-release\nID=rhel\nVERSION_ID=9.4\n")
    assert inventory.kind == RPM and [p.name for p in inventory.packages] == [
        "basesystem", "kernel-core", "openssl", "openssl-libs",
    ]  # fmt: skip
    (libs,) = inventory.named("openssl-libs")
    assert (libs.version, libs.arch, libs.source, libs.licenses) == (
        "1:3.0.7-27.el9",
        "x86_64",
        "openssl",
        ("Apache-2.0",),
    )
    assert inventory.named("basesystem")[0].licenses == () and inventory.named("openssl")[0].source == ""
    assert [k.name for k in inventory.kernels] == ["kernel-core"]
    assert parse_rpm_query("not\ta package line") == []
