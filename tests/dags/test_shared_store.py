"""A pipeline that would record its builds in each worker's own SQLite file is refused when it is
parsed under a distributed executor, with the ways to name a shared store; naming one (the spec,
a connection, the environment) makes it load. Parsed by Airflow's own DagBag, the executor set as
a deployment sets it (``AIRFLOW__CORE__EXECUTOR``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_imagebuild.dag_factory import build_dag
from airflow_provider_imagebuild.hooks.store_choice import distributed_executor
from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec
from tests.dags.conftest import ROOT, write
from tests.dags.test_factory import BASE, GOOD

NO_STORE_VARS = ("IMAGEBUILD_STORE", "IMAGEBUILD_STORE_CONN_ID", "AIRFLOW_CONN_IMAGEBUILD_DEFAULT")


def test_a_worker_local_store_is_refused_at_parse_time_under_celery(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "pipelines"
    write(folder / "check.sh", "#!/bin/sh\n")
    write(folder / "a.yaml", GOOD.format(name="alpha"))  # names no store
    write(folder / "b.yaml", GOOD.format(name="beta") + f"store: sqlite:///{tmp_path}/shared/state.db\n")
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(folder))
    for name in NO_STORE_VARS:
        monkeypatch.delenv(name, raising=False)

    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert set(bag.dags) == {"imagebuild_beta"}  # the spec naming its store still loads
    (error,) = bag.import_errors.values()
    assert f"{folder / 'a.yaml'}: store: no shared store: with the CeleryExecutor" in error, error
    for way in ("store:", "store_conn_id:", "imagebuild_default connection", "$IMAGEBUILD_STORE_CONN_ID"):
        assert way in error, (way, error)

    # A shared store named by the deployment: the imagebuild_default connection, found as a task would.
    shared = {"conn_type": "imagebuild_state", "extra": {"store_url": f"sqlite:///{tmp_path}/shared/state.db"}}
    monkeypatch.setenv("AIRFLOW_CONN_IMAGEBUILD_DEFAULT", json.dumps(shared))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert set(bag.dags) == {"imagebuild_alpha", "imagebuild_beta"} and not bag.import_errors

    # One machine: its own file is the shared store.
    monkeypatch.delenv("AIRFLOW_CONN_IMAGEBUILD_DEFAULT")
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert set(bag.dags) == {"imagebuild_alpha", "imagebuild_beta"} and not bag.import_errors


@pytest.mark.parametrize(
    ("setting", "distributed"),
    [
        ("LocalExecutor", None),
        ("airflow.providers.cncf.kubernetes.executors.kubernetes_executor.KubernetesExecutor", "KubernetesExecutor"),
        ("LocalExecutor,CeleryExecutor", "CeleryExecutor"),
        ("fast:my_company.executors.CeleryExecutor", "CeleryExecutor"),
    ],
)
def test_executors_that_run_tasks_elsewhere(
    setting: str, distributed: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in NO_STORE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", setting)
    assert distributed_executor() == distributed
    spec = parse_spec({**BASE, "milestones": {15: {"action": "command", "command": "true"}}})
    if distributed is None:
        build_dag(spec)
        return
    with pytest.raises(SpecError, match=f"store: no shared store: with the {distributed}"):
        build_dag(spec)
    monkeypatch.setenv("IMAGEBUILD_STORE_CONN_ID", "state")  # the deployment names one: accepted
    build_dag(spec)
