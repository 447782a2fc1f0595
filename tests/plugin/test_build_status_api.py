"""The API's build list and detail carry ``build_status`` and filter on it (the UI's badge and filter
read it), on the plugin's own app with a real SQLite store; the caller is given, as in test_pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_imagebuild.plugin import access, api
from airflow_provider_imagebuild.store import BuildStore, open_store

DAG = "imagebuild_web_demo"
PLAN = [0, 5, 100]


class User:
    def get_name(self) -> str:
        return "admin"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, BuildStore]]:
    url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("IMAGEBUILD_STORE", url)
    monkeypatch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
    monkeypatch.setattr(access, "may", lambda user, dag_id, act: dag_id == DAG)
    access.store.cache_clear()
    app = api.create_app()
    app.dependency_overrides[access.current_user] = User
    yield TestClient(app, root_path="/imagebuild"), open_store(url)
    access.store.cache_clear()


def test_the_api_answers_and_filters_with_the_build_status(client: tuple[TestClient, BuildStore]) -> None:
    http, store = client
    for build_id in ("reg-1", "run-1", "done-1"):
        store.create_build(build_id, pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
        store.set_metadata(build_id, {"dag_id": DAG})
    store.begin("run-1", 5, owner="w/1")
    for code in (5, 100):
        store.complete("done-1", code, token=store.begin("done-1", code, owner="w/1").token)

    listed: dict[str, Any] = http.get("/api/builds").json()
    assert {b["build_id"]: b["build_status"] for b in listed["builds"]} == {
        "reg-1": "registered",
        "run-1": "running",
        "done-1": "delivered",
    }
    assert http.get("/api/builds/reg-1").json()["build_status"] == "registered"
    only = http.get("/api/builds", params={"build_status": "delivered"}).json()
    assert [b["build_id"] for b in only["builds"]] == ["done-1"] and only["total"] == 1
    refused = http.get("/api/builds", params={"build_status": "completed"})
    assert refused.status_code == 400 and "registered, running, waiting" in refused.text


def test_a_record_with_a_crafted_usage_does_not_take_the_list_down(client: tuple[TestClient, BuildStore]) -> None:
    """A usage that is a list, or of ``1e308`` hours (anyone who can write the store can put one
    there), is refused when the record is read: the list answers with the other builds (it was a 500)."""
    import json
    import sqlite3

    http, store = client
    crafted = {"list-1": ["host_hours", 1], "huge-1": {"host_size": "t3.micro", "host_hours": 1e308}}
    for build_id in ("fine-1", *crafted):
        store.create_build(build_id, pipeline="web-demo", cloud="aws", image_type="base", plan=PLAN)
        store.set_metadata(build_id, {"dag_id": DAG})
        lease = store.begin(build_id, 5, owner="w/1")
        store.fail(build_id, 5, token=lease.token, error="x", usage={"host_size": "t3.micro", "host_hours": 1})
    with sqlite3.connect(str(store.url).removeprefix("sqlite:///")) as conn:
        for build_id, usage in crafted.items():
            [(text,)] = conn.execute("SELECT doc FROM builds WHERE build_id = ?", (build_id,))
            doc = json.loads(text)
            doc["attempts"][-1]["usage"] = usage
            conn.execute("UPDATE builds SET doc = ? WHERE build_id = ?", (json.dumps(doc), build_id))
    listed = http.get("/api/builds")
    assert listed.status_code == 200, listed.text
    assert [b["build_id"] for b in listed.json()["builds"]] == ["fine-1"]
    assert http.get("/api/builds/fine-1").status_code == 200
