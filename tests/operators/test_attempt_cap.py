"""The attempt cap across runs through real Airflow (issue 31): a spec's ``max_attempts`` reaches
the build's record at registration, and once a milestone has used its attempts over several runs
(clears and re-triggers), the next run's task fails at once, without retries, naming the cap and
how to grant more; nothing of the milestone runs. A reset counts afresh.

Real: ``dag.test()`` on a SQLite metadata DB, the DAG factory's DAG from a spec file, a SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write


def test_a_milestone_past_its_max_attempts_fails_at_once_naming_the_cap(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    url = f"sqlite:///{tmp_path}/state.db"
    counter = tmp_path / "counter"
    write(
        tmp_path / "pipelines/capped.yaml",
        "\n".join(
            [
                "pipeline: capped",
                "cloud: local",
                "image_type: base",
                "schedule: null",
                f"store: {url}",
                "defaults: {retries: 0}",
                "milestones:",
                f"  45: {{action: command, command: 'echo x >> {counter}; exit 3', max_attempts: 2}}",
            ]
        )
        + "\n",
    )
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["imagebuild_capped"]
    for _ in range(2):  # two runs of the same build (what two clears of the failed task do)
        assert dag.test(run_conf={"build_id": "cap-1"}).state == "failed"
    store = open_store(url)
    assert store.get("cap-1").max_attempts == {45: 2}  # from the spec, at registration
    assert counter.read_text().count("x") == 2
    capsys.readouterr()
    third = dag.test(run_conf={"build_id": "cap-1"})
    assert third.state == "failed"
    said = capsys.readouterr()
    logged = said.out + said.err  # the task's log: Airflow's AirflowFailException (no retry)
    assert "AirflowFailException" in logged and "reached its attempt cap: 2 attempts of max_attempts 2" in logged
    assert "imagebuild build allow cap-1 45" in logged
    assert counter.read_text().count("x") == 2  # the capped milestone ran nothing
    rec = store.get("cap-1")
    assert len(rec.attempts_at(45)) == 2  # and wrote no attempt
    store.reset("cap-1", to=45, reason="fixed the mirror", actor="alice")
    assert dag.test(run_conf={"build_id": "cap-1"}).state == "failed"
    assert counter.read_text().count("x") == 3  # a reset counts afresh: the milestone ran again
