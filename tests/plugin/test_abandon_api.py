"""Abandon from the build page and the API (issue 31), authorized like a reset: a person with edit
and trigger rights on the pipeline's DAG gives the build up; what it holds is deleted through its
target (reached with the pipeline's spec in the deployment's specs folder), the record reads
``abandoned`` and the store refuses any later move. A reader sees no Abandon and may not post it."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import BuildStore
from tests.cli.test_lifecycle_cli import _holding_build
from tests.operators.test_notify import Sink, sink
from tests.plugin.test_pages import DAG, client_for, may, store

__all__ = ["may", "sink", "store"]


@pytest.fixture
def held(store: BuildStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sink: Sink) -> dict[str, Path]:
    """A failed local build holding real files, and the deployment's specs folder with its spec
    (whose notify posts to ``sink``)."""
    work = tmp_path / "work"
    foreign = work / "other" / "checkpoint-010.tar"
    files = _holding_build(store.url, work, "b-1", foreign)
    store.set_metadata("b-1", {"dag_id": DAG})
    specs = tmp_path / "pipelines"
    specs.mkdir()
    (specs / "p.yaml").write_text(
        f"pipeline: p\ndag_id: {DAG}\ncloud: local\nimage_type: base\n"
        f"target: {{work_dir: {work}, catalog: {tmp_path / 'cat'}}}\n"
        "notify: {on: [failed], to: [{webhook: {http_conn_id: builds_hook, endpoint: /hook}}]}\n"
    )
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(specs))
    hook = json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": sink.port})
    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", hook)
    return files


@pytest.mark.usefixtures("may")
def test_abandon_from_the_page_deletes_what_the_build_holds(
    held: dict[str, Path], store: BuildStore, sink: Sink
) -> None:
    admin, viewer = client_for("admin"), client_for("viewer")
    page = html.unescape(admin.get("/builds/b-1").text)
    assert 'id="abandon-form"' in page
    assert f"deletes build host {held['host']}" in page  # what it does, said before the person confirms
    assert 'id="abandon-form"' not in viewer.get("/builds/b-1").text
    assert viewer.post("/api/builds/b-1/abandon", json={"reason": "x"}).status_code == 403
    assert admin.post("/api/builds/b-1/abandon", json={"reason": ""}).status_code == 422
    assert admin.post("/api/builds/b-1/abandon", content="reason=x").status_code == 415
    assert all(path.exists() for path in held.values())  # nothing happened on a refused request
    answer = admin.post("/api/builds/b-1/abandon", json={"reason": "base image withdrawn"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["build_status"] == "abandoned"
    assert {d["kind"] for d in body["abandon"]["deleted"]} == {"host", "checkpoint", "image"}
    assert body["abandon"]["still_held"] == []
    assert not any(path.exists() for path in held.values())
    [(_, notice)] = sink.received  # told, as the watchdog's abandon is
    assert notice["event"] == "abandoned" and notice["error"].startswith(
        "abandoned by admin (ui): base image withdrawn"
    )
    assert body["abandon"]["notified"] == ["webhook"] and "/builds/b-1" in notice["build_page"]
    rec = store.get("b-1")
    assert rec.abandoned and next(e for e in rec.events if e.kind == "abandon").actor == "admin (ui)"
    assert admin.post("/api/builds/b-1/reset", json={"to": 15, "reason": "x"}).status_code == 409
    after = admin.get("/builds/b-1").text
    assert 'id="abandon-form"' not in after and 'id="reset-form"' not in after
    assert admin.get("/api/builds/b-1").json()["moves"]["abandon"] is None
