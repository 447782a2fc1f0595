"""The build page shows the seal's bill of materials (package count, kernel, a link) and the API
serves the document, proven as ``imagebuild build sbom`` proves it; on the plugin's own app with a
real SQLite store, the caller given as in tests/plugin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_provider_imagebuild.plugin import access, api
from tests.sbom.test_published import _sealed

DAG = "imagebuild_nightly"


class User:
    def get_name(self) -> str:
        return "admin"


@pytest.fixture
def http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("IMAGEBUILD_STORE", f"sqlite:///{tmp_path}/state.db")
    monkeypatch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
    monkeypatch.setattr(access, "may", lambda user, dag_id, act: dag_id == DAG)
    access.store.cache_clear()
    app = api.create_app()
    app.dependency_overrides[access.current_user] = User
    yield TestClient(app, root_path="/imagebuild")
    access.store.cache_clear()


def test_the_build_page_shows_the_bill_of_materials_and_the_api_serves_it(http: TestClient, tmp_path: Path) -> None:
    store, target, build = _sealed(tmp_path, "night-1", sbom_kernel="6.1.176-1", sbom_format="CycloneDX 1.6")
    store.set_metadata("night-1", {"dag_id": DAG})
    page = http.get("/builds/night-1")
    assert page.status_code == 200
    shown = page.text[page.text.index('<p id="sbom">') :].split("</p>")[0]
    assert "9 packages, kernel 6.1.176-1 (CycloneDX 1.6, written by milestone 95)" in shown
    assert 'href="/imagebuild/api/builds/night-1/sbom"' in shown
    served = http.get("/api/builds/night-1/sbom")
    assert served.status_code == 200 and served.headers["content-type"] == "application/vnd.cyclonedx+json"
    assert served.text == target.sbom_file(build).read_text()

    target.sbom_file(build).write_text('{"bomFormat": "CycloneDX", "changed": true}')  # not what the seal wrote
    assert http.get("/api/builds/night-1/sbom").status_code == 409

    store.create_build("other-1", pipeline="other", cloud="local", image_type="base", plan=[0, 100])
    store.set_metadata("other-1", {"dag_id": "imagebuild_other"})  # a DAG this caller may not read
    assert http.get("/api/builds/other-1/sbom").status_code == 404
    empty = http.get("/api/builds/nope/sbom")
    assert empty.status_code == 404
