"""SQLite mirrored to S3 with two writers: the second is refused and nothing is lost.

Each "host" is a local SQLite file of its own on the same mirror object (S3 on moto, whose
conditional PutObject answers 412 like S3). Before the mirror was conditional, host B's upload
silently replaced host A's, and a fresh host restoring the mirror no longer saw A's build.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.conftest import unique


def _host(tmp_path: Path, name: str, mirror: str) -> tuple[str, BuildStore]:
    url = f"sqlite+s3:///{tmp_path}/{name}/state.db?{mirror}"
    return url, open_store(url)


def _create(store: BuildStore, build_id: str) -> None:
    store.create_build(build_id, pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])


def _ids(store: BuildStore) -> set[str]:
    return {r.build_id for r in store.list_builds()}


@pytest.fixture
def mirror(moto_url: str) -> str:
    return f"bucket={unique('mirror')}&prefix=team&region=us-east-1&endpoint_url={moto_url}"


def test_a_second_writer_is_refused_and_no_build_is_lost(tmp_path: Path, mirror: str) -> None:
    _, host_a = _host(tmp_path, "a", mirror)
    url_b, host_b = _host(tmp_path, "b", mirror)
    host_a.init()
    host_b.init()  # both hosts set up before either writes, as two schedulers started together
    _create(host_a, "fromA")
    with pytest.raises(Conflict, match=r"changed by another writer .*last written by .* pid [0-9]+"):
        _create(host_b, "fromB")
    assert _ids(host_b) == set()  # nothing was written on B either
    result = CliRunner().invoke(cli, ["--store", url_b, "build", "create", "fromB2", "--pipeline", "p",
                                      "--cloud", "local", "--image-type", "t"])  # fmt: skip
    assert result.exit_code == 3, result.output
    _, fresh = _host(tmp_path, "c", mirror)
    assert _ids(fresh) == {"fromA"}

    # B does what the refusal says: moves its copy away and restores the mirror; then it may write.
    host_b.close()
    shutil.move(tmp_path / "b", tmp_path / "b.old")
    _, host_b = _host(tmp_path, "b", mirror)
    _create(host_b, "fromB")
    _, fresh = _host(tmp_path, "d", mirror)
    assert _ids(fresh) == {"fromA", "fromB"}


def test_a_host_with_a_stale_copy_is_refused(tmp_path: Path, mirror: str) -> None:
    _, host_a = _host(tmp_path, "a", mirror)
    host_a.init()
    _create(host_a, "one")
    _, host_b = _host(tmp_path, "b", mirror)
    assert _ids(host_b) == {"one"}  # restored
    _create(host_a, "two")  # A writes on; B's copy is now older than the mirror
    lease_before = host_b.get("one").lease
    with pytest.raises(Conflict, match="another writer"):
        host_b.begin("one", 5, owner="b")
    assert host_b.get("one").lease == lease_before
    lease = host_a.begin("one", 5, owner="a")  # the writer that is current goes on
    host_a.complete("one", 5, token=lease.token)
    _, fresh = _host(tmp_path, "c", mirror)
    assert fresh.get("one").completed == [0, 5] and _ids(fresh) == {"one", "two"}


def test_a_copy_made_before_the_mirror_was_conditional_is_adopted_only_if_equal(tmp_path: Path, mirror: str) -> None:
    _, host_a = _host(tmp_path, "a", mirror)
    host_a.init()
    _create(host_a, "one")
    host_a.close()
    sidecar = tmp_path / "a/.state.db.mirror.json"
    assert sidecar.exists()
    sidecar.unlink()  # as an older version of this store left it
    _, host_a = _host(tmp_path, "a", mirror)
    _create(host_a, "two")  # same content as the mirror: its version is adopted
    _, fresh = _host(tmp_path, "b", mirror)
    assert _ids(fresh) == {"one", "two"}
    _create(fresh, "three")
    host_a.close()
    (tmp_path / "a/.state.db.mirror.json").unlink()
    _, host_a = _host(tmp_path, "a", mirror)
    with pytest.raises(Conflict, match="holds other builds"):
        _create(host_a, "four")
