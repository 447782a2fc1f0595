"""The plugin API's bodies, as a hostile or careless client sends them: a milestone code must be
an integer (not a boolean, not a string), a reason must be there. Refused with 422 before
anything reads the store. (Authentication and permissions are tested on the real API server in
tests/operators/test_scheduler.py; here the caller is given.)"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from airflow_provider_imagebuild.plugin.api import create_app, current_user


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
