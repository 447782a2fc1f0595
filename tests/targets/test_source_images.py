"""What a watch ``image: source`` reads on AWS (#32): the newest AMI whose name matches the spec's
``source_image`` (EC2 on the loopback moto server), an AMI id as it is, nothing when none matches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec.pipeline import SpecError, TargetSpec, parse_spec
from airflow_provider_imagebuild.spec.watch import WatchSpec
from airflow_provider_imagebuild.targets.aws import AwsTarget
from airflow_provider_imagebuild.targets.source_images import source_image_id
from airflow_provider_imagebuild.watch import watched_value
from tests.conftest import unique


def _target(clients: Callable[[str, str], Any], source_image: str, owners: tuple[str, ...] = ("self",)) -> AwsTarget:
    spec = TargetSpec(region="us-east-1", source_image=source_image, source_image_owners=list(owners))
    return AwsTarget(spec, pipeline="web", image_type="webserver", clients=clients, region="us-east-1")


def test_the_source_image_resolves_to_the_newest_ami_of_its_name(
    aws_clients: Callable[[str, str], Any], ec2: Any, base_ami: str
) -> None:
    family = unique("vendor-rhel8")
    older = ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=f"{family}-2026.11")["ImageId"]
    target = _target(aws_clients, f"{family}-*")
    assert source_image_id(target) == older
    newer = ec2.copy_image(SourceImageId=base_ami, SourceRegion="us-east-1", Name=f"{family}-2026.12")["ImageId"]
    assert source_image_id(target) == newer  # the vendor published a newer image behind the same name
    assert source_image_id(_target(aws_clients, base_ami)) == base_ami  # an id is itself
    watch = WatchSpec(name="base", image="source")
    nothing = watched_value(watch, lambda: source_image_id(_target(aws_clients, unique("no-such-image"))))
    assert nothing.problem == "the target could not resolve its source image" and nothing.value.startswith("unavail")
    # Packer's amazon-ebs takes an id: the name is resolved to the same AMI the watch records.
    assert target.packer_source_image(f"{family}-*") == newer
    assert target.packer_source_image(base_ami) == base_ami
    assert source_image_id(_target(aws_clients, f"{family}-*", owners=("amazon",))) is None  # not amazon's
    with pytest.raises(InvalidInput, match=r"target\.source_image: no AMI named .* is owned by amazon"):
        _target(aws_clients, f"{family}-*", owners=("amazon",)).packer_source_image(f"{family}-*")


def test_a_source_image_name_needs_the_accounts_it_may_belong_to() -> None:
    """Anyone can publish an AMI under a vendor's name: a pattern without owners is refused."""
    spec = {"pipeline": "p", "cloud": "aws", "image_type": "t", "target": {"source_image": "RHEL-8.10.0_HVM-*"}}
    with pytest.raises(SpecError, match=r"target\.source_image_owners: is required when"):
        parse_spec(spec)
    parse_spec({**spec, "target": {"source_image": "RHEL-8.10.0_HVM-*", "source_image_owners": ["309956199498"]}})
    for typo in ("amazn", "30995619949", "309956199498 ", "self,amazon"):  # DescribeImages would refuse each
        with pytest.raises(SpecError, match=r"target\.source_image_owners: .*is not an AMI owner"):
            parse_spec({**spec, "target": {"source_image": "RHEL-8.10.0_HVM-*", "source_image_owners": [typo]}})
    parse_spec({**spec, "target": {"source_image": "ami-0123456789abcdef0"}})


def _as_is(value: str | None) -> str | None:
    """``value``, checked to be recorded as it is (short and plain: ``build diff`` names it), not as a digest."""
    from airflow_provider_imagebuild.build.fingerprint import shown

    assert value is not None and shown(value) == value, value
    return value


def _unavailable(resolve: Callable[[], str | None]) -> None:
    """What a watch records when the target cannot resolve its source: a value unique to this reading."""
    nothing = watched_value(WatchSpec(name="base", image="source"), resolve)
    assert nothing.problem == "the target could not resolve its source image" and nothing.value.startswith("unavail")


