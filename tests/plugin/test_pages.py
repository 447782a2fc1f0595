"""The Image builds pages and the clear-note middleware, on the plugin's own app (no server): what
a page shows for a build that failed, was cleared with a note and resumed; what a viewer sees;
that hostile text in a record is shown, not run; that actions take JSON only. Airflow's own
authentication and the UI's frame are exercised on the real API server and in a browser
(tests/standalone/test_scheduler.py, tests/standalone/test_browser.py); here the caller is given."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.plugin import access, api
from airflow_provider_imagebuild.plugin.clear_notes import ClearNotes, milestone_of, record_clear
from airflow_provider_imagebuild.store import BuildStore, open_store

DAG = "imagebuild_web_demo"
PLAN = [0, 5, 45, 95, 100]


class User:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_name(self) -> str:
        return self.name


def owner(task: str, attempt: int, run: str = "manual__2026-11-27T07:00:00+00:00") -> str:
    return f"{DAG}/{run}/{task}/try-{attempt}"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BuildStore]:
    url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("IMAGEBUILD_STORE", url)
    monkeypatch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
    access.store.cache_clear()
    yield open_store(url)
    access.store.cache_clear()


def failed_and_cleared(store: BuildStore, build_id: str = "web-1") -> None:
    """A build that failed at 45, was cleared with a note, and was delivered by the second try."""
    store.create_build(build_id, pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
    store.set_metadata(build_id, {"dag_id": DAG})
    for code, task in ((5, "s005_kickstart"),):
        lease = store.begin(build_id, code, owner=owner(task, 1))
        store.complete(build_id, code, token=lease.token, outputs={"image_id": f"/var/tmp/imagebuild/{build_id}/k.tar"})
    lease = store.begin(build_id, 45, owner=owner("s045_storage", 1))
    store.fail(build_id, 45, token=lease.token, error="nfs mount failed <script>alert(1)</script>")
    cleared = [
        {"dag_id": DAG, "dag_run_id": "manual__2026-11-27T07:00:00+00:00", "task_id": t}
        for t in ("s045_storage", "s095_seal", "s005_kickstart", "register")
    ]
    assert record_clear(store, cleared, "NFS server rebooted (INC-7)", "alice (ui)") == [(build_id, 45)]
    for code, task in ((45, "s045_storage"), (95, "s095_seal"), (100, "s100_publish")):
        attempt = 2 if code == 45 else 1
        lease = store.begin(build_id, code, owner=owner(task, attempt))
        store.complete(
            build_id,
            code,
            token=lease.token,
            outputs={"catalog_image": "/var/lib/imagebuild/catalog/x.qcow2"} if code == 100 else {},
        )


def client_for(user: str) -> TestClient:
    app = api.create_app()
    app.dependency_overrides[access.current_user] = lambda: User(user)
    client = TestClient(app, root_path="/imagebuild")
    return client


@pytest.fixture
def may(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Who may act: the auth manager's answer, per user name."""
    rights = {"admin": True, "viewer": False}

    def decide(user: Any, dag_id: str, act: bool) -> bool:
        return dag_id == DAG and (not act or rights[user.get_name()])

    monkeypatch.setattr(access, "may", decide)
    return rights


def test_the_build_page_shows_the_timeline_the_clear_and_links_to_airflow(store: BuildStore, may: dict) -> None:
    failed_and_cleared(store)
    page = client_for("admin").get("/builds/web-1")
    assert page.status_code == 200, page.text
    html = page.text
    row = re.search(r'<tr data-state="45".*?</tr>', html, re.S)
    assert row and "completed" in row.group(0) and re.search(r'<td class="num">2</td>', row.group(0))
    # both attempts of 45, each linked to its Airflow task log, the second with the clear's note
    assert f'href="/dags/{DAG}/runs/manual__2026-11-27T07%3A00%3A00%2B00%3A00/tasks/s045_storage?try_number=2"' in html
    assert "try_number=1" in html
    assert "NFS server rebooted (INC-7) (cleared by alice (ui))" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert 'id="reset-form"' in html and 'id="redo-form"' in html
    assert 'href="file:///var/lib/imagebuild/catalog/x.qcow2"' in html
    assert '<tr data-kind="clear">' in html


