"""Secrets a milestone's tool prints never reach the task log, the store or the CLI: AWS keys,
``password=``/``token=`` values, private keys, and secrets Airflow masks (``mask_secret``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.store import open_store
from tests.helpers import task_context

MASKED = "Sup3r-Secret-Value-9f2"
LEAKY = (
    "echo 'aws_access_key_id=AKIAIOSFODNN7EXAMPLE'; "
    "echo 'aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'; "
    "echo 'db password=hunter2hunter2'; "
    "printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA\\n"
    "-----END OPENSSH PRIVATE KEY-----\\n'; "
    f"echo 'vault said {MASKED}'; "
    f"echo '::output:: note=token={MASKED}'; exit 3"
)
SECRETS = ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "hunter2hunter2", "b3BlbnNzaC1rZXktdjEAAAAA", MASKED)


def test_tool_output_is_redacted_in_task_log_store_and_cli(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk.exceptions import AirflowException
    from airflow.sdk.log import mask_secret

    from airflow_provider_imagebuild.operators import CommandMilestoneOperator

    mask_secret(MASKED)
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url)
    store.create_build("leaky-1", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    op = CommandMilestoneOperator(
        task_id="s005",
        identity=BuildIdentity("p", "local", "t", plan=(0, 5, 100)),
        state=5,
        store=url,
        command=LEAKY,
    )
    with caplog.at_level(logging.INFO), pytest.raises(AirflowException, match="exited with status 3"):
        op.execute(task_context("leaky-1", "s005"))
    task_log = caplog.text + "".join(capsys.readouterr())
    assert "vault said ***" in task_log and "BEGIN PRIVATE KEY-----***" in task_log, task_log  # lines were logged
    stored = open_store(url).get("leaky-1").attempts_at(5)[0].error or ""
    assert "exited with status 3" in stored
    result = CliRunner().invoke(cli, ["--store", url, "build", "history", "leaky-1", "--json"])
    assert result.exit_code == 0, result.output
    for secret in SECRETS:
        assert secret not in task_log, f"{secret} in the task log"
        assert secret not in stored, f"{secret} in the store"
        assert secret not in result.output, f"{secret} in the CLI output"
