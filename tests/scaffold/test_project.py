"""``imagebuild init``: a project for every cloud whose spec holds placeholders that ``spec check``
refuses by name until a person fills them in, then passes and loads in Airflow's DagBag (real CLI,
real DagBag); the sample's comments are kept; ``--os`` picks the OS's values from the cloud's table
or is refused; refusals write nothing. The installed-wheel case is ``tests/deploy/test_wheel.py``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.scaffold.os_table import CLOUDS
from airflow_provider_imagebuild.scaffold.project import SAMPLES

ROOT = Path(__file__).resolve().parents[2]
OS_OF = {"local": "debian-12"}  # every other cloud builds RHEL 9 here

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIReplaceWithYourBuildKeyReplaceWithYour imagebuild"
# What a team would put in place of each placeholder (values the samples use, which pass the checks).
FILLED = {
    "aws": {"target.source_image": "ami-0583d8c7a9c35822c"},
    "azure": {
        "target.resource_group": "rg-imagebuild",
        "target.network": "vnet-build/builders",
        "target.ssh_public_key": KEY,
        "target.gallery": "golden",
        "target.gallery_image": "rhel9-web",
    },
    "gcp": {
        "target.project": "acme-images",
        "target.subnetwork": "builders",
        "target.service_account": "image-builder@acme-images.iam.gserviceaccount.com",
        "target.ssh_public_key": KEY,
        "target.share_with.0": "group:image-users@example.com",
    },
    "vsphere": {
        "target.datacenter": "DC0",
        "target.cluster": "DC0_C0",
        "target.datastore": "LocalDS_0",
        "target.template": "rhel-9.4-source",
    },
    "openstack": {
        "target.flavor": "m1.small",
        "target.network": "build-net",
        "target.source_image": "rhel-9.4",
        "target.share_with_projects.0": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    },
    "local": {},
}


def _init(folder: Path, cloud: str, os_name: str, image_type: str = "web") -> str:
    got = CliRunner().invoke(cli, ["init", str(folder), "--cloud", cloud, "--os", os_name, "--image-type", image_type])
    assert got.exit_code == 0, got.output
    return got.output


def _spec(folder: Path) -> Path:
    [spec] = (folder / "dags/pipelines").glob("*.yaml")
    return spec


def _fill_every_placeholder(spec: Path, cloud: str) -> list[str]:
    """Run ``spec check`` until it passes, filling in the placeholder it names each time (as a person
    would, in the text, so the sample's comments stay); the key paths it named, in order."""
    named: list[str] = []
    for _ in range(len(FILLED[cloud]) + 1):
        checked = CliRunner().invoke(cli, ["spec", "check", str(spec)])
        if checked.exit_code == 0:
            assert f"ok {spec}" in checked.output
            return named
        assert checked.exit_code == 2, checked.output
        found = re.search(
            rf"{re.escape(str(spec))}:\d+:\d+: (?P<path>[\w.]+): fill in (?P<what>.+?)$",
            checked.output,
            re.M,
        )
        assert found is not None, checked.output
        named.append(found["path"])
        placeholder = json.dumps(f"<REPLACE: {found['what']}>")
        text = spec.read_text()
        assert text.count(placeholder) >= 1, (placeholder, text)
        spec.write_text(text.replace(placeholder, json.dumps(FILLED[cloud][found["path"]]), 1))
    raise AssertionError(f"spec check still refuses {spec} after filling {named}")


@pytest.mark.parametrize("cloud", sorted(SAMPLES))
def test_init_makes_a_project_whose_dag_loads_once_its_placeholders_are_filled(
    cloud: str, tmp_path: Path, airflow_home: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "golden"
    os_name = OS_OF.get(cloud, "rhel-9.4")
    output = _init(folder, cloud, os_name)
    name = re.sub(r"[^a-z0-9-]+", "-", f"{cloud}-{os_name}-web")
    assert f"pipeline {name}" in output and "before the first run:" in output
    spec = _spec(folder)
    assert spec.name == f"{name}.yaml"
    # init lists what to fill in, and spec check refuses each of those by name until it is filled
    listed = re.findall(r"^  (target\.[\w.]+): ", output, re.M)
    assert sorted(listed) == sorted(FILLED[cloud])
    if listed:
        refused = DagBag(dag_folder=str(folder / "dags"))
        assert any("fill in" in str(e) for e in refused.import_errors.values()), refused.import_errors
    assert _fill_every_placeholder(spec, cloud) == listed
    bag = DagBag(dag_folder=str(folder / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags[f"imagebuild_{name.replace('-', '_')}"]
    assert dag.tags and cloud in dag.tags
    uses_packer = cloud != "local"
    assert (folder / "dags/packer").is_dir() == uses_packer
    readme = (folder / "README.md").read_text()
    assert "make run BUILD_ID" in readme and all(f"`{path}`" in readme for path in listed)
    assert "airflow dags test" in (folder / "Makefile").read_text()
    plays = (folder / "dags/ansible/15-base-config.yml").read_text()
    assert "tags: [m015, base_config]" in plays


@pytest.mark.parametrize("cloud", sorted(SAMPLES))
def test_the_samples_values_are_not_kept_and_its_comments_are(cloud: str, tmp_path: Path) -> None:
    folder = tmp_path / "golden"
    _init(folder, cloud, OS_OF.get(cloud, "ubuntu-24.04"))
    text = _spec(folder).read_text()
    values = "\n".join(line.split(" #")[0] for line in text.splitlines() if not line.lstrip().startswith("#"))
    sample_values = ["ami-0583d8c7a9c35822c", "ReplaceWithYourBuildKey", "acme-images", "DC0", "LocalDS_0"]
    sample_values += ["0f1e2d3c4b5a69788796a5b4c3d2e1f0", "rg-imagebuild", "aws-rhel8-webserver", "rhel-8"]
    for sample_value in sample_values:
        assert sample_value not in values, sample_value
    sample = (ROOT / "dags/pipelines" / SAMPLES[cloud]).read_text()
    comments = [line.strip() for line in sample.splitlines() if line.strip().startswith("#")]
    comments = [line for line in comments if "$schema=" not in line]  # the project's schema line is its own
    kept = [line.strip() for line in text.splitlines() if line.strip().startswith("#")]
    assert comments and all(line in kept for line in comments), set(comments) - set(kept)
    lines = {line.split(":")[0]: line for line in text.splitlines() if ":" in line}
    for line in sample.splitlines():  # a trailing comment stays unless its value became a placeholder
        if " # " in line and not line.lstrip().startswith("#") and "<REPLACE:" not in lines[line.split(":")[0]]:
            assert lines[line.split(":")[0]].endswith(line[line.index(" # ") :].strip()), line


@pytest.mark.parametrize(
    ("cloud", "os_name", "expected"),
    [
        ("aws", "rhel-9", {"target.ssh_user": "ec2-user", "milestones.5.vars.ssh_username": "ec2-user"}),
        ("aws", "ubuntu-22.04", {"target.ssh_user": "ubuntu", "milestones.10.vars.ssh_username": "ubuntu"}),
        ("aws", "debian-12", {"target.ssh_user": "admin", "milestones.5.vars.ssh_username": "admin"}),
        ("azure", "rhel-9", {"target.source_image": "RedHat:RHEL:9-lvm-gen2:latest"}),
        ("azure", "ubuntu-24.04", {"target.source_image": "Canonical:ubuntu-24_04-lts:server:latest"}),
        ("azure", "debian-12", {"target.source_image": "Debian:debian-12:12-gen2:latest"}),
        ("gcp", "rhel-9", {"target.source_image_family": "rhel-9", "target.source_image_project": "rhel-cloud"}),
        (
            "gcp",
            "ubuntu-22.04",
            {"target.source_image_family": "ubuntu-2204-lts", "target.source_image_project": "ubuntu-os-cloud"},
        ),
        (
            "gcp",
            "debian-12",
            {"target.source_image_family": "debian-12", "target.source_image_project": "debian-cloud"},
        ),
        (
            "openstack",
            "debian-12",
            {
                "target.ssh_user": "debian",
                "target.properties.os_distro": "debian",
                "target.properties.os_version": "12",
                "milestones.5.vars.ssh_username": "debian",
            },
        ),
        ("openstack", "rhel-9.4", {"target.ssh_user": "cloud-user", "target.properties.os_version": "9"}),
        ("vsphere", "ubuntu-24.04", {"target.publish_tags.os": "ubuntu24.04"}),
        ("local", "debian-12", {"os": "debian-12"}),
    ],
)
def test_os_picks_the_clouds_values_for_it(cloud: str, os_name: str, expected: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "golden"
    _init(folder, cloud, os_name)
    spec = yaml.safe_load(_spec(folder).read_text())
    assert spec["os"] == os_name
    for path, value in expected.items():
        got = spec
        for part in path.split("."):
            got = got[int(part)] if part.isdigit() else got[part]
        assert got == value, (path, got)
    source = spec["target"].get("source_image") or spec["target"].get("template") or ""
    title = {"rhel": "RHEL", "ubuntu": "Ubuntu", "debian": "Debian"}[os_name.split("-")[0]]
    if source.startswith("<REPLACE:"):  # a placeholder names the OS to look for
        assert f"{title} {os_name.split('-')[1].split('.')[0]}" in source, source


@pytest.mark.parametrize(
    ("cloud", "os_name"), [(cloud, os_name) for cloud, table in CLOUDS.items() for os_name in table.systems]
)
def test_every_os_of_every_cloud_passes_spec_check_once_filled(cloud: str, os_name: str, tmp_path: Path) -> None:
    _init(tmp_path / "golden", cloud, os_name)
    assert sorted(_fill_every_placeholder(_spec(tmp_path / "golden"), cloud)) == sorted(FILLED[cloud])


@pytest.mark.parametrize(
    ("cloud", "os_name", "supported"),
    [
        ("local", "ubuntu-24.04", "local builds debian-12"),
        ("local", "rhel-9", "local builds debian-12"),
        ("aws", "sles-15", "aws builds rhel-8, rhel-9, ubuntu-22.04, ubuntu-24.04, debian-12"),
        ("gcp", "windows-2022", "gcp builds rhel-8, rhel-9"),
    ],
)
def test_an_os_the_clouds_sample_cannot_build_is_refused(
    cloud: str, os_name: str, supported: str, tmp_path: Path
) -> None:
    got = CliRunner().invoke(cli, ["init", str(tmp_path / "p"), "--cloud", cloud, "--os", os_name, "--image-type", "y"])
    assert got.exit_code == 2, got.output
    [line] = got.output.strip().splitlines()
    assert line.startswith("imagebuild: error: --os: ") and supported in line and repr(os_name) in line, line
    assert "supported per cloud: local: debian-12; aws: rhel-8" in line
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--cloud", "mars", "--os", "x", "--image-type", "y"], "--cloud: must be one of"),
        (["--cloud", "aws", "--os", "rhel 9", "--image-type", "y"], "--os: must be"),
        (["--cloud", "aws", "--os", "rhel-9", "--image-type", "y", "--name", "../up"], "--name: must be"),
    ],
)
def test_bad_requests_write_nothing(args: list[str], reason: str, tmp_path: Path) -> None:
    got = CliRunner().invoke(cli, ["init", str(tmp_path / "p"), *args])
    assert got.exit_code == 2 and reason in got.output
    assert not (tmp_path / "p").exists()


def test_a_folder_with_files_is_refused_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    args = ["init", str(tmp_path), "--cloud", "local", "--os", "debian-12", "--image-type", "base"]
    got = CliRunner().invoke(cli, args)
    assert got.exit_code == 2 and "is not empty (give --force" in got.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0
    assert (tmp_path / "keep.txt").read_text() == "mine" and (tmp_path / "dags/imagebuild_pipelines.py").is_file()