def test_gcp_resolves_the_newest_image_of_the_source_family_in_its_project(fake_gce: Any) -> None:
    from airflow_provider_imagebuild.spec.pipeline import GcpTargetSpec
    from airflow_provider_imagebuild.targets.gcp import GcpTarget
    from tests.conftest import GCP_CONN_ID
    from tests.servers.gce import ZONE

    clients = GcpTarget.from_settings(GcpTargetSpec(gcp_conn_id=GCP_CONN_ID, zone=ZONE), pipeline="w", image_type="w")

    def target(**source: Any) -> GcpTarget:  # one connection for all (what from_settings costs is its clients)
        spec = GcpTargetSpec(gcp_conn_id=GCP_CONN_ID, zone=ZONE, **source)
        return GcpTarget(spec, pipeline="web", image_type="webserver", clients=clients.clients)

    older = fake_gce.add_foreign_image("rhel-cloud", "rhel-8-v20261105", family="rhel-8")
    by_family = target(source_image_family="rhel-8", source_image_project="rhel-cloud")
    first = _as_is(source_image_id(by_family))
    assert first == f"rhel-cloud/rhel-8-v20261105@{older['id']}"
    newer = fake_gce.add_foreign_image("rhel-cloud", "rhel-8-v20261203", family="rhel-8")
    assert source_image_id(by_family) == f"rhel-cloud/rhel-8-v20261203@{newer['id']}"
    newer["deprecated"] = {"state": "DEPRECATED"}  # the family falls back to its newest image not deprecated
    assert source_image_id(by_family) == first
    # the fixture's own-project rhel-8 family is not the vendor's: the project is part of the source
    assert source_image_id(target(source_image_family="rhel-8", source_image_project="imagebuild-test")) != first
    by_name = target(source_image="rhel-8-v20261105", source_image_project="rhel-cloud")
    assert source_image_id(by_name) == first
    _unavailable(lambda: source_image_id(target(source_image_family="rhel-9", source_image_project="rhel-cloud")))
    _unavailable(lambda: source_image_id(target(source_image="rhel-8-v20261105", source_image_project="other-vendor")))


def test_openstack_resolves_the_newest_active_image_of_the_source_name_the_project_sees(fake_os: Any) -> None:
    from tests.servers.openstack import OTHER_PROJECT_ID
    from tests.targets.test_openstack import make_target

    name = unique("vendor-rhel-8.10")
    older = fake_os.add_image(name, owner=OTHER_PROJECT_ID, visibility="public")
    fake_os.images[older]["created_at"] = "2026-11-05T08:00:00Z"
    target = make_target("web", source_image=name)
    assert source_image_id(target) == older
    newer = fake_os.add_image(name, owner=OTHER_PROJECT_ID, visibility="public")  # the vendor uploaded again
    fake_os.images[newer]["created_at"] = "2026-12-03T08:00:00Z"
    hidden = fake_os.add_image(name, owner=OTHER_PROJECT_ID, visibility="private")  # not the project's to see
    queued = fake_os.add_image(name)  # an upload not finished: nothing a build starts from
    fake_os.images[queued]["status"] = "queued"
    for later in (hidden, queued):
        fake_os.images[later]["created_at"] = "2026-12-04T08:00:00Z"
    assert _as_is(source_image_id(target)) == newer
    assert source_image_id(make_target("web", source_image=older)) == older  # an id is itself
    _unavailable(lambda: source_image_id(make_target("web", source_image=unique("no-such-image"))))


