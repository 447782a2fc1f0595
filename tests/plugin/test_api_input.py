"""The plugin API's bodies, as a hostile or careless client sends them: a milestone code must be
an integer (not a boolean, not a string), a reason must be there. Refused with 422 before
anything reads the store. (Authentication and permissions are tested on the real API server in
tests/standalone/test_scheduler.py; here the caller is given.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from airflow_provider_imagebuild.plugin.access import current_user
from airflow_provider_imagebuild.plugin.api import create_app


@pytest.fixture
def client() -> TestClient:
    app = create_app()
    app.dependency_overrides[current_user] = lambda: object()
    return TestClient(app)


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("reset", {"to": True, "reason": "x"}),  # would be milestone 1
        ("reset", {"to": "45", "reason": "x"}),
        ("reset", {"to": 45.0, "reason": "x"}),
        ("reset", {"to": 45}),
        ("reset", {"to": 45, "reason": ""}),
        ("reset", {"to": 45, "reason": "x", "extra": 1}),
        ("redo", {"from": False, "reason": "x"}),
        ("redo", {"from": 101, "reason": "x"}),
        ("skip", {"state": True, "reason": "x"}),
        ("skip", {"state": 0, "reason": "x"}),
    ],
)
def test_bad_bodies_are_refused_before_the_store_is_read(client: TestClient, action: str, body: dict) -> None:
    answer = client.post(f"/api/builds/b-1/{action}", json=body)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("raw", ['{"to": 45, "reason": "x\\ud800"}', '{"to": 45, "reason": "x", "\\udcff": 1}'])
def test_a_lone_surrogate_in_a_body_is_422_not_500(client: TestClient, raw: str) -> None:
    """What a client sends is never echoed back: FastAPI's own 422 quoted it, and a lone surrogate
    cannot be encoded in an answer (it was a 500)."""
    answer = client.post("/api/builds/b-1/reset", content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"][0] == "body", answer.text


class Alice:
    def get_name(self) -> str:
        return "alice"


def test_a_reset_the_build_could_not_run_from_is_409_with_the_stores_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API asks nothing itself: the store's reset refuses (host released, checkpoints deleted)
    and the answer is 409 with its reason, nothing written."""
    from airflow_provider_imagebuild.plugin import access
    from airflow_provider_imagebuild.store import open_store
    from tests.targets.test_resume_after_delivery import delivered

    url = f"sqlite:///{tmp_path}/state.db"
    monkeypatch.setenv("IMAGEBUILD_STORE", url)
    monkeypatch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
    monkeypatch.setattr(access, "may", lambda user, dag_id, act: True)  # the caller is given (see above)
    access.store.cache_clear()
    try:
        store = open_store(url)
        store.init()
        delivered(store, "d-1")
        version = store.get("d-1").version
        app = create_app()
        app.dependency_overrides[current_user] = lambda: Alice()
        answer = TestClient(app).post("/api/builds/d-1/reset", json={"to": 90, "reason": "again"})
        assert answer.status_code == 409, answer.text
        assert "cannot run again from milestone 90" in answer.json()["detail"] and "Redo from 5" in answer.text
        assert store.get("d-1").version == version
    finally:
        access.store.cache_clear()
