"""Secrets a milestone's tool prints never reach the task log, the store or the CLI: AWS keys,
``password=``/``token=`` values, private keys, and secrets Airflow masks (``mask_secret``).

The task log is read where Airflow writes it when it runs the task (``dag.test()``: the task
logger's output, the failure's traceback included), not only what the operator logs itself: the
exception a failed tool raises is printed by Airflow, and its message quotes the tool's output."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.store import open_store
from tests.dags.conftest import ROOT, write
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
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """One failing milestone run by Airflow: its output lines, the failure Airflow prints with the
    command's last output, the attempt in the store and the CLI's history all hide every secret."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.log import mask_secret

    mask_secret(MASKED)
    url = f"sqlite:///{tmp_path}/s.db"
    spec = "\n".join(
        ["pipeline: leaky", "cloud: local", "image_type: t", "schedule: null", f"store: {url}",
         "defaults: {retries: 0}", "milestones:", f"  5: {{action: command, command: {LEAKY!r}}}"]
    )  # fmt: skip
    write(tmp_path / "pipelines/leaky.yaml", spec + "\n")
    monkeypatch.setenv("IMAGEBUILD_PIPELINES_DIR", str(tmp_path / "pipelines"))
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    capfd.readouterr()
    run = bag.dags["imagebuild_leaky"].test(run_conf={"build_id": "leaky-1"})
    task_log = "".join(capfd.readouterr())
    assert run.state == "failed"
    assert "vault said ***" in task_log and "BEGIN PRIVATE KEY-----***" in task_log, task_log  # lines were logged
    failure = task_log[task_log.index("Task failed with exception") :]  # what Airflow prints of the exception
    assert "command exited with status 3" in failure, failure
    assert "password=***" in failure and "aws_secret_access_key=***" in failure, failure
    stored = open_store(url).get("leaky-1").attempts_at(5)[0].error or ""
    assert "exited with status 3" in stored
    result = CliRunner().invoke(cli, ["--store", url, "build", "history", "leaky-1", "--json"])
    assert result.exit_code == 0, result.output
    for secret in SECRETS:
        assert secret not in task_log, f"{secret} in the task log"
        assert secret not in stored, f"{secret} in the store"
        assert secret not in result.output, f"{secret} in the CLI output"


WORD = "zebrafinch"  # a registered secret that is also a word of the build's ids and paths


def test_a_masked_word_never_corrupts_ids_paths_or_outputs(tmp_path: Path) -> None:
    """Airflow masks a registered value wherever it occurs. A connection password that is also a
    word of a build id, a DAG id or a path (``local``, ``airflow``) must not turn the build's
    owners, host metadata or the image paths a target records into ``***`` (the build could no
    longer find its host or checkpoint); free text (errors) and what a command prints (its
    outputs included) are still masked."""
    from types import SimpleNamespace

    from airflow.sdk.log import mask_secret

    from airflow_provider_imagebuild.hooks.build_state import airflow_redactor
    from airflow_provider_imagebuild.operators import CommandMilestoneOperator

    mask_secret(WORD)
    mask_secret(MASKED)
    url = f"sqlite:///{tmp_path}/s.db"
    build = f"{WORD}-1"
    path = f"/work/{WORD}-1/rootfs"
    open_store(url).create_build(build, pipeline=WORD, cloud="local", image_type="t", plan=[0, 5, 10, 100])
    op = CommandMilestoneOperator(
        task_id="s005",
        identity=BuildIdentity(WORD, "local", "t", plan=(0, 5, 10, 100)),
        state=5,
        store=url,
        command=f"echo '::output:: said=vault said {MASKED} about {WORD}'",
    )
    context = task_context(build, "s005")
    context["ti"] = SimpleNamespace(**{**vars(context["ti"]), "dag_id": f"imagebuild_{WORD}"})
    op.execute(context)
    store = open_store(url, redactor=airflow_redactor())
    rec = store.get(build)
    assert rec.milestones[5].outputs == {"said": "vault said *** about ***"}
    assert rec.attempts_at(5)[0].owner.startswith(f"imagebuild_{WORD}/")

    # What a target records under its lease: host metadata and image paths, kept as they are.
    lease = store.begin(build, 10, owner=f"imagebuild_{WORD}/r1/s010/try-1")
    store.set_metadata(build, {"host_id": path}, actor=f"milestone 10 of {WORD}", token=lease.token, state=10)
    store.fail(build, 10, token=lease.token, error=f"ssh to {path} refused")
    lease = store.begin(build, 10, owner=f"imagebuild_{WORD}/r1/s010/try-2")
    store.complete(build, 10, token=lease.token, outputs={"checkpoint_image": f"{path}.tgz"})
    rec = store.get(build)
    assert rec.metadata["host_id"] == path and rec.milestones[10].outputs == {"checkpoint_image": f"{path}.tgz"}
    assert rec.attempts_at(10)[1].owner == f"imagebuild_{WORD}/r1/s010/try-2"
    assert rec.attempts_at(10)[0].error == "ssh to /work/***-1/rootfs refused"
