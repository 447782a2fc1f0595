"""Behaviour that belongs to one backend: what init creates, conditional writes, corruption, outages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from airflow_provider_imagebuild.errors import CorruptRecord, InvalidInput, NotFound, StoreUnavailable
from airflow_provider_imagebuild.store import BuildStore, open_store, parse_store_url
from airflow_provider_imagebuild.store.base import CasFailed
from airflow_provider_imagebuild.store.s3 import S3Store
from tests.conftest import unique
from tests.servers.process import free_port


def _create(store: BuildStore, build_id: str = "b-1") -> None:
    store.create_build(build_id, pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])


@pytest.mark.parametrize("endpoint_fixture", ["moto_url", "dynalite_url"])
def test_dynamodb_table_is_created_only_by_init(endpoint_fixture: str, request: pytest.FixtureRequest) -> None:
    endpoint = request.getfixturevalue(endpoint_fixture)
    table = unique("builds")
    store = open_store(f"dynamodb://{table}?region=us-east-1&endpoint_url={endpoint}")
    with pytest.raises(StoreUnavailable, match="imagebuild store init"):
        _create(store)
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.get("b-1")
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    assert table not in client.list_tables()["TableNames"]
    assert "created" in store.init()
    assert "ready" in store.init()
    desc = client.describe_table(TableName=table)["Table"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    _create(store)
    assert store.get("b-1").completed == [0]


def test_s3_bucket_is_created_only_by_init_and_conditional_writes_refuse(moto_url: str) -> None:
    bucket = unique("state")
    store = open_store(f"s3://{bucket}/pfx?region=us-east-1&endpoint_url={moto_url}")
    assert isinstance(store, S3Store)
    with pytest.raises(StoreUnavailable, match="imagebuild store init"):
        _create(store)
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    assert bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]
    store.init()
    _create(store)
    doc, etag = store._read("b-1")  # type: ignore[misc]
    # S3 itself refuses a stale If-Match and an If-None-Match on an existing key ...
    store._write("b-1", {**doc, "version": doc["version"] + 1}, etag)
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=bucket, Key="pfx/builds/b-1.json", Body=b"{}", IfMatch=etag)
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError):
        client.put_object(Bucket=bucket, Key="pfx/builds/b-1.json", Body=b"{}", IfNoneMatch="*")
    # ... and the store turns that into a re-read, never a blind overwrite.
    with pytest.raises(CasFailed):
        store._write("b-1", doc, etag)
    with pytest.raises(CasFailed):
        store._write("b-1", doc, None)
    assert store.get("b-1").version == doc["version"] + 1


def test_sqlite_mirror_restores_a_lost_local_file(tmp_path: Path, moto_url: str) -> None:
    url = f"sqlite+s3:///{tmp_path}/m.db?bucket={unique('mirror')}&prefix=team/a&endpoint_url={moto_url}"
    store = open_store(url)
    store.init()
    _create(store)
    lease = store.begin("b-1", 5, owner="w")
    store.complete("b-1", 5, token=lease.token, outputs={"ami": "ami-9"})
    store.close()
    (tmp_path / "m.db").unlink()
    for leftover in tmp_path.glob("m.db-*"):
        leftover.unlink()
    restored = open_store(url)
    rec = restored.get("b-1")
    assert rec.completed == [0, 5] and rec.milestones[5].outputs == {"ami": "ami-9"}
    assert (tmp_path / "m.db").exists()


def test_local_stores_are_not_created_by_reads(tmp_path: Path) -> None:
    """A read creates nothing. Listing a JSON store whose folder does not exist is an error naming
    the folder (a mistyped file:// URL would otherwise read as "0 builds"); a SQLite file not made
    yet reads as empty (a fresh install's default store)."""
    for url, path in ((f"sqlite:///{tmp_path}/a/s.db", tmp_path / "a"), (f"file://{tmp_path}/j", tmp_path / "j")):
        store = open_store(url)
        with pytest.raises(NotFound):
            store.get("b-1")
        if url.startswith("file:"):
            with pytest.raises(StoreUnavailable, match=f"the folder {path} does not exist"):
                store.list_builds()
        else:
            assert store.list_builds() == []
        assert not path.exists()
        _create(store)  # the first write prepares it
        assert store.get("b-1").completed == [0]


def test_a_sqlite_database_of_another_application_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    """A spec or ``--store`` naming Airflow's own ``airflow.db``: reads (the UI, the API, report,
    build list, gc) and writes are refused in one line naming the path, and the file is not touched
    (reads created the store's table in it, with WAL mode). A database without any table reads as
    no builds, and stays as it was too."""
    import sqlite3

    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    airflow_db = tmp_path / "airflow.db"
    with sqlite3.connect(airflow_db) as conn:
        conn.execute("CREATE TABLE dag (dag_id TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO dag VALUES ('nightly')")
    conn.close()
    empty_db = tmp_path / "empty.db"
    with sqlite3.connect(empty_db) as conn:
        conn.execute("PRAGMA user_version = 7")  # a database file with a header and no table
    conn.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    store = open_store(f"sqlite:///{airflow_db}")
    for read in (lambda: store.find("b-1"), store.list_builds, lambda: _create(store)):
        with pytest.raises(
            StoreUnavailable, match=f"{airflow_db} is not an imagebuild state store.*other tables \\(dag\\)"
        ):
            read()
    got = CliRunner().invoke(cli, ["--store", f"sqlite:///{airflow_db}", "report", "--json"])
    assert got.exit_code == 5 and got.output.count("\n") == 1 and str(airflow_db) in got.output, got.output
    empty = open_store(f"sqlite:///{empty_db}")
    assert empty.list_builds() == [] and empty.find("b-1") is None
    store.close()
    empty.close()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_corrupt_json_record_is_reported_and_never_overwritten(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/j")
    _create(store)
    path = tmp_path / "j/builds/b-1.json"
    path.write_text('{"build_id": "b-1", "plan": [0, 5')
    before = path.read_bytes()
    with pytest.raises(CorruptRecord, match="not valid JSON"):
        store.get("b-1")
    with pytest.raises(CorruptRecord):
        store.begin("b-1", 5, owner="w")
    with pytest.raises(CorruptRecord):
        _create(store)
    assert path.read_bytes() == before
    path.write_text(json.dumps({"build_id": "b-1"}))
    with pytest.raises(CorruptRecord, match="malformed"):
        store.get("b-1")


def test_corrupt_sqlite_row_is_reported(tmp_path: Path) -> None:
    import sqlite3

    store = open_store(f"sqlite:///{tmp_path}/s.db")
    _create(store)
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute("UPDATE builds SET doc = 'nope' WHERE build_id = 'b-1'")
    with pytest.raises(CorruptRecord):
        store.begin("b-1", 5, owner="w")
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT doc FROM builds").fetchone()[0] == "nope"


@pytest.mark.parametrize("scheme", ["dynamodb", "s3"])
def test_unreachable_endpoint_is_store_unavailable(scheme: str) -> None:
    port = free_port()  # nothing listens there
    target = "builds" if scheme == "dynamodb" else "bucket-x/p"
    store = open_store(f"{scheme}://{target}?region=us-east-1&endpoint_url=http://127.0.0.1:{port}")
    with pytest.raises(StoreUnavailable, match="store unreachable"):
        store.get("b-1")


def test_unreachable_blob_endpoint_is_store_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real azure-storage-blob, nothing listening: a bounded wait, then the store's transient error."""
    from tests.conftest import AZURITE_ACCOUNT, AZURITE_KEY

    endpoint = f"http://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}"
    monkeypatch.setenv(
        "AZURE_STORAGE_CONNECTION_STRING",
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};",
    )
    store = open_store(f"azblob://builds/p?account={AZURITE_ACCOUNT}")
    with pytest.raises(StoreUnavailable, match="store unreachable"):
        store.get("b-1")


def test_unreachable_gcs_endpoint_is_store_unavailable() -> None:
    """Real google-cloud-storage with anonymous credentials (an emulator URL), nothing listening."""
    store = open_store(f"gs://builds-x/p?endpoint_url=http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailable, match="store unreachable"):
        store.get("b-1")


def test_gcs_credentials_never_go_in_clear_to_a_remote_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Google credentials configured, an http endpoint that is not this machine is refused
    before anything is sent (anonymous emulator access, with no token to leak, stays allowed)."""
    key = tmp_path / "key.json"
    key.write_text("{}")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    store = open_store("gs://builds-x/p?endpoint_url=http://storage.example.com")
    with pytest.raises(InvalidInput, match="must be https") as info:
        store.get("b-1")
    assert info.value.field == "store.endpoint_url"


def test_gcs_store_before_init_says_so(fake_gcs_url: str) -> None:
    store = open_store(f"gs://{unique('noinit')}/p?endpoint_url={fake_gcs_url}")
    with pytest.raises(StoreUnavailable, match="store init"):
        store.get("b-1")
    with pytest.raises(StoreUnavailable, match="store init"):
        store.list_builds()


def test_blob_store_before_init_says_so(azurite_url: str) -> None:
    from tests.conftest import AZURITE_ACCOUNT

    store = open_store(f"azblob://{unique('noinit')}/p?account={AZURITE_ACCOUNT}")
    with pytest.raises(StoreUnavailable, match="store init"):
        store.get("b-1")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("mysql://x/y", "store"),
        ("sqlite://relative.db", "store"),
        ("sqlite:///", "store"),
        ("dynamodb://ab", "store.table"),
        ("dynamodb://table?region=mars", "store.region"),
        ("dynamodb://table?foo=1", "store"),
        ("s3://Bad_Bucket/x", "store.bucket"),
        ("s3://bucket/../x", "store.prefix"),
        ("s3://bucket/x?endpoint_url=ftp://h", "store.endpoint_url"),
        ("sqlite+s3:////tmp/x.db", "store.bucket"),
        ("sqlite:////tmp/x.db?synchronous=off", "store.synchronous"),
        ("gs://AB/p", "store.bucket"),
        ("gs://goog-bucket/p", "store.bucket"),
        ("gs://bucket/p?project=X", "store.project"),
        ("gs://bucket/p?region=us-east-1", "store"),
        ("gs://bucket/../p", "store.prefix"),
        ("azblob://ab?account=devstore", "store.container"),
        ("azblob://a--b?account=devstore", "store.container"),
        ("azblob://Builds/p?account=devstore", "store.container"),
        ("azblob://builds/p", "store.account"),
        ("azblob://builds/p?account=Dev_Store", "store.account"),
        ("azblob://builds/p?account=dev&region=us-east-1", "store"),
        ("azblob://builds/../p?account=devstore", "store.prefix"),
        ("azblob://builds/p?account=devstore&endpoint_url=http://k:s@127.0.0.1:1", "store.endpoint_url"),
        ("", "store"),
        ("no-scheme", "store"),
    ],
)
def test_bad_store_urls(url: str, field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_store_url(url)
    assert info.value.field == field


def test_store_url_forms() -> None:
    assert parse_store_url("sqlite:////var/lib/x.db").path == "/var/lib/x.db"
    assert parse_store_url("sqlite:///var/lib/x.db").path == "/var/lib/x.db"
    s3 = parse_store_url("s3://my-bucket/a/b?region=eu-west-1&endpoint_url=http://127.0.0.1:9")
    assert (s3.bucket, s3.prefix, s3.region, s3.endpoint_url) == ("my-bucket", "a/b", "eu-west-1", "http://127.0.0.1:9")
    mirror = parse_store_url("sqlite+s3:////tmp/x.db?bucket=bk1&prefix=p&synchronous=full")
    assert (mirror.path, mirror.bucket, mirror.prefix, mirror.synchronous) == ("/tmp/x.db", "bk1", "p", "full")


def test_sqlite_full_synchronous_is_honoured(tmp_path: Path, make_store: Callable[..., BuildStore]) -> None:
    store = open_store(f"sqlite:///{tmp_path}/f.db?synchronous=full")
    _create(store)
    conn = store._connect()  # type: ignore[attr-defined]
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
