"""The Image builds pages and API read every store the deployment's specs name, not only the
deployment's own: a spec with its own ``store:`` has its builds listed (each saying which store it
lives in), found by its task's "Image build" link, and acted on in its own store. Real SQLite and
JSON stores, the specs folder the DAG file loads, the registration task run for real."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_imagebuild.dag_factory import build_dag
from airflow_provider_imagebuild.links import URL_PREFIX
from airflow_provider_imagebuild.operators.links import BuildPageLink
from airflow_provider_imagebuild.plugin import access, api
from airflow_provider_imagebuild.spec.pipeline import load_spec
from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.helpers import task_context
from tests.plugin.test_pages import User

SPEC = """pipeline: {name}
cloud: local
image_type: base
milestones:
  15: {{action: command, command: "true"}}
"""


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A deployment store (``$IMAGEBUILD_STORE``) and a specs folder: ``shared`` names no store,
    ``own`` names its own, ``same`` names the deployment's store by its URL spelt with three slashes
    (the same file: read once)."""
    shared_url = f"sqlite:///{tmp_path}/shared.db"
    own_url = f"sqlite:///{tmp_path}/own.db"
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "shared.yaml").write_text(SPEC.format(name="shared"))
    (folder / "own.yaml").write_text(SPEC.format(name="own") + f"store: {own_url}\n")
    (folder / "same.yaml").write_text(SPEC.format(name="same") + f"store: sqlite://{tmp_path}/shared.db\n")
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(folder))
    monkeypatch.setenv("IMAGEBUILD_STORE", shared_url)
    monkeypatch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
    monkeypatch.setattr(access, "may", lambda user, dag_id, act: True)
    access.store.cache_clear()
    yield {"folder": folder, "shared": open_store(shared_url), "own": open_store(own_url), "own_url": own_url}
    access.store.cache_clear()


def client() -> TestClient:
    app = api.create_app()
    app.dependency_overrides[access.current_user] = lambda: User("admin")
    return TestClient(app, root_path=URL_PREFIX)


def register(folder: Path, name: str, build_id: str) -> Any:
    """The pipeline's registration task, run as Airflow runs it (its execute), with a build id."""
    dag = build_dag(load_spec(folder / f"{name}.yaml"), folder)
    task: Any = dag.get_task("s000_initialize")
    task.execute(task_context(build_id, task.task_id))
    return task


def make(store: BuildStore, build_id: str, pipeline: str) -> None:
    store.create_build(build_id, pipeline=pipeline, cloud="local", image_type="base", plan=[0, 15, 100])


def test_the_api_lists_the_builds_of_every_store_and_says_where_each_lives(deployment: dict[str, Any]) -> None:
    make(deployment["shared"], "shared-1", "shared")
    make(deployment["own"], "own-1", "own")
    listed = client().get("/api/builds")
    assert listed.status_code == 200, listed.text
    page = listed.json()
    where = {b["build_id"]: b["store"] for b in page["builds"]}
    assert where == {"shared-1": deployment["shared"].url, "own-1": deployment["own_url"]}  # the shared store once
    assert page["total"] == 2 and page["unreadable_stores"] == []
    placed = {p.url: sorted(p.pipelines) for p in access.store().stores()}
    assert placed == {deployment["shared"].url: ["same", "shared"], deployment["own"].url: ["own"]}  # read once each
    shown = client().get("/api/builds/own-1")
    assert shown.status_code == 200 and shown.json()["store"] == deployment["own_url"]
    html = client().get("/builds").text
    assert f'<td class="store muted">{deployment["own_url"]}</td>' in html

    # An action changes the build in its own store.
    reset = client().post("/api/builds/own-1/reset", json={"to": 15, "reason": "again"})
    assert reset.status_code == 200, reset.text
    assert [e.kind for e in deployment["own"].get("own-1").events][-1] == "reset"


def test_a_tasks_image_build_link_finds_a_build_in_its_specs_own_store(deployment: dict[str, Any]) -> None:
    task = register(deployment["folder"], "own", "own-from-task")
    assert deployment["own"].find("own-from-task") is not None and deployment["shared"].find("own-from-task") is None
    link = BuildPageLink().get_link(task, ti_key=None)  # type: ignore[arg-type]  # the link reads the task only
    path = link[link.index(URL_PREFIX + "/builds/") + len(URL_PREFIX) :]
    page = client().get(path)
    assert page.status_code == 200, page.text
    assert "own-from-task" in page.text and "unknown build" not in page.text
    assert f'<dd class="store" id="store">{deployment["own_url"]}</dd>' in page.text


def test_a_store_that_cannot_be_read_is_named_and_the_others_are_listed(
    deployment: dict[str, Any], tmp_path: Path
) -> None:
    (deployment["folder"] / "files.yaml").write_text(SPEC.format(name="files") + f"store: file://{tmp_path}/none\n")
    make(deployment["own"], "own-1", "own")
    page = client().get("/api/builds").json()
    assert [b["build_id"] for b in page["builds"]] == ["own-1"]
    assert page["unreadable_stores"] == [f"file://{tmp_path}/none"]  # its folder does not exist
    html = client().get("/builds").text
    assert f"Not listed: the builds of file://{tmp_path}/none" in html
