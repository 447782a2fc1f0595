"""Build once, publish to many: the local catalog, Glance and a vSphere content library.

Real: the publish task from the DAG factory, the store (SQLite), qemu-img (a real qcow2 here,
converted to a stream-optimized VMDK for vSphere), the local catalog, openstacksdk against the
loopback OpenStack fake (Glance's interoperable import and upload, tests/servers/openstack.py),
and pyVmomi/vAPI against govmomi's vCenter simulator (a content library upload session). The
sealed image is a small qcow2 made here; the whole local pipeline, with a real image, publishes to
all three in ``test_local_pipeline.py``.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.ids import derive_build_id
from airflow_provider_imagebuild.destinations import destination_for
from airflow_provider_imagebuild.destinations.glance import GlanceUpload
from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, parse_spec
from airflow_provider_imagebuild.store import open_store
from airflow_provider_imagebuild.targets.base import MANAGED_BY, build_digest, file_hash
from airflow_provider_imagebuild.targets.openstack import KEY, MANAGED
from tests.conftest import OPENSTACK_CONN_ID, VSPHERE_CONN_ID, unique
from tests.dags.conftest import write
from tests.helpers import task_context
from tests.servers.openstack import ADMIN_PASSWORD, ADMIN_USER, OTHER_PROJECT_ID, PROJECT_ID, connection_uri
from tests.servers.vcsim import LIBRARY


def sealed_build(
    tmp_path: Path, spec_text: str, build_id: str = "many-1", content: bytes = b"golden image " * 200_000
) -> tuple[Any, Any, Path]:
    """The publish task of the spec's DAG, and a build whose seal (95) recorded a real qcow2."""
    from airflow_provider_imagebuild.dag_factory import build_dag

    spec = load_spec(write(tmp_path / "pipelines/many.yaml", spec_text))
    task = next(t for t in build_dag(spec).tasks if t.state == 100)  # type: ignore[attr-defined]
    store = open_store(str(spec.store))
    store.create_build(build_id, pipeline="many", cloud="local", image_type="base", plan=[0, 95, 100])
    return task, store, seal(spec, store, build_id, content)


def seal(spec: Any, store: Any, build_id: str, content: bytes) -> Path:
    """Milestone 95 (again, after a reset): a real qcow2 of ``content`` at the build's image path."""
    from airflow_provider_imagebuild.targets.local import LocalTarget

    image = LocalTarget.from_settings(spec.target, pipeline="many", image_type="base").image_path(store.get(build_id))
    image.parent.mkdir(parents=True, exist_ok=True)
    raw = image.with_name("disk.raw")
    raw.write_bytes(content)
    image.unlink(missing_ok=True)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(image)], check=True)
    raw.unlink()
    lease = store.begin(build_id, 95, owner="test")
    sha256 = file_hash(image)
    passed = {"boot_sealed_passed": True, "boot_sealed_image": str(image), "boot_sealed_sha256": sha256}  # booted
    store.complete(build_id, 95, token=lease.token, outputs={"image_id": str(image), "image_sha256": sha256, **passed})
    return image


SPEC = """pipeline: many
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
target: {{work_dir: {tmp}/work, catalog: {tmp}/catalog}}
publish:
  - catalog
  - glance: {{openstack_conn_id: {os_conn}, visibility: shared, properties: {{os_distro: debian, os_version: "12"}}}}
  - vsphere_library: {{vsphere_conn_id: {vs_conn}, library: {library}}}
milestones:
  95: {{action: seal}}
  100: {{action: publish}}
"""


