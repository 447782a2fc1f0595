"""A connection the spec names that nobody has created: the milestone fails at once (not retried)
with one line naming the connection to create, recorded as the attempt's error, and no chained
traceback (the first ``make run`` end to end is tests/scaffold/test_first_run.py). The operator is
executed directly; the Amazon provider's hook, Airflow's connection lookup and the store are real."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.spec.pipeline import TargetSpec
from airflow_provider_imagebuild.store import open_store
from tests.conftest import task_context
from tests.dags.conftest import ROOT


def test_a_missing_aws_connection_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Amazon hook falls back to the machine's credentials when the connection is missing; with
    none there either, the missing connection is the cause named, not "no AWS credentials found"."""
    from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    store.create_build("first-try", pipeline="p", cloud="aws", image_type="t", plan=[0, 5, 100])
    op = PackerMilestoneOperator(
        task_id="s005",
        identity=BuildIdentity("p", "aws", "t", plan=(0, 5, 100)),
        state=5,
        store=f"sqlite:///{tmp_path}/s.db",
        target=TargetSpec(aws_conn_id="aws_nowhere", region="us-east-1", source_image="ami-0583d8c7a9c35822c"),
        template=str(ROOT / "dags/packer/rhel8.pkr.hcl"),
        retries=2,
    )

    with pytest.raises(AirflowFailException) as raised:
        op.execute(task_context("first-try", "s005"))

    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("aws_conn_id: the Airflow connection 'aws_nowhere' does not exist: create it"), message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no second traceback
    [attempt] = store.get("first-try").attempts_at(5)
    assert attempt.status == "failed" and "'aws_nowhere' does not exist" in (attempt.error or "")


def test_airflows_own_missing_connection_error_is_named_wherever_it_is_met() -> None:
    """Provider hooks (Azure, Google) raise Airflow's "isn't defined" error, and the private clouds'
    code wraps it in an error naming the spec key: both read as the same one line."""
    from airflow.sdk import BaseHook

    from airflow_provider_imagebuild.clouds.connections import missing_connection

    try:
        BaseHook.get_connection("azure_nowhere")
    except AirflowException as exc:
        hook_error = exc
    assert missing_connection(hook_error) == (
        "the Airflow connection 'azure_nowhere' does not exist: create it (Admin > Connections in the UI, "
        "or `airflow connections add azure_nowhere ...`)"
    )
    try:
        raise RuntimeError("the Azure client could not be made") from hook_error
    except RuntimeError as wrapped:
        assert missing_connection(wrapped) == missing_connection(hook_error)
    assert missing_connection(RuntimeError("quota exceeded")) is None
