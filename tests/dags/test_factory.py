"""Specs to DAGs without running them: structure, validation errors, and a folder with a bad spec."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from airflow_provider_imagebuild.build.catalog import STANDARD_PLAN
from airflow_provider_imagebuild.dag_factory import build_dag, build_task_group, load_pipelines
from airflow_provider_imagebuild.plan import plan_from_spec
from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, parse_spec
from tests.dags.conftest import write

BASE = {"pipeline": "rhel8-webserver", "cloud": "aws", "image_type": "webserver", "os": "rhel-8.10"}
GOOD = """
pipeline: {name}
cloud: aws
image_type: webserver
schedule: "0 2 * * *"
defaults: {{retries: 2, retry_delay: 60, retry_exponential_backoff: true, max_retry_delay: 1800}}
milestones:
  15: {{action: command, command: "echo hi"}}
  42: {{action: command, key: license_check, title: License check, command: ["./check.sh"], retries: 5}}
  70: {{action: command, command: "true", retries: 1, execution_timeout: 900}}
"""


def test_plan_is_zero_listed_codes_and_hundred() -> None:
    spec = parse_spec(
        {
            **BASE,
            "milestones": {
                15: {"action": "command", "command": "true"},
                42: {"action": "command", "key": "lic", "command": "true"},
            },
        }
    )
    plan = plan_from_spec(spec)
    assert plan.codes == [0, 15, 42, 100]
    assert [s.task_id for s in plan.steps] == ["s000_initialize", "s015_base_config", "s042_lic", "s100_delivered"]
    assert plan_from_spec(parse_spec({**BASE, "include_standard": True})).codes == list(STANDARD_PLAN)


def test_dag_structure(tmp_path: Path) -> None:
    write(tmp_path / "check.sh", "#!/bin/sh\n")
    spec = parse_spec(__import__("yaml").safe_load(GOOD.format(name="rhel8-webserver")), "x.yaml", tmp_path)
    dag = build_dag(spec, tmp_path)
    assert dag.dag_id == "imagebuild_rhel8_webserver"
    ids = [t.task_id for t in dag.topological_sort()]
    assert ids == [
        "s000_initialize",
        "s015_base_config",
        "s042_license_check",
        "s070_integration_tests",
        "s100_delivered",
    ]
    for up, down in pairwise(ids):
        assert dag.get_task(down).upstream_task_ids == {up}
    assert dag.max_active_runs == 1 and dag.catchup is False
    several = parse_spec({**BASE, "max_active_runs": 4})
    assert build_dag(several).max_active_runs == 4
    assert {"aws", "webserver", "imagebuild"} <= set(dag.tags)
    assert "| 42 | `s042_license_check` | License check |" in (dag.doc_md or "")
    lic, tests = dag.get_task("s042_license_check"), dag.get_task("s070_integration_tests")
    assert (lic.retries, lic.retry_delay.total_seconds(), lic.max_retry_delay.total_seconds()) == (5, 60, 1800)
    assert lic.retry_exponential_backoff
    assert (tests.retries, tests.execution_timeout.total_seconds()) == (1, 900)
    assert dag.task_group.get_child_by_label("configure") is not None


def test_task_group_inside_another_dag() -> None:
    from airflow.sdk import DAG

    spec = parse_spec({**BASE, "milestones": {15: {"action": "command", "command": "true"}}})
    with DAG("composed", schedule=None) as dag:
        group = build_task_group(spec, "web")
    assert group.group_id == "web"
    assert {t.task_id for t in dag.tasks} == {"s000_initialize", "s015_base_config", "s100_delivered"}


@pytest.mark.parametrize(
    ("yaml_text", "where", "reason"),
    [
        ("pipeline: p\ncloud: aws\nimage_type: t\nbogus: 1\n", "bogus", "unknown key"),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\nmilestones:\n  45: {action: pakcer}\n",
            "milestones.45.action",
            "Input should be",
        ),
        ("pipeline: p\ncloud: aws\nimage_type: t\nmilestones:\n  7.5: {action: noop}\n", "milestones.7.5", "integer"),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\nmilestones:\n  105: {action: noop}\n",
            "milestones.105",
            "between 0 and 100",
        ),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\nmilestones:\n  42: {action: noop}\n",
            "milestones.42",
            "needs a 'key'",
        ),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\nmilestones:\n  15: {action: command, command: [./missing.sh]}\n",
            "milestones.15.command[0]",
            "not found",
        ),
        ("pipeline: p\ncloud: aws\nimage_type: t\nschedule: every night\n", "schedule", "cron"),
        ("pipeline: p\ncloud: aws\nimage_type: t\ndefaults: {retries: many}\n", "defaults.retries", "integer"),
        ("pipeline: p\ncloud: mars\nimage_type: t\n", "cloud", "Input should be"),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\nmilestones:\n  5: {action: packer, template: a.pkr.hcl}\n",
            "milestones.5.template",
            "file a.pkr.hcl not found",
        ),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\nmilestones:\n  15: {action: ansible}\n",
            "milestones.15",
            "needs 'playbook'",
        ),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\nmilestones:\n  15: {action: ansible, playbook: gone.yml}\n",
            "milestones.15.playbook",
            "file gone.yml not found",
        ),
        (
            "pipeline: p\ncloud: openstack\nimage_type: t\nmilestones:\n  5: {action: bootstrap}\n",
            "milestones.5",
            "not available for cloud 'openstack'",
        ),
        (
            "pipeline: p\ncloud: azure\nimage_type: t\ntarget: {location: West Europe}\n",
            "target.location",
            "is not an Azure location name (like westeurope",
        ),
        (
            "pipeline: p\ncloud: azure\nimage_type: t\ntarget: {source_image: 'RedHat:RHEL:8'}\n",
            "target.source_image",
            "neither a marketplace URN (Publisher:Offer:Sku:Version",
        ),
        (
            "pipeline: p\ncloud: azure\nimage_type: t\n"
            "target: {resource_group: rg, location: westeurope}\nmilestones:\n  100: {action: publish}\n",
            "target.gallery",
            "is required by this pipeline's ['publish'] milestones",
        ),
        (
            "pipeline: p\ncloud: gcp\nimage_type: t\ntarget: {zone: europe-west1}\n",
            "target.zone",
            "is not a zone name (like europe-west1-b)",
        ),
        (
            "pipeline: p\ncloud: gcp\nimage_type: t\ntarget: {share_with: [alice@example.com]}\n",
            "target.share_with",
            "is not an IAM member",
        ),
        (
            "pipeline: p\ncloud: gcp\nimage_type: t\ntarget: {zone: europe-west1-b}\n"
            "milestones:\n  95: {action: seal}\n",
            "target.image_family",
            "is required by this pipeline's ['seal'] milestones",
        ),
        (
            "pipeline: p\ncloud: gcp\nimage_type: t\ntarget: {deprecate_previous: {state: GONE}}\n",
            "target.deprecate_previous.state",
            "Input should be",
        ),
        (
            "pipeline: p\ncloud: gcp\nimage_type: t\ntarget: {labels: {Team: web}}\n",
            "target.labels",
            "lowercase",
        ),
        (
            "pipeline: p\ncloud: azure\nimage_type: t\ntarget: {tags: {buildid: someone-else}}\n",
            "target.tags",
            "is set by the build itself",
        ),
        (
            "pipeline: p\ncloud: azure\nimage_type: t\ntarget: {instance_type: t3.micro}\n",
            "target.instance_type",
            "unknown key",
        ),
        (
            "pipeline: p\ncloud: azure\nimage_type: t\ntarget: {replication_regions: [westeurope, westeurope]}\n",
            "target.replication_regions",
            "lists a region twice",
        ),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\ntarget: {publish_regions: [us-east-1, moon]}\n",
            "target.publish_regions",
            "'moon' is not a region name",
        ),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\ntarget: {share_accounts: ['12']}\n",
            "target.share_accounts",
            "12-digit",
        ),
        (
            "pipeline: p\ncloud: aws\nimage_type: t\ncheckpoints: [45]\n",
            "checkpoints",
            "45 is not a packer, bootstrap or ansible milestone",
        ),
        ("pipeline: p\ncloud: aws\nimage_type: t\nstore: ftp://x\n", "store", "unknown store scheme"),
        ("pipeline: p\ncloud: aws\nimage_type: t\nmax_active_runs: 0\n", "max_active_runs", "greater than or equal"),
        ("pipeline: [p\n", "line", "not valid YAML"),
        ("- just a list\n", "", "must be a YAML mapping"),
    ],
)
def test_bad_specs_name_file_key_and_reason(tmp_path: Path, yaml_text: str, where: str, reason: str) -> None:
    path = write(tmp_path / "bad.yaml", yaml_text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message and where in message and reason in message, message


def test_folder_with_one_bad_spec_still_loads_the_good_ones(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "pipelines"
    write(folder / "check.sh", "#!/bin/sh\n")
    write(folder / "a.yaml", GOOD.format(name="alpha"))
    write(folder / "b.yml", GOOD.format(name="beta"))
    write(folder / "broken.yaml", "pipeline: gamma\ncloud: aws\nimage_type: t\nmilestones:\n  45: {action: pakcer}\n")
    write(folder / "c.yaml", GOOD.format(name="alpha"))  # the same DAG id as a.yaml
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(folder))
    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    assert set(bag.dags) == {"imagebuild_alpha", "imagebuild_beta"}
    assert len(bag.import_errors) == 1
    (error,) = bag.import_errors.values()
    assert "broken.yaml" in error and "milestones.45.action" in error
    assert f"{folder / 'c.yaml'}: pipeline: DAG id imagebuild_alpha is already used by {folder / 'a.yaml'}" in error
    with pytest.raises(SpecError, match=r"broken\.yaml"):
        load_pipelines(folder, strict=True)


def test_parsing_imports_no_cloud_sdk(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom airflow_provider_imagebuild.dag_factory import load_pipelines\n"
        f"dags = load_pipelines({str(Path(__file__).resolve().parents[2] / 'dags/pipelines')!r})\n"
        "assert dags, 'no DAG'\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 'azure', 'googleapiclient')]\n"
        "print(bad)\nassert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_tasks_show_code_and_title() -> None:
    from airflow_provider_imagebuild.spec.pipeline import parse_spec

    spec = parse_spec({"pipeline": "names", "cloud": "local", "image_type": "t", "include_standard": True})
    dag = build_dag(spec)
    task = dag.get_task("s035_runtimes")
    assert task.task_display_name == "35 · Language runtimes" and task.task_id == "s035_runtimes"
