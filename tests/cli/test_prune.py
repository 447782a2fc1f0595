"""``imagebuild store prune``: old finished builds archived then removed, the newest per pipeline
and anything in progress kept, ``--dry-run`` changing nothing; real SQLite store and CLI, archives
in a folder and in S3 on moto."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.conftest import FakeClock


def test_prune_archives_then_removes_old_finished_builds(tmp_path: Path, moto_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url, clock=FakeClock())  # January 2026: months old
    for pipeline, count in (("web", 3), ("db", 1)):
        for i in range(count):
            build_id = f"{pipeline}-{i}"
            store.create_build(build_id, pipeline=pipeline, cloud="aws", image_type="base", plan=[0, 5, 100])
            for code in (5, 100):
                lease = store.begin(build_id, code, owner="w")
                store.complete(build_id, code, token=lease.token)
    store.create_build("web-running", pipeline="web", cloud="aws", image_type="base", plan=[0, 5, 100])
    store.begin("web-running", 5, owner="w", lease_seconds=60)  # expired long ago, but in progress

    def prune(*args: str) -> dict[str, object]:
        got = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "90d", *args, "--json"])
        assert got.exit_code == 0, got.output
        return dict(json.loads(got.output))

    planned = prune("--keep-last", "1", "--dry-run")
    assert planned["removed"] == ["web-0", "web-1"] and planned["archived"] == []
    assert len(store.scan_builds()[0]) == 5  # nothing changed

    done = prune("--keep-last", "1", "--archive", f"file://{tmp_path}/archive")
    assert done["removed"] == ["web-0", "web-1"] and done["kept_newest"] == ["db-0", "web-2"]
    [kept_file] = (tmp_path / "archive/web/web-0").iterdir()  # <pipeline>/<build id>/v<version>-<updated_at>.json
    kept = json.loads(kept_file.read_text())
    assert kept["build_id"] == "web-0" and kept["delivered_at"]
    assert kept_file.name == f"v{kept['version']}-{stamp(kept['updated_at'])}.json"
    assert sorted(r.build_id for r in store.scan_builds()[0]) == ["db-0", "web-2", "web-running"]

    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url, aws_access_key_id="testing",
                      aws_secret_access_key="testing")  # fmt: skip
    s3.create_bucket(Bucket="imagebuild-archive")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    archive = f"s3://imagebuild-archive/2026?region=us-east-1&endpoint_url={moto_url}"
    done = prune("--pipeline", "web", "--archive", archive)
    assert done["removed"] == ["web-2"]
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket="imagebuild-archive")["Contents"]]
    assert key.startswith("2026/web/web-2/v") and done["archived"] == [f"s3://imagebuild-archive/{key}"]
    body = s3.get_object(Bucket="imagebuild-archive", Key=key)["Body"].read()
    assert json.loads(body)["pipeline"] == "web"
    assert sorted(r.build_id for r in store.scan_builds()[0]) == ["db-0", "web-running"]

    bad = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "soon"])
    assert bad.exit_code == 2 and "must be a number of days or hours" in bad.output
    bad = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "1d", "--archive", "ftp://x"])
    assert bad.exit_code == 2 and "--archive" in bad.output
    assert len(store.scan_builds()[0]) == 2


def stamp(updated_at: str) -> str:
    """``updated_at`` as the archive names it: 2026-01-31T23:59:59.000000Z -> 20260131T235959.000000Z."""
    return updated_at.replace("-", "").replace(":", "")


def prune_json(url: str, *args: str) -> dict[str, Any]:
    got = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "0h", *args, "--json"])
    assert got.exit_code == 0, got.output
    return dict(json.loads(got.stdout))


def run(store: BuildStore, build_id: str, code: int, outputs: dict[str, Any] | None = None,
        meta: dict[str, str] | None = None, fail: bool = False) -> None:  # fmt: skip
    """One milestone as an operator runs it: lease, metadata under the lease, complete or fail."""
    lease = store.begin(build_id, code, owner="w")
    if meta:
        store.set_metadata(build_id, meta, token=lease.token, state=code)
    if fail:
        store.fail(build_id, code, token=lease.token, error="broke")
    else:
        store.complete(build_id, code, token=lease.token, outputs=outputs)


def deliver(store: BuildStore, build_id: str, pipeline: str = "web") -> None:
    store.create_build(build_id, pipeline=pipeline, cloud="aws", image_type="base", plan=[0, 5, 100])
    run(store, build_id, 5)
    run(store, build_id, 100)


def test_prune_removes_delivered_builds_and_failed_ones_that_hold_nothing(tmp_path: Path) -> None:
    """A build completed up to 5 of 0,5,45,100 (never delivered) and one in progress are never
    removed; a failed build that still records a live host, a checkpoint image or a sealed image is
    kept and listed with what it holds; delivered and failed-and-clean builds go."""
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url, clock=FakeClock())

    def create(build_id: str, plan: list[int]) -> None:
        store.create_build(build_id, pipeline="web", cloud="aws", image_type="base", plan=plan)

    create("half-done", [0, 5, 45, 100])
    run(store, "half-done", 5)
    create("host-left", [0, 5, 15, 100])
    run(store, "host-left", 5)
    run(store, "host-left", 15, meta={"host_id": "i-0abc"}, fail=True)
    create("checkpoint-left", [0, 5, 10, 100])
    run(store, "checkpoint-left", 5, {"image_id": "ami-green", "checkpoint_image": "ami-green"})
    run(store, "checkpoint-left", 10, fail=True)
    create("sealed-left", [0, 5, 95, 100])
    run(store, "sealed-left", 5, {"image_id": "ami-5", "checkpoint_image": "ami-5"})
    run(store, "sealed-left", 95, {"image_id": "ami-final"}, meta={"checkpoints_discarded": "5@1"})
    run(store, "sealed-left", 100, meta={"host_id": "", "host_released": "i-1"}, fail=True)
    create("failed-clean", [0, 5, 15, 100])
    run(store, "failed-clean", 5)
    run(store, "failed-clean", 15, meta={"host_id": "", "host_released": "i-9"}, fail=True)
    deliver(store, "delivered")
    create("running", [0, 5, 100])
    store.begin("running", 5, owner="w", lease_seconds=60)

    planned = prune_json(url, "--dry-run")
    held = {k["build_id"]: k["holds"] for k in planned["kept_holding"]}
    assert sorted(planned["removed"]) == ["delivered", "failed-clean"]
    assert held == {
        "host-left": [{"kind": "host", "id": "i-0abc", "milestone": None}],
        "checkpoint-left": [{"kind": "checkpoint", "id": "ami-green", "milestone": 5}],
        "sealed-left": [{"kind": "image", "id": "ami-final", "milestone": 95}],
    }
    assert len(store.scan_builds()[0]) == 7

    got = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "0h"])
    assert got.exit_code == 0, got.output
    assert "removed 2 build(s)" in got.stdout
    assert "kept host-left: still holds build host i-0abc: abandon it first" in got.stdout
    assert "kept sealed-left: still holds staged image ami-final (milestone 95): abandon it first" in got.stdout
    left = sorted(r.build_id for r in store.scan_builds()[0])
    assert left == ["checkpoint-left", "half-done", "host-left", "running", "sealed-left"]


def test_a_record_whose_names_would_make_a_path_is_reported_and_left_alone(tmp_path: Path) -> None:
    """A stored pipeline of ``../../escaped`` or an absolute path never steers where --archive
    writes: the record is reported as corrupt (naming the field, not echoing the value), kept, and
    the others are archived and removed."""
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url, clock=FakeClock())
    for build_id in ("good", "escaper", "absolute", "far-cloud"):
        deliver(store, build_id)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        for build_id, path, value in (("escaper", "$.pipeline", "../../escaped"),
                                      ("absolute", "$.pipeline", f"{tmp_path}/abs"),
                                      ("far-cloud", "$.cloud", "../cloud")):  # fmt: skip
            conn.execute("UPDATE builds SET doc = json_set(doc, ?, ?) WHERE build_id = ?", (path, value, build_id))
    archive = tmp_path / "archive/deep"

    got = CliRunner().invoke(
        cli, ["--store", url, "store", "prune", "--older-than", "0h", "--archive", f"file://{archive}", "--json"]
    )
    assert got.exit_code == 0, got.output
    done = json.loads(got.stdout)
    assert done["removed"] == ["good"] and len(done["archived"]) == 1
    problems = " ".join(done["problems"])
    assert "escaper" in problems and "absolute" in problems and "far-cloud" in problems
    assert "pipeline" in problems and "cloud" in problems and "escaped" not in problems and "abs'" not in problems
    assert "escaper" in got.stderr and "left alone" in got.stderr and "Traceback" not in got.output
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("s.db")]
    assert written and all(archive in p.parents for p in written), written
    with sqlite3.connect(tmp_path / "s.db") as conn:
        left = sorted(row[0] for row in conn.execute("SELECT build_id FROM builds"))
    assert left == ["absolute", "escaper", "far-cloud"]


def test_an_archive_url_with_a_host_is_refused(tmp_path: Path) -> None:
    """``file://tmp/x`` names host ``tmp`` and path ``/x``: refused before anything is written,
    rather than archiving into a folder at the root of the filesystem."""
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url, clock=FakeClock())
    deliver(store, "web-0")
    for archive in (f"file://archive-host{tmp_path}/archive", "file://tmp/x", "file:relative/x"):
        got = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "0h", "--archive", archive])
        assert got.exit_code == 2, (archive, got.output)
        assert "--archive" in got.stderr and "absolute path" in got.stderr and "Traceback" not in got.output
    assert not (tmp_path / "archive").exists() and not Path("/x/web").exists()
    assert store.get("web-0").delivered


def test_archived_generations_never_overwrite_one_another(
    tmp_path: Path, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build id archived twice (pruned, then used again) keeps both documents, in a folder and in
    S3; a document already at the name a record would take is never replaced (the record stays)."""
    import boto3

    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url, clock=FakeClock())
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url, aws_access_key_id="testing",
                      aws_secret_access_key="testing")  # fmt: skip
    s3.create_bucket(Bucket="generations")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    folder = tmp_path / "archive"

    def in_folder(name: str) -> bytes | None:
        return (folder / name).read_bytes() if (folder / name).exists() else None

    def in_s3(name: str) -> bytes | None:
        try:
            return bytes(s3.get_object(Bucket="generations", Key=f"kept/{name}")["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None

    def forge_in_folder(name: str) -> None:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(FORGED)

    archives = (
        ("web-f", f"file://{folder}", in_folder, forge_in_folder),
        ("web-s", f"s3://generations/kept?region=us-east-1&endpoint_url={moto_url}", in_s3,
         lambda name: s3.put_object(Bucket="generations", Key=f"kept/{name}", Body=FORGED)),
    )  # fmt: skip
    for build_id, archive, read, forge in archives:
        generations = []
        for _ in range(2):
            deliver(store, build_id, pipeline=build_id)
            generations.append(store.get(build_id))
            assert prune_json(url, "--pipeline", build_id, "--archive", archive)["removed"] == [build_id]
        names = [f"{build_id}/{build_id}/v{r.version}-{stamp(r.updated_at)}.json" for r in generations]
        assert names[0] != names[1]
        for name, rec in zip(names, generations, strict=True):
            assert json.loads(read(name) or b"{}").get("created_at") == rec.created_at, name

        deliver(store, build_id, pipeline=build_id)  # a third build under the id: its name is taken
        rec = store.get(build_id)
        name = f"{build_id}/{build_id}/v{rec.version}-{stamp(rec.updated_at)}.json"
        forge(name)
        args = ["store", "prune", "--older-than", "0h", "--pipeline", build_id, "--archive", archive]
        got = CliRunner().invoke(cli, ["--store", url, *args])
        assert got.exit_code == 3 and "not overwritten" in got.stderr and "Traceback" not in got.output, got.output
        assert read(name) == FORGED and store.get(build_id).version == rec.version  # both kept
    assert sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith("v")) == []


FORGED = b'{"not": "this record"}'


def test_prune_keeps_the_checkpoints_the_next_build_reuses_and_gc_finds_those_a_pruned_record_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#32 with ``reuse: {keep_checkpoints: true}``: n2, the newest delivered build that built, holds
    the checkpoint the next build starts from, so its record stays (said why) while n3, which found
    nothing changed and delivered n2's image again, does not move that role; n1's checkpoint was
    not deleted by n2's delivery (reuse was off then): n1's record goes, and gc then finds the
    checkpoint as a leak of a build unknown to the store, and n2's as held."""
    from airflow_provider_imagebuild.targets.local_leaks import mark_build_folder
    from tests.helpers import gc_minutes_later

    url, work, name = f"sqlite:///{tmp_path}/s.db", tmp_path / "work", "reuse-prune"
    store = open_store(url)
    plan = [0, 10, 95, 100]
    checkpoints = {}
    for build_id in ("n1", "n2"):
        mark_build_folder(work / build_id, name, build_id)
        checkpoints[build_id] = work / build_id / "checkpoint-010.tar"
        checkpoints[build_id].write_bytes(b"x" * 100)
        store.create_build(build_id, pipeline=name, cloud="local", image_type="base", plan=plan)
        run(store, build_id, 10, {"checkpoint_image": str(checkpoints[build_id])})
        run(store, build_id, 95, {"image_id": f"{build_id}.qcow2"})
        run(store, build_id, 100)
    store.create_build("n3", pipeline=name, cloud="local", image_type="base", plan=plan)
    lease = store.begin("n3", 10, owner="w")
    source = store.get("n2")
    taken = [(c, {}, "0" * 64, {"previous": ""}) for c in (10, 95)] + [
        (100, source.milestones[100].outputs, "0" * 64, {})
    ]
    store.reuse("n3", 10, token=lease.token, source="n2", taken=taken)

    done = prune_json(url)
    assert sorted(done["removed"]) == ["n1", "n3"]
    [kept] = done["kept_holding"]
    assert kept["build_id"] == "n2" and kept["holds"] == [
        {"kind": "checkpoint", "id": str(checkpoints["n2"]), "milestone": 10}
    ]
    assert kept["reason"].startswith("delivered, the newest to build, and still holds checkpoint image")
    assert [r.build_id for r in store.scan_builds()[0]] == ["n2"]
    text = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "0h"])
    assert (
        f"kept n2: delivered, the newest to build, and still holds checkpoint image {checkpoints['n2']}" in text.stdout
    )

    spec = tmp_path / "local.yaml"
    spec.write_text(f"""pipeline: {name}
cloud: local
image_type: base
store: {url}
target: {{work_dir: {work}, catalog: {tmp_path / "catalog"}}}
milestones:
  10: {{action: command, command: "true"}}
  95: {{action: seal}}
  100: {{action: publish}}
""")
    gc_minutes_later(monkeypatch, 60)
    got = CliRunner().invoke(
        cli, ["gc", "--cloud", "local", "--spec", str(spec), "--older-than", "30m", "--json", "--apply"]
    )
    assert got.exit_code == 0, got.output
    leaks = {row["id"]: row["reason"] for row in json.loads(got.stdout)["leaks"]}
    assert leaks == {str(checkpoints["n1"]): "unknown to the store"}
    assert not checkpoints["n1"].exists() and checkpoints["n2"].is_file()