def test_vsphere_resolves_the_source_template_name_to_its_instance_uuid(vsphere_conn: tuple[str, int]) -> None:
    from pyVmomi import vim

    from tests.servers.vcsim import SOURCE_TEMPLATE
    from tests.targets.test_vsphere import make_target

    name, folders = unique("rhel-8.10-source"), [unique("vendor"), unique("team")]
    root = make_target("web")
    made = [root.datacenter.vmFolder.CreateFolder(folder) for folder in folders]
    source, target = root._vm(SOURCE_TEMPLATE), make_target("web", template=name)

    def publish(folder: Any) -> str:  # what an admin does: the source VM cloned into a template of the name
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=root.pool(), datastore=root.datastore()))
        vm = root.clients.wait("clone", source.CloneVM_Task(folder=folder, name=name, spec=spec))
        vm.MarkAsTemplate()
        return f"{vm.config.instanceUuid}@{vm._moId}"

    try:
        first = publish(made[0])  # in a subfolder: Packer finds a bare name anywhere in the datacenter
        assert _as_is(source_image_id(target)) == first
        root.clients.wait("destroy", made[0].childEntity[0].Destroy_Task())
        second = publish(made[0])  # replaced under the same name
        assert second != first and source_image_id(target) == second
        publish(made[1])  # two of that name: Packer's finder refuses it, the watch cannot say which
        _unavailable(lambda: source_image_id(target))
        _unavailable(lambda: source_image_id(make_target("web", template=unique("no-such-template"))))
    finally:
        for folder in made:
            root.clients.wait("destroy", folder.Destroy_Task())


def test_azure_resolves_latest_to_the_newest_version_offered_and_an_image_id_to_what_it_holds(fake_arm: Any) -> None:
    from tests.servers.azure_arm import SUBSCRIPTION
    from tests.targets.test_azure import GROUP_ID, _target

    urn = unique("RHEL").replace("_", "-")
    fake_arm.add_marketplace_version("westeurope", f"RedHat:{urn}:8-lvm-gen2", "8.9.2024060101")
    fake_arm.add_marketplace_version("westeurope", f"RedHat:{urn}:8-lvm-gen2", "8.10.2024070513")
    latest = _target(source_image=f"RedHat:{urn}:8-lvm-gen2:latest")
    assert _as_is(source_image_id(latest)) == f"RedHat:{urn}:8-lvm-gen2:8.10.2024070513"  # as numbers: 8.10 after 8.9
    fake_arm.add_marketplace_version("westeurope", f"RedHat:{urn}:8-lvm-gen2", "8.10.2024111201")
    assert source_image_id(latest) == f"RedHat:{urn}:8-lvm-gen2:8.10.2024111201"
    fixed = f"RedHat:{urn}:8-lvm-gen2:8.9.2024060101"
    assert source_image_id(_target(source_image=fixed)) == fixed
    _unavailable(
        lambda: source_image_id(_target(source_image=f"RedHat:{urn}:8-lvm-gen2:latest", location="northeurope"))
    )

    version_id = f"{GROUP_ID}/Microsoft.Compute/galleries/golden/images/rhel8-web/versions/1.0.0"
    published = {"publishingProfile": {"publishedDate": "2026-11-01T08:00:00Z"}}
    fake_arm.add(version_id, {"location": "westeurope", "properties": published})
    by_version = _target(source_image=version_id)
    assert _as_is(source_image_id(by_version)) == "golden/rhel8-web/1.0.0@2026-11-01T08:00:00Z"
    fake_arm.remove(version_id)  # deleted and published again under the same number
    again = {"publishingProfile": {"publishedDate": "2026-11-02T08:00:00Z"}}
    fake_arm.add(version_id, {"location": "westeurope", "properties": again})
    assert source_image_id(by_version) == "golden/rhel8-web/1.0.0@2026-11-02T08:00:00Z"

    image_name = unique("vendor-rhel8")
    image_id = f"{GROUP_ID}/Microsoft.Compute/images/{image_name}"

    def captured_from(vm: str) -> None:
        source = {"id": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-vendor/providers/Microsoft.Compute/{vm}"}
        fake_arm.add(image_id, {"location": "westeurope", "properties": {"sourceVirtualMachine": source}})

    captured_from("virtualMachines/vendor-1")
    by_image = _target(source_image=image_id)
    first = _as_is(source_image_id(by_image))
    assert first is not None and first.startswith(f"{image_name}@")
    assert source_image_id(by_image) == first
    captured_from("virtualMachines/vendor-2")  # the image made again, under the same id, of another VM
    assert source_image_id(by_image) not in (first, None)
    fake_arm.remove(image_id)
    _unavailable(lambda: source_image_id(by_image))
