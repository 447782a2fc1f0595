"""Every task of a generated DAG carries the spec's Airflow settings: ``default_args`` through the
DAG (or the TaskGroup), a milestone's own ``pool``/``queue``/``priority_weight``/``pool_slots`` and
retry settings on its operator, winning over default_args; ``access_control`` on the DAG. Checked
on the DAG the DAG file makes and as the scheduler reads it back (serialized)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG

from airflow_provider_imagebuild.dag_factory import build_task_group, load_pipelines
from airflow_provider_imagebuild.spec.pipeline import load_spec
from tests.dags.conftest import write

SPEC = """\
pipeline: settings-demo
cloud: local
image_type: base
schedule: null
default_args:
  owner: platform
  email: [images@example.org]
  email_on_failure: true
  retries: 3
  retry_delay: 2m
  queue: builds
  pool: image_builds
  priority_weight: 2
access_control:
  ImageOps: [can_read, can_edit]
  Auditors: {DAGs: [can_read], DAG Runs: [can_read]}
milestones:
  15: {action: noop, retries: 1, queue: heavy, pool: disk_io, pool_slots: 2, priority_weight: 9}
  20: {action: noop}
"""


def _placement(task: object) -> tuple[object, ...]:
    return tuple(getattr(task, name) for name in ("owner", "retries", "retry_delay", "queue", "pool", "pool_slots"))


def test_every_task_carries_default_args_and_a_milestone_its_own_settings(tmp_path: Path) -> None:
    write(tmp_path / "settings.yaml", SPEC)
    dag = load_pipelines(tmp_path, strict=True)["imagebuild_settings_demo"]
    tasks = dag.task_dict
    assert set(tasks) == {"s000_initialize", "s015_base_config", "s020_cloud_setup", "s100_delivered"}
    two_minutes = timedelta(minutes=2)
    for task_id in ("s000_initialize", "s020_cloud_setup", "s100_delivered"):
        assert _placement(tasks[task_id]) == ("platform", 3, two_minutes, "builds", "image_builds", 1), task_id
        assert tasks[task_id].priority_weight == 2
        assert tasks[task_id].email == ["images@example.org"] and tasks[task_id].email_on_failure is True
    assert _placement(tasks["s015_base_config"]) == ("platform", 1, two_minutes, "heavy", "disk_io", 2)
    assert tasks["s015_base_config"].priority_weight == 9
    assert dag.access_control == {
        "ImageOps": {"DAGs": {"can_read", "can_edit"}},
        "Auditors": {"DAGs": {"can_read"}, "DAG Runs": {"can_read"}},
    }

    from airflow.serialization.serialized_objects import DagSerialization

    scheduled = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert _placement(scheduled.task_dict["s015_base_config"]) == ("platform", 1, two_minutes, "heavy", "disk_io", 2)
    assert _placement(scheduled.task_dict["s020_cloud_setup"]) == (
        "platform",
        3,
        two_minutes,
        "builds",
        "image_builds",
        1,
    )


def test_a_task_group_carries_the_default_args_inside_another_dag(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path / "settings.yaml", SPEC))
    with DAG("outer", schedule=None, default_args={"owner": "outer-team", "retries": 7}) as outer:
        build_task_group(spec)
    tasks = outer.task_dict
    assert _placement(tasks["s020_cloud_setup"])[:2] == ("platform", 3)  # the spec's, not the outer DAG's
    assert tasks["s015_base_config"].queue == "heavy"
