"""``imagebuild store prune``: old finished builds archived then removed, the newest per pipeline
and anything in progress kept, ``--dry-run`` changing nothing; real SQLite store and CLI, archives
in a folder and in S3 on moto."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.store import open_store
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
    kept = json.loads((tmp_path / "archive/web/web-0.json").read_text())
    assert kept["build_id"] == "web-0" and kept["delivered_at"]
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
    body = s3.get_object(Bucket="imagebuild-archive", Key="2026/web/web-2.json")["Body"].read()
    assert json.loads(body)["pipeline"] == "web"
    assert sorted(r.build_id for r in store.scan_builds()[0]) == ["db-0", "web-running"]

    bad = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "soon"])
    assert bad.exit_code == 2 and "must be a number of days or hours" in bad.output
    bad = CliRunner().invoke(cli, ["--store", url, "store", "prune", "--older-than", "1d", "--archive", "ftp://x"])
    assert bad.exit_code == 2 and "--archive" in bad.output
    assert len(store.scan_builds()[0]) == 2