def test_each_destination_is_recorded_and_a_clear_retries_only_the_failed_one(
    tmp_path: Path, fake_os: Any, vsphere_library: str
) -> None:
    text = SPEC.format(tmp=tmp_path, os_conn=OPENSTACK_CONN_ID, vs_conn=VSPHERE_CONN_ID, library=LIBRARY)
    task, store, image = sealed_build(tmp_path, text)
    # The first transfer to Glance arrives cut in half: only the checksum check (Glance's MD5 and
    # SHA-512 of what it stored against the file's) tells; the image is deleted, the destination fails.
    fake_os.corrupt_uploads = 1
    failed = r"publish failed at glance: .*is not the file's MD5.*kept for the next try\): catalog, vsphere_library"
    with pytest.raises(Exception, match=failed):
        task.execute(task_context("many-1", task.task_id, 1))
    rec = store.get("many-1")
    assert rec.status == "failed" and rec.current_state == 100
    assert {k for k in rec.metadata if k.startswith("published.")} == {"published.catalog", "published.vsphere_library"}
    first = {k: json.loads(rec.metadata[f"published.{k}"])["outputs"] for k in ("catalog", "vsphere_library")}
    catalog_copy = Path(first["catalog"]["catalog_image"])
    copied_at = catalog_copy.stat().st_mtime_ns

    task.execute(task_context("many-1", task.task_id, 2))  # the cleared task
    rec = store.get("many-1")
    assert rec.delivered
    outputs = rec.milestones[100].outputs
    assert set(outputs["destinations"]) == {"catalog", "glance", "vsphere_library"}
    assert outputs["catalog_image"] == str(catalog_copy)  # the target's own outputs stay where they were
    # catalog and content library: done once, not again
    assert catalog_copy.stat().st_mtime_ns == copied_at
    assert outputs["destinations"]["vsphere_library"] == first["vsphere_library"]
    runs = [a for a in rec.attempts_at(100) if a.kind == "run"]
    assert [a.status for a in runs] == ["failed", "completed"]

    # Glance: one active image with the file's checksums and the spec's properties; the half-made
    # image of the failed transfer was deleted.
    glance = outputs["destinations"]["glance"]
    images = [i for i in fake_os.images.values() if i["name"] == "many-many-1"]
    assert [i["id"] for i in images] == [glance["image_id"]]
    assert images[0]["status"] == "active" and images[0]["os_hash_value"] == file_hash(image, "sha512")
    assert images[0]["os_distro"] == "debian" and images[0]["visibility"] == "shared"
    assert glance["method"] == "glance-direct"  # the fake offers Glance's interoperable import

    # The content library item holds the OVF descriptor, the stream-optimized VMDK and the manifest.
    item = outputs["destinations"]["vsphere_library"]
    assert item["files"] == ["many-many-1.ovf", "many-many-1.vmdk", "many-many-1.mf"]
    from airflow_provider_imagebuild.clouds.vsphere import VsphereClients

    rest = VsphereClients.from_connection(VSPHERE_CONN_ID).rest()
    files = rest.get("/com/vmware/content/library/item/file", params={"library_item_id": item["library_item_id"]})
    assert sorted(f["name"] for f in files.json()["value"]) == sorted(item["files"])


GLANCE_ONLY = """pipeline: many
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
target: {{work_dir: {tmp}/work, catalog: {tmp}/catalog}}
publish:
  - glance: {{openstack_conn_id: {os_conn}, visibility: {visibility}}}
milestones:
  95: {{action: seal}}
  100: {{action: publish}}
"""


def test_glance_never_takes_another_projects_image_of_the_builds_name_and_key(tmp_path: Path, fake_os: Any) -> None:
    """The build's key is a digest of public names: another project can give its own public images
    this build's image name and key, one even with the very bytes. Neither is kept as this build's
    published image nor deleted; the build uploads its own, in its own project."""
    build_id = unique("many")
    text = GLANCE_ONLY.format(tmp=tmp_path, os_conn=OPENSTACK_CONN_ID, visibility="shared")
    task, store, image = sealed_build(tmp_path, text, build_id)
    name, marks = f"many-{build_id}", {KEY: build_digest("many", build_id, 20), MANAGED: MANAGED_BY}
    same_bytes = fake_os.add_image(name, image.read_bytes(), owner=OTHER_PROJECT_ID, visibility="public", **marks)
    older = fake_os.add_image(name, b"an older image", owner=OTHER_PROJECT_ID, visibility="public", **marks)

    task.execute(task_context(build_id, task.task_id, 1))
    glance = store.get(build_id).milestones[100].outputs["destinations"]["glance"]
    assert glance["image_id"] not in (same_bytes, older)
    mine = fake_os.images[glance["image_id"]]
    assert mine["owner"] == PROJECT_ID and mine["os_hash_value"] == file_hash(image, "sha512")
    assert fake_os.images[same_bytes]["owner"] == fake_os.images[older]["owner"] == OTHER_PROJECT_ID  # left alone


