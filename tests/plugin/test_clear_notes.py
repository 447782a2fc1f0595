"""The clear-note middleware inside Airflow's own API app (in process, real routes, real
authentication by the simple auth manager, real metadata DB): a pipeline run fails at a milestone
through ``dag.test()``, then the failed task is cleared with a note through
``POST /api/v2/dags/{dag_id}/clearTaskInstances``, as the UI's Clear dialog sends it.

What is checked is what a deployment does differently from the loopback defaults: Airflow served
under a base path (``[api] base_url = http://host:8080/airflow``), and a browser sending two
``_token`` cookies (one left at ``/`` by an older install), where the note must name the user
Airflow authenticated, not another one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from airflow_provider_imagebuild.plugin import access
from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.dags.conftest import ROOT, write

DAG_ID = "imagebuild_clear_note_demo"
TASK = "s005_kickstart"
PASSWORDS = {"admin": "admin-pw", "viewer": "viewer-pw"}


@pytest.fixture(scope="module")
def failed_run(airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A run of a two-milestone pipeline whose milestone 5 failed, recorded in Airflow's DB and in
    the build store; Airflow's users (admin acts, viewer reads) and the plugin's store set up."""
    from airflow.dag_processing.dagbag import DagBag

    tmp = tmp_path_factory.mktemp("clear-notes")
    store_url = f"sqlite:///{tmp}/state.db"
    write(
        tmp / "pipelines/clear.yaml",
        "\n".join(
            [
                "pipeline: clear-note-demo",
                "cloud: local",
                "image_type: base",
                "schedule: null",
                f"store: {store_url}",
                "defaults: {retries: 0}",
                "milestones:",
                "  5: {action: command, command: 'echo mirror down >&2; exit 3'}",
                "",
            ]
        ),
    )
    (tmp / "passwords.json").write_text(json.dumps(PASSWORDS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp / "pipelines"))
        patch.setenv("IMAGEBUILD_STORE", store_url)
        patch.delenv("IMAGEBUILD_STORE_CONN_ID", raising=False)
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp / "passwords.json"))
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert not bag.import_errors, bag.import_errors
        run = bag.dags[DAG_ID].test(run_conf={"build_id": "cn-1"})
        assert run.state == "failed"
        access.store.cache_clear()
        yield {"run_id": run.run_id, "store": open_store(store_url)}
        access.store.cache_clear()


def airflow_app(monkeypatch: pytest.MonkeyPatch, base_path: str = "") -> TestClient:
    """Airflow's API app as ``airflow api-server`` serves it, with ``[api] base_url`` ending in
    ``base_path`` (read by Airflow when its app module is imported, hence set on the module)."""
    import airflow.api_fastapi.app as airflow_app_module

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", f"http://127.0.0.1:8080{base_path}")
    monkeypatch.setattr(airflow_app_module, "API_BASE_URL", f"http://127.0.0.1:8080{base_path}/")
    monkeypatch.setattr(airflow_app_module, "API_ROOT_PATH", f"{base_path}/")
    monkeypatch.setattr(airflow_app_module._AuthManagerState, "instance", None)
    return TestClient(airflow_app_module.create_app())


def token_for(client: TestClient, user: str, base_path: str = "") -> str:
    answer = client.post(f"{base_path}/auth/token", json={"username": user, "password": PASSWORDS[user]})
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["access_token"])


def clear(client: TestClient, run_id: str, note: str, base_path: str = "", **headers: str) -> Any:
    answer = client.post(
        f"{base_path}/api/v2/dags/{DAG_ID}/clearTaskInstances",
        json={"dag_run_id": run_id, "task_ids": [TASK], "dry_run": False, "only_failed": False, "note": note},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    assert [ti["task_id"] for ti in answer.json()["task_instances"]] == [TASK]
    return answer


def clears(store: BuildStore) -> list[tuple[int | None, str, str]]:
    return [(e.state, e.detail, e.actor) for e in store.get("cn-1").events if e.kind == "clear"]


def test_a_clear_under_a_base_path_records_its_note(
    failed_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow under ``/airflow``: the clear's path is ``/airflow/api/v2/...``, its route
    ``/api/v2/...``; the middleware matches the route, as Airflow's router does."""
    client = airflow_app(monkeypatch, "/airflow")
    token = token_for(client, "admin", "/airflow")
    before = clears(failed_run["store"])
    clear(client, failed_run["run_id"], "mirror back (INC-9)", "/airflow", Authorization=f"Bearer {token}")
    assert clears(failed_run["store"]) == [*before, (5, "mirror back (INC-9)", "admin (ui)")]


def test_the_note_names_the_user_airflow_authenticated(
    failed_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ``_token`` cookies: Airflow reads the last (Starlette's cookie parsing), so the clear
    is the admin's, and so is the note, whatever the first cookie says."""
    client = airflow_app(monkeypatch)
    viewer, admin = token_for(client, "viewer"), token_for(client, "admin")
    before = clears(failed_run["store"])
    clear(client, failed_run["run_id"], "retry after the fix", Cookie=f"_token={viewer}; _token={admin}")
    assert clears(failed_run["store"]) == [*before, (5, "retry after the fix", "admin (ui)")]
    # a bearer token wins over the cookie in Airflow, and so in the note
    clear(client, failed_run["run_id"], "by bearer", Cookie=f"_token={viewer}", Authorization=f"Bearer {admin}")
    assert clears(failed_run["store"])[-1] == (5, "by bearer", "admin (ui)")
