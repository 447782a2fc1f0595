"""Running a delivered build again: the build host is released at delivery and the seal deletes
the checkpoints it was not told to keep, so a reset or redo to a milestone that needs a host is
refused up front (naming the milestone to rebuild from), and a later attempt's new checkpoint is
usable again. Found by the browser test: a redo from 90 of a delivered local build used to fail
at the relaunch, after the reset had been recorded."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.store import BuildStore
from airflow_provider_imagebuild.targets.base import latest_checkpoint, resume_problem

PLAN = [0, 5, 10, 30, 85, 90, 95, 100]


def delivered(store: BuildStore, build_id: str) -> BuildRecord:
    """What a local build leaves: host launched with 5's work, checkpoints at 10 and 30 deleted by
    the seal, the host released by the publish."""
    store.create_build(build_id, pipeline="p", cloud="local", image_type="t", plan=PLAN)
    for code in PLAN[1:]:
        lease = store.begin(build_id, code, owner="w")
        outputs = {"checkpoint_image": f"/w/{build_id}/checkpoint-{code:03d}.tar"} if code in (10, 30) else {}
        if code == 5:
            host = {"host_id": "/w/root", "host_address": "/w/root", "host_image": "base.tgz", "host_checkpoint": "5"}
            store.set_metadata(build_id, host, token=lease.token, state=code)
        if code == 95:
            store.set_metadata(build_id, {"checkpoints_discarded": "10@1,30@1"}, token=lease.token, state=code)
        if code == 100:
            store.set_metadata(build_id, {"host_id": "", "host_released": "/w/root"}, token=lease.token, state=code)
        store.complete(build_id, code, token=lease.token, outputs=outputs)
    return store.get(build_id)


def test_a_delivered_build_without_checkpoints_can_only_be_rebuilt(store: BuildStore) -> None:
    rec = delivered(store, "d-1")
    problem = resume_problem(rec, 90)
    assert problem and "released at delivery" in problem and "milestones 10, 30" in problem
    assert "Redo from 5 to rebuild" in problem and "keep_checkpoints" in problem
    assert resume_problem(rec, 10) and resume_problem(rec, 95)
    assert resume_problem(rec, 5) is None  # the bootstrap makes a new host
    assert latest_checkpoint(rec, 90) is None


def test_a_new_checkpoint_after_a_rebuild_is_usable(store: BuildStore) -> None:
    delivered(store, "d-2")
    store.reset("d-2", to=5, reason="rebuild")
    for code in (5, 10):
        lease = store.begin("d-2", code, owner="w")
        if code == 5:
            store.set_metadata("d-2", {"host_id": "/w/root2", "host_checkpoint": "5"}, token=lease.token, state=code)
        store.complete(
            "d-2", code, token=lease.token, outputs={"checkpoint_image": "/w/d-2/new-010.tar"} if code == 10 else {}
        )
    rec = store.get("d-2")
    checkpoint = latest_checkpoint(rec, 30)
    assert checkpoint is not None and checkpoint.image == "/w/d-2/new-010.tar"  # attempt 2 of 10: not deleted
    assert resume_problem(rec, 30) is None  # and the host is live again


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_cli_refuses_the_reset_and_changes_nothing(store: BuildStore) -> None:
    delivered(store, "d-3")
    version = store.get("d-3").version
    result = CliRunner().invoke(cli, ["--store", store.url, "build", "reset", "d-3", "--to", "90", "--reason", "again"])
    assert result.exit_code == 3, result.output
    assert "cannot run again from milestone 90" in result.output and store.get("d-3").version == version
    result = CliRunner().invoke(
        cli, ["--store", store.url, "build", "reset", "d-3", "--to", "5", "--reason", "rebuild"]
    )
    assert result.exit_code == 0, result.output


def test_the_store_itself_refuses_the_reset_on_every_backend(store: BuildStore) -> None:
    """Not only the CLI and the API: any caller of ``reset`` (the Concourse resource, a script,
    an entry point added later) meets the same rule, checked on the record the reset would change."""
    delivered(store, "d-4")
    version = store.get("d-4").version
    for to in (90, 95, 100):
        with pytest.raises(Conflict, match=f"cannot run again from milestone {to}: its build host was released"):
            store.reset("d-4", to=to, reason="again", actor="concourse")
    assert store.get("d-4").version == version and store.get("d-4").delivered
    assert store.reset("d-4", to=5, reason="rebuild").next_state == 5


def test_the_rule_lives_in_the_build_domain() -> None:
    """Pure: the build domain decides, the targets' module only re-exports it for its callers."""
    from airflow_provider_imagebuild.build import checkpoints
    from airflow_provider_imagebuild.targets import base

    assert base.resume_problem is checkpoints.resume_problem
    assert base.latest_checkpoint is checkpoints.latest_checkpoint