@pytest.fixture
def glance(fake_os: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake's Glance with imports polled quickly, its image_conversion plugin off again after the test."""
    monkeypatch.setattr(GlanceUpload, "poll_s", 0.05, raising=False)
    monkeypatch.setattr(fake_os, "image_conversion", None)
    return fake_os


def raw_digests(image: Path, tmp_path: Path) -> tuple[str, str]:
    """MD5 and SHA-512 of the disk content of a qcow2 (what Glance stores once it converted it to raw)."""
    import hashlib

    raw = tmp_path / "expected.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    data = raw.read_bytes()
    return hashlib.md5(data).hexdigest(), hashlib.sha512(data).hexdigest()


@pytest.mark.parametrize("output_format", ["raw", "vmdk"])
def test_glance_converting_imports_is_verified_and_kept_on_a_retry(
    tmp_path: Path, glance: Any, output_format: str
) -> None:
    """Glance's image_conversion plugin (raw is its default output, what Ceph-backed clouds run)
    stores the imported qcow2 converted: its checksum and os_hash_value are of the converted data,
    never the file's. The publish checks what Glance documents it stores (raw: the file's disk
    content; vmdk, whose bytes differ at each conversion: the data read back and compared as a
    disk), records the stored form, and a retry keeps the image instead of deleting and importing
    it again."""
    glance.image_conversion = output_format
    build_id = unique("many")
    text = GLANCE_ONLY.format(tmp=tmp_path, os_conn=OPENSTACK_CONN_ID, visibility="shared")
    task, store, image = sealed_build(tmp_path, text, build_id)
    task.execute(task_context(build_id, task.task_id, 1))
    published = store.get(build_id).milestones[100].outputs["destinations"]["glance"]
    stored = glance.images[published["image_id"]]
    assert stored["disk_format"] == published["disk_format"] == output_format and published["converted"] is True
    assert stored["status"] == "active" and published["sha512"] == file_hash(image, "sha512")
    if output_format == "raw":
        assert (stored["checksum"], stored["os_hash_value"]) == raw_digests(image, tmp_path)
    spec = load_spec(tmp_path / "pipelines/many.yaml").publish[0]
    again = destination_for(spec, pipeline="many", image_type="base").publish(store.get(build_id), image)
    assert again["method"] == "kept" and again["image_id"] == published["image_id"]
    assert [i["id"] for i in glance.images.values() if i["name"] == f"many-{build_id}"] == [published["image_id"]]


def test_a_converted_image_that_is_not_the_files_is_replaced(tmp_path: Path, glance: Any) -> None:
    """The conversion does not blind the check: a converted image whose content is not the sealed
    file (an earlier seal's, of the same name and key) is deleted and imported again."""
    glance.image_conversion = "raw"
    build_id = unique("many")
    text = GLANCE_ONLY.format(tmp=tmp_path, os_conn=OPENSTACK_CONN_ID, visibility="shared")
    task, store, _ = sealed_build(tmp_path, text, build_id, content=b"first seal " * 100_000)
    task.execute(task_context(build_id, task.task_id, 1))
    first = store.get(build_id).milestones[100].outputs["destinations"]["glance"]["image_id"]
    store.reset(build_id, to=95, reason="sealed again")
    resealed = seal(load_spec(tmp_path / "pipelines/many.yaml"), store, build_id, b"second seal " * 100_000)
    task.execute(task_context(build_id, task.task_id, 2))
    second = store.get(build_id).milestones[100].outputs["destinations"]["glance"]
    assert second["image_id"] != first and first not in glance.images
    assert glance.images[second["image_id"]]["os_hash_value"] == raw_digests(resealed, tmp_path)[1]
    # A transfer cut short still converts (qemu-img reads what is missing as zeros): only the
    # digests of the file's disk content tell; the image is deleted and the destination fails.
    store.reset(build_id, to=95, reason="sealed a third time")
    seal(load_spec(tmp_path / "pipelines/many.yaml"), store, build_id, b"third seal " * 100_000)
    glance.corrupt_uploads = 1
    with pytest.raises(Exception, match=r"is not the file's disk content's \(Glance converted it to raw\) MD5"):
        task.execute(task_context(build_id, task.task_id, 3))
    assert not [i for i in glance.images.values() if i["name"] == f"many-{build_id}"]  # the second seal's too


def test_a_failed_import_task_is_one_line_and_leaves_no_image(tmp_path: Path, glance: Any) -> None:
    """The import runs after Glance answered the call; when its task fails (the plugin's qemu-img
    failing, say), the image goes back to queued and the task holds the reason: the publish says it
    and deletes the image, and the retry imports again."""
    glance.image_conversion = "raw"
    glance.failing_imports.append("Image has disallowed configuration")
    build_id = unique("many")
    text = GLANCE_ONLY.format(tmp=tmp_path, os_conn=OPENSTACK_CONN_ID, visibility="shared")
    task, store, _ = sealed_build(tmp_path, text, build_id)
    stored = (
        r"glance: Glance image many-\S+: its data was not stored \(import task: Image has disallowed configuration\)"
    )
    with pytest.raises(Exception, match=stored):
        task.execute(task_context(build_id, task.task_id, 1))
    assert not [i for i in glance.images.values() if i["name"] == f"many-{build_id}"]
    task.execute(task_context(build_id, task.task_id, 2))
    assert store.get(build_id).milestones[100].outputs["destinations"]["glance"]["converted"] is True


def test_glance_public_needs_the_admin_role_and_says_so(tmp_path: Path, glance: Any, monkeypatch: Any) -> None:
    """Glance's publicize_image policy is the admin role's by default: a member login's public
    image is refused with a 403, one line naming publish.glance.visibility, not retried; an admin
    login publishes it."""
    from airflow.sdk.exceptions import AirflowFailException

    build_id = unique("many")
    text = GLANCE_ONLY.format(tmp=tmp_path, os_conn=OPENSTACK_CONN_ID, visibility="public")
    task, store, _ = sealed_build(tmp_path, text, build_id)
    with pytest.raises(
        AirflowFailException, match=r"publish\.glance\.visibility: public needs Glance's publicize_image"
    ):
        task.execute(task_context(build_id, task.task_id, 1))
    admin = connection_uri(glance, ADMIN_PASSWORD, user=ADMIN_USER)
    monkeypatch.setenv(f"AIRFLOW_CONN_{OPENSTACK_CONN_ID.upper()}", admin)
    task.execute(task_context(build_id, task.task_id, 2))
    published = store.get(build_id).milestones[100].outputs["destinations"]["glance"]
    assert glance.images[published["image_id"]]["visibility"] == "public"


@pytest.mark.parametrize("length", [63, 128])
def test_the_glance_image_name_fits_with_a_long_pipeline_and_a_scheduled_run(
    tmp_path: Path, glance: Any, length: int
) -> None:
    """A pipeline name of 63 characters and of 128 (the longest a spec takes) with a scheduled run's
    derived build id: the default ``<pipeline>-<build id>`` would be 257 characters, Glance takes
    255 (its image schema, which the fake applies); the name keeps the pipeline and the digest."""
    pipeline = (unique("glance-names") + "-" + "y" * 128)[:length]
    build_id = derive_build_id(pipeline, "scheduled__2026-11-04T03:15:00+00:00")
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    build = store.register(build_id, BuildIdentity(pipeline, "local", "base", plan=(0, 95, 100)))
    image = tmp_path / "sealed.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(image), "16M"], check=True, capture_output=True)
    raw = {"pipeline": pipeline, "cloud": "local", "image_type": "base", "milestones": {100: {"action": "publish"}},
           "publish": [{"glance": {"openstack_conn_id": OPENSTACK_CONN_ID}}]}  # fmt: skip
    spec = parse_spec(raw)
    published = destination_for(spec.publish[0], pipeline=pipeline, image_type="base").publish(build, image)
    name = glance.images[published["image_id"]]["name"]
    assert len(name) <= 255 and name.startswith(f"{pipeline}-") and name == published["image_name"]


LIBRARY_ONLY = """pipeline: many
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
target: {{work_dir: {tmp}/work, catalog: {tmp}/catalog}}
publish:
  - vsphere_library: {{vsphere_conn_id: {vs_conn}, library: {library}}}
milestones:
  95: {{action: seal}}
  100: {{action: publish}}
"""


def library_files(rest: Any, item_id: str) -> dict[str, int]:
    found = rest.get("/com/vmware/content/library/item/file", params={"library_item_id": item_id}).json()["value"]
    return {f["name"]: int(f["size"]) for f in found}


def download(rest: Any, item_id: str, name: str, to: Path) -> Path:
    """A file of a library item, fetched through a download session (what a consumer does)."""
    session = rest.post(
        "/com/vmware/content/library/item/download-session", json={"create_spec": {"library_item_id": item_id}}
    ).json()["value"]
    prepared = rest.post(
        f"/com/vmware/content/library/item/downloadsession/file/id:{session}",
        params={"~action": "prepare"},
        json={"file_name": name},
    ).json()["value"]
    to.write_bytes(rest.get(prepared["download_endpoint"]["uri"]).content)
    return to


def test_a_resealed_image_of_the_same_size_replaces_the_library_item(tmp_path: Path, vsphere_library: str) -> None:
    """A build sealed again (reset to 95) whose new image has the very size of the old one, so
    every file of the OVF package (descriptor, stream-optimized disk, manifest) does too: the
    content library item of the first seal is replaced, not kept because the sizes coincide."""
    from airflow_provider_imagebuild.clouds.vsphere import VsphereClients

    build_id = unique("many")
    text = LIBRARY_ONLY.format(tmp=tmp_path, vs_conn=VSPHERE_CONN_ID, library=LIBRARY)
    first, second = (random.Random(seed).randbytes(2 << 20) for seed in (1, 2))  # incompressible: same sizes
    task, store, image = sealed_build(tmp_path, text, build_id, first)
    task.execute(task_context(build_id, task.task_id, 1))
    before = store.get(build_id).milestones[100].outputs["destinations"]["vsphere_library"]
    rest = VsphereClients.from_connection(VSPHERE_CONN_ID).rest()
    sizes = library_files(rest, before["library_item_id"])
    old_size, old_sha256 = image.stat().st_size, file_hash(image)

    store.reset(build_id, to=95, reason="sealed again with a fixed playbook")
    resealed = seal(load_spec(tmp_path / "pipelines/many.yaml"), store, build_id, second)
    assert resealed.stat().st_size == old_size and file_hash(resealed) != old_sha256
    task.execute(task_context(build_id, task.task_id, 2))
    after = store.get(build_id).milestones[100].outputs["destinations"]["vsphere_library"]

    assert after["upload"] == "uploaded" and after["image_sha256"] == file_hash(resealed)
    assert library_files(rest, after["library_item_id"]) == sizes  # the sizes do coincide
    found = rest.get(f"/com/vmware/content/library/item/id:{before['library_item_id']}")
    assert after["library_item_id"] != before["library_item_id"] and found.status_code == 404
    disk = download(rest, after["library_item_id"], after["files"][1], tmp_path / "downloaded.vmdk")
    subprocess.run(["qemu-img", "compare", str(disk), str(resealed)], check=True, capture_output=True)
    # Publishing the same image again (a try whose record was lost) keeps the item that holds it.
    from airflow_provider_imagebuild.destinations import destination_for

    library = load_spec(tmp_path / "pipelines/many.yaml").publish[0]
    again = destination_for(library, pipeline="many", image_type="base").publish(store.get(build_id), resealed)
    assert again["library_item_id"] == after["library_item_id"] and again["upload"] == "kept"
    assert again["vmdk_sha256"] == after["vmdk_sha256"]  # what was uploaded, not a new conversion's


@pytest.mark.parametrize(
    ("cloud", "publish", "where", "reason"),
    [
        ("aws", ["catalog"], "publish.0.catalog", "on aws use '- target'"),
        ("aws", [{"glance": {}}], "publish.0.glance", "only the local target makes"),
        ("local", ["catalog", {"catalog": {}}], "publish.1", "listed twice"),
        ("local", [{"catalog": {}, "target": {}}], "publish.0", "give exactly one of"),
        ("local", [{"glance": {"visibility": "everyone"}}], "publish.0.glance.visibility", "Input should be"),
        ("local", [{"vsphere_library": {}}], "publish.0.vsphere_library.library", "is required"),
        ("local", [{"glance": {"properties": {"imagebuild_key": "x"}}}], "publish.0.glance.properties", "provider"),
    ],
)
def test_bad_publish_lists_name_the_entry(cloud: str, publish: list[Any], where: str, reason: str) -> None:
    raw = {"pipeline": "p", "cloud": cloud, "image_type": "t", "publish": publish,
           "milestones": {100: {"action": "publish"}}}  # fmt: skip
    with pytest.raises(SpecError, match=reason) as info:
        parse_spec(raw)
    assert where in str(info.value)


def test_a_publish_list_needs_a_publish_milestone() -> None:
    with pytest.raises(SpecError, match="publish: needs a milestone with action: publish"):
        parse_spec({"pipeline": "p", "cloud": "local", "image_type": "t", "publish": ["catalog"]})
