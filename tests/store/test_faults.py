"""Stores with bad records and bad disks: one bad record does not hide the others, a record is
never served under another build's id, and a full or read-only disk is "store unusable" (exit 5)
with the system's reason, not a traceback. The disks are real: a small tmpfs, full or remounted
read-only (the tests run as root, as CI does)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.errors import CorruptRecord, StoreUnavailable
from airflow_provider_imagebuild.store import BuildStore, open_store


def _create(store: BuildStore, build_id: str) -> None:
    store.create_build(build_id, pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])


def _cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--store", url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_one_bad_record_does_not_hide_the_others(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/j"
    store = open_store(url)
    for build_id in ("good-1", "good-2", "empty-plan", "renamed"):
        _create(store, build_id)
    builds = tmp_path / "j/builds"
    (builds / "broken.json").write_text("{not json")
    doc = json.loads((builds / "empty-plan.json").read_text())
    (builds / "empty-plan.json").write_text(json.dumps({**doc, "plan": []}))
    (builds / "renamed.json").write_text((builds / "good-1.json").read_text())  # a copy under another name

    records, problems = store.scan_builds()
    assert [r.build_id for r in records] == ["good-2", "good-1"]
    assert sorted(str(p).split(":")[0] for p in problems) == ["build broken", "build empty-plan", "build renamed"]
    code, out, err = _cli(url, "build", "list", "--json")
    assert code == 0 and {b["build_id"] for b in json.loads(out)} == {"good-1", "good-2"}
    assert "broken.json" in err and "empty-plan" in err and "renamed" in err and "Traceback" not in err

    with pytest.raises(CorruptRecord, match="plan"):
        store.get("empty-plan")  # not "unexpected IndexError"
    with pytest.raises(CorruptRecord, match="names build 'good-1'"):
        store.get("renamed")  # never served under the wrong id
    code, _, err = _cli(url, "build", "show", "renamed")
    assert code == 5 and "names build 'good-1'" in err
    code, _, err = _cli(url, "build", "begin", "empty-plan", "5", "--owner", "w")
    assert code == 5 and "malformed" in err
    assert json.loads((builds / "empty-plan.json").read_text())["plan"] == []  # left for inspection


def test_a_bad_sqlite_row_does_not_hide_the_others(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    _create(store, "good")
    _create(store, "bad")
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE builds SET doc = '[1' WHERE build_id = 'bad'")
    records, problems = store.scan_builds()
    assert [r.build_id for r in records] == ["good"] and "bad" in str(problems[0])


def test_a_store_path_that_is_a_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    code, _, err = _cli(f"file://{tmp_path}/afile", "build", "list")
    assert code == 5 and "is not a directory" in err
    code, _, err = _cli(f"sqlite:///{tmp_path}/afile", "build", "list")
    assert code == 5 and "file is not a database" in err


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/j")
    _create(store, "b-1")
    _create(store, "b-1.x")
    builds = tmp_path / "j/builds"
    stale = builds / ".b-1+killed.tmp"
    other = builds / ".b-1.x+inflight.tmp"  # another build's, whose id starts the same way
    stale.write_text("{half")
    other.write_text("{half")
    store.begin("b-1", 5, owner="w")
    assert not stale.exists() and other.exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own."""
    assert os.geteuid() == 0, "mounting a tmpfs needs root (CI and make test run as root)"
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.parametrize("scheme", ["file", "sqlite"])
def test_full_and_read_only_disks_are_store_unusable(small_disk: Path, scheme: str) -> None:
    url = f"file://{small_disk}/j" if scheme == "file" else f"sqlite:///{small_disk}/s.db"
    store = open_store(url)
    _create(store, "b-1")
    store.close()  # a file open for writing would keep the remount from happening
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code, _, err = _cli(url, "build", "begin", "b-1", "5", "--owner", "w")
    assert code == 5 and ("Read-only file system" in err or "readonly" in err), err
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    try:  # fill the disk
        with open(small_disk / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
    except OSError:
        pass
    with pytest.raises(StoreUnavailable, match=r"No space left on device|database or disk is full"):
        for i in range(200):  # the first write may still fit in a page SQLite already has
            store.set_metadata("b-1", {f"k{i}": "x" * 3000})
    (small_disk / "filler").unlink()
    rec = open_store(url).get("b-1")  # what was there is intact
    assert rec.completed == [0] and all(len(v) == 3000 for v in rec.metadata.values())


def test_a_second_thread_opening_the_store_keeps_the_first_ones_locks(tmp_path: Path) -> None:
    """POSIX drops every lock a process holds on a file when it closes any descriptor of it. The
    store once read the file's header with open()/close() whenever a new thread connected (a
    milestone's heartbeat thread does), which dropped the SQLite locks of this process's other
    connections: another process closing its connection then believed it was the last one, and
    removed the write-ahead log this process still used ("database disk image is malformed",
    seen when Concourse steps and an Airflow run shared a SQLite store)."""
    import subprocess
    import sys
    import threading

    store = open_store(f"sqlite:///{tmp_path}/s.db")
    _create(store, "first")  # this thread's connection is open, in WAL mode
    other = threading.Thread(target=store.list_builds)  # another thread connects
    other.start()
    other.join()
    wal = tmp_path / "s.db-wal"
    path = str(tmp_path / "s.db")
    writer = (
        f"import sqlite3; c = sqlite3.connect({path!r}); c.execute('PRAGMA user_version = 7'); c.commit(); c.close()"
    )
    subprocess.run([sys.executable, "-c", writer], check=True, timeout=60)
    assert wal.exists(), "another process removed the write-ahead log this process still uses"
    assert [r.build_id for r in store.scan_builds()[0]] == ["first"]