def test_a_viewer_gets_no_action_forms_and_the_api_refuses_them(store: BuildStore, may: dict) -> None:
    failed_and_cleared(store)
    viewer = client_for("viewer")
    html = viewer.get("/builds/web-1").text
    assert 'id="read-only"' in html and "reset-form" not in html and "redo-form" not in html
    version = store.get("web-1").version
    refused = viewer.post("/api/builds/web-1/reset", json={"to": 45, "reason": "x"})
    assert refused.status_code == 403 and store.get("web-1").version == version


def test_actions_take_json_only(store: BuildStore, may: dict) -> None:
    """A form on another site could post with the session cookie; it cannot send JSON."""
    failed_and_cleared(store)
    admin = client_for("admin")
    version = store.get("web-1").version
    for kind in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"):
        answer = admin.post(
            "/api/builds/web-1/reset", content=json.dumps({"to": 45, "reason": "x"}), headers={"Content-Type": kind}
        )
        assert answer.status_code == 415, (kind, answer.text)
    assert store.get("web-1").version == version
    assert admin.post("/api/builds/web-1/reset", json={"to": 45, "reason": "x"}).status_code == 200


def test_the_builds_list_filters_and_pages(store: BuildStore, may: dict) -> None:
    for i in range(55):
        store.create_build(f"many-{i:02d}", pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
        store.set_metadata(f"many-{i:02d}", {"dag_id": DAG})
    store.create_build("other-dag", pipeline="secret-demo", cloud="aws", image_type="base", plan=PLAN)
    failed_and_cleared(store, "web-1")
    admin = client_for("admin")
    first = admin.get("/builds").text
    assert first.count('<tr data-build="') == 50 and "56 builds" in first
    assert first.index('data-build="web-1"') < first.index('data-build="many-54"')  # newest change first
    assert "other-dag" not in first and "secret-demo" not in first  # a DAG the user may not read
    second = admin.get("/builds", params={"offset": 50}).text
    assert second.count('<tr data-build="') == 6 and "Newer" in second
    delivered = admin.get("/builds", params={"status": "delivered", "state": "100"}).text
    assert delivered.count('<tr data-build="') == 1 and "delivered" in delivered
    registered = admin.get("/builds", params={"status": "registered"}).text  # the build's status, as on the badge
    assert registered.count('<tr data-build="') == 50 and "55 builds" in registered
    assert '<span class="status registered"' in registered
    assert admin.get("/builds", params={"status": "bogus"}).status_code == 400
    assert admin.get("/builds", params={"status": "completed"}).status_code == 400  # a milestone's status
    assert admin.get("/builds/nope").status_code == 404


def test_the_middleware_records_the_note_of_a_real_clear_only(store: BuildStore) -> None:
    """Airflow's answer to the clear is passed through untouched; the dry run (the dialog's
    preview) and a refused clear record nothing."""
    store.create_build("mw-1", pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
    store.set_metadata("mw-1", {"dag_id": DAG})
    lease = store.begin("mw-1", 5, owner=owner("s005_kickstart", 1, run="r1"))
    store.fail("mw-1", 5, token=lease.token, error="x")
    answer = {"task_instances": [{"dag_id": DAG, "dag_run_id": "r1", "task_id": "s005_kickstart"}], "total_entries": 1}

    def airflow(status: int) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            body = json.dumps(answer).encode()
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": body})

        return app

    def clear(status: int, body: dict[str, Any], path: str = f"/api/v2/dags/{DAG}/clearTaskInstances") -> list[Any]:
        sent: list[Any] = []
        scope = {"type": "http", "method": "POST", "path": path, "headers": []}
        payload = json.dumps(body).encode()

        async def receive() -> Any:
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        asyncio.run(ClearNotes(airflow(status))(scope, receive, send))
        return sent

    assert clear(200, {"dry_run": True, "note": "preview"})[0]["status"] == 200
    assert clear(200, {"note": "no dry_run given: Airflow's default is a dry run"})
    assert clear(403, {"dry_run": False, "note": "refused"})[0]["status"] == 403
    assert clear(200, {"dry_run": False, "note": "elsewhere"}, path="/api/v2/dags/x/dagRuns")
    assert [e.kind for e in store.get("mw-1").events if e.kind == "clear"] == []
    sent = clear(200, {"dry_run": False, "note": "disk full on the builder, cleaned"})
    assert json.loads(sent[1]["body"]) == answer
    events = [e for e in store.get("mw-1").events if e.kind == "clear"]
    assert [(e.state, e.detail, e.actor) for e in events] == [
        (5, "disk full on the builder, cleaned", "unknown user (ui)")
    ]


def test_milestone_of_reads_pipeline_task_ids_only() -> None:
    assert milestone_of("s045_storage") == 45 and milestone_of("s100_publish") == 100
    assert milestone_of("register") is None and milestone_of("s999_x") is None and milestone_of("s45_x") is None


def test_readers_get_a_lease_id_never_the_lease_token(store: BuildStore, may: dict) -> None:
    """A DAG reader sees who holds a running build and a lease id, in the JSON and on the page; the
    token that completes, fails or heartbeats the milestone stays with its holder."""
    store.create_build("run-1", pipeline="web-demo", cloud="local", image_type="base", plan=PLAN)
    store.set_metadata("run-1", {"dag_id": DAG})
    lease = store.begin("run-1", 5, owner=owner("s005_kickstart", 1), lease_seconds=600)
    viewer = client_for("viewer")
    shown = viewer.get("/api/builds/run-1")
    assert shown.status_code == 200, shown.text
    for answer in (shown, viewer.get("/builds/run-1"), viewer.get("/api/builds"), viewer.get("/builds")):
        assert answer.status_code == 200 and lease.token not in answer.text, answer.url
    public = shown.json()
    assert "token" not in public["lease"] and public["lease"]["owner"] == owner("s005_kickstart", 1)
    assert public["attempts"][-1]["lease_id"] == public["lease"]["lease_id"] != lease.token
    with pytest.raises(Conflict, match="does not hold"):
        store.complete("run-1", 5, token=public["lease"]["lease_id"])
    # an action refused by the live lease names the holder and the lease id, as the rule says it
    refused = client_for("admin").post("/api/builds/run-1/skip", json={"state": 5, "reason": "x"})
    assert refused.status_code == 409 and public["lease"]["lease_id"] in refused.json()["detail"], refused.text
    assert lease.token[:8] not in refused.text


def test_an_unreadable_build_is_answered_as_an_unknown_one(store: BuildStore, may: dict, tmp_path: Path) -> None:
    """A user who may not read a build's DAG learns nothing from asking: the same 404 as for a build
    that does not exist, from the JSON API, the pages and the actions alike, never naming the DAG
    or where the store is. (A reader may still be told what acting on a build it can see needs.)"""
    store.create_build("hidden-1", pipeline="secret-demo", cloud="aws", image_type="base", plan=PLAN)
    client = client_for("admin")
    requests = [
        ("GET", "/api/builds/{}", None),
        ("GET", "/builds/{}", None),
        ("POST", "/api/builds/{}/reset", {"to": 5, "reason": "x"}),
        ("POST", "/api/builds/{}/skip", {"state": 5, "reason": "x"}),
        ("POST", "/api/builds/{}/redo", {"from": 5, "reason": "x"}),
    ]
    version = store.get("hidden-1").version
    for method, path, body in requests:
        hidden = client.request(method, path.format("hidden-1"), json=body)
        unknown = client.request(method, path.format("hidden-2"), json=body)
        assert (hidden.status_code, unknown.status_code) == (404, 404), (path, hidden.text, unknown.text)
        assert hidden.json() == {"detail": "build hidden-1 not found"}, path
        assert unknown.json() == {"detail": "build hidden-2 not found"}, path
        for answer in (hidden, unknown):
            assert str(tmp_path) not in answer.text and "sqlite" not in answer.text and "secret" not in answer.text
    assert store.get("hidden-1").version == version


def test_an_unusable_store_is_not_described_to_api_clients(
    store: BuildStore, may: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 503 says the store cannot be used now; where it is and why stays in the server's log."""
    (tmp_path / "gone.db").mkdir()  # a directory where the SQLite file should be
    monkeypatch.setenv("IMAGEBUILD_STORE", f"sqlite:///{tmp_path}/gone.db")
    access.store.cache_clear()
    client = client_for("admin")
    for method, path, body in [
        ("GET", "/api/builds", None),
        ("GET", "/api/builds/web-1", None),
        ("GET", "/builds", None),
        ("GET", "/builds/web-1", None),
        ("POST", "/api/builds/web-1/reset", {"to": 5, "reason": "x"}),
    ]:
        answer = client.request(method, path, json=body)
        assert answer.status_code == 503, (path, answer.text)
        assert str(tmp_path) not in answer.text and "gone.db" not in answer.text and "sqlite" not in answer.text.lower()


def test_a_stores_own_refusal_is_not_passed_to_clients() -> None:
    """A rule of the build (a live lease: test_readers_get_a_lease_id_never_the_lease_token) is told
    to the person acting; a store's own refusal (a sqlite+s3 mirror changed by another host names
    its bucket and file) is logged, and the client is told only that the store refused."""
    from fastapi import HTTPException

    def mirror_refuses() -> None:
        raise Conflict("the S3 mirror s3://state-bucket/builds.db was changed; move /var/lib/imagebuild/state.db away")

    with pytest.raises(HTTPException) as caught, access.store_errors("b-1"):
        mirror_refuses()
    assert caught.value.status_code == 409
    assert "s3://" not in caught.value.detail and "/var/lib" not in caught.value.detail


def test_the_build_page_and_the_list_show_what_the_build_cost(
    store: BuildStore, may: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 31: priced with the pipeline's spec's cost: block (the deployment's specs folder)."""
    specs = tmp_path / "pipelines"
    specs.mkdir()
    (specs / "web.yaml").write_text(
        "pipeline: web-demo\ncloud: aws\nimage_type: base\ncost: {host_per_hour: {t3.micro: 1.5}}\n"
    )
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(specs))
    store.create_build("cost-1", pipeline="web-demo", cloud="aws", image_type="base", plan=PLAN)
    store.set_metadata("cost-1", {"dag_id": DAG})
    lease = store.begin("cost-1", 5, owner=owner("s005_kickstart", 1))
    store.complete("cost-1", 5, token=lease.token, usage={"host_size": "t3.micro", "host_hours": 2})
    lease = store.begin("cost-1", 45, owner=owner("s045_storage", 1))
    store.fail("cost-1", 45, token=lease.token, error="boom", usage={"host_size": "t3.micro", "host_hours": 0.5})
    admin = client_for("admin")
    listed = admin.get("/builds").text
    row = re.search(r'<tr data-build="cost-1">.*?</tr>', listed, re.S)
    assert row and re.search(r'<td class="cost" title="spec prices">3\.75 USD</td>', row.group(0)), row
    page = admin.get("/builds/cost-1").text
    shown = re.search(r'<dd id="cost"[^>]*>(.*?)</dd>', page, re.S)
    assert shown and shown.group(1).startswith("3.75 USD") and "0.75 on failed attempts" in shown.group(1)
    assert "priced with spec prices" in page
    timeline = re.search(r'<tr data-state="45".*?</tr>', page, re.S)
    assert timeline and '<td class="cost"' in timeline.group(0) and ">0.7500 USD</td>" in timeline.group(0)
    api_rows = admin.get("/api/builds").json()["builds"]
    assert [r["cost"]["total"] for r in api_rows if r["build_id"] == "cost-1"] == [3.75]
