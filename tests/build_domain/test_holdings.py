"""What a build record still holds (build host, Packer's kept instance, checkpoint and staged
images), and which records retention may remove: pure functions on records made by the store's
own rules, no store, no target."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow_provider_imagebuild.build import rules
from airflow_provider_imagebuild.build.holdings import Holding, holdings
from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.build.retention import retention_verdict

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
PLAN = [0, 5, 10, 15, 95, 100]


def record(plan: list[int] = PLAN) -> BuildRecord:
    return rules.new_record("b-1", BuildIdentity.checked("web", "aws", "base", "", plan), "test", NOW)


def run(
    rec: BuildRecord, code: int, outputs: dict[str, Any] | None = None, meta: dict[str, str] | None = None,
    fail: bool = False,
) -> None:  # fmt: skip
    """One milestone as an operator runs it: lease, metadata under the lease, then complete or fail."""
    lease, _ = rules.begin(rec, code, "w", 300, NOW)
    if meta:
        rules.set_metadata(rec, meta, "w", NOW, lease.token, code)
    if fail:
        rules.fail(rec, code, lease.token, "broke", NOW)
    else:
        rules.complete(rec, code, lease.token, outputs or {}, NOW)


def shown(rec: BuildRecord) -> list[str]:
    return [str(h) for h in holdings(rec)]


def test_a_new_build_holds_nothing_and_is_not_finished() -> None:
    rec = record()
    assert holdings(rec) == []
    verdict = retention_verdict(rec)
    assert not verdict.removable and "not finished" in verdict.reason


def test_a_failed_build_holds_its_host_checkpoints_and_staged_images() -> None:
    rec = record()
    images = {"us-east-1": "ami-5", "eu-west-1": "ami-5eu"}
    run(rec, 5, {"image_id": "ami-5", "checkpoint_image": "ami-5", "images": images})  # Packer's green image
    run(rec, 10, {"checkpoint_image": "ami-10"})
    run(rec, 15, meta={"host_id": "i-1", "host_address": "10.0.0.1"}, fail=True)
    assert holdings(rec) == [
        Holding("host", "i-1"),
        Holding("checkpoint", "ami-5", 5),
        Holding("checkpoint", "ami-10", 10),
        Holding("image", "ami-5eu", 5),  # Packer's copy in another region: nothing else deletes it
    ]
    assert shown(rec)[0] == "build host i-1" and shown(rec)[1] == "checkpoint image ami-5 (milestone 5)"
    verdict = retention_verdict(rec)
    assert not verdict.removable and verdict.holds == tuple(holdings(rec))
    assert verdict.reason.startswith("still holds build host i-1, checkpoint image ami-5 (milestone 5)")
    assert verdict.reason.endswith(": abandon it first")


def test_what_the_seal_deleted_and_the_publish_released_is_no_longer_held() -> None:
    rec = record()
    run(rec, 5, {"image_id": "ami-5", "checkpoint_image": "ami-5"})
    run(rec, 10, {"checkpoint_image": "ami-10"})
    run(rec, 15, meta={"host_id": "i-1"})
    run(rec, 95, {"image_id": "ami-final", "discarded_checkpoints": ["ami-5"]}, meta={"checkpoints_discarded": "5@1"})
    # Failed at publish: the sealed image was never delivered, so it is staged; 10 was kept.
    run(rec, 100, meta={"host_id": "", "host_released": "i-1"}, fail=True)
    assert shown(rec) == ["checkpoint image ami-10 (milestone 10)", "staged image ami-final (milestone 95)"]
    assert not retention_verdict(rec).removable

    delivered = record([0, 5, 95, 100])
    run(delivered, 5, {"image_id": "ami-5", "checkpoint_image": "ami-5"})
    run(delivered, 95, {"image_id": "ami-final"}, meta={"checkpoints_discarded": "5@1"})
    run(delivered, 100, {"image_id": "ami-final"}, meta={"host_id": "", "host_released": "i-1"})
    assert holdings(delivered) == []  # the final image is published: the product, not a leftover
    assert retention_verdict(delivered).removable and retention_verdict(delivered).reason == "delivered"


def test_a_relaunched_host_and_packers_kept_instance_are_held() -> None:
    rec = record()
    run(rec, 5, meta={"packer_kept_instance": "i-debug"}, fail=True)
    assert holdings(rec) == [Holding("packer_instance", "i-debug")]
    assert shown(rec) == ["instance i-debug kept by Packer (on_error: abort)"]

    rec = record()
    run(rec, 5)
    run(rec, 10, meta={"host_id": "i-2", "host_released": "i-1"}, fail=True)  # released i-1, then launched i-2
    assert holdings(rec) == [Holding("host", "i-2")]


def test_a_checkpoint_deleted_by_an_earlier_seal_but_captured_again_is_held() -> None:
    """The seal records (milestone, attempt) of what it deleted: a later attempt's new image counts."""
    rec = record([0, 5, 10, 100])
    run(rec, 5)
    run(rec, 10, {"checkpoint_image": "ami-10a"}, meta={"checkpoints_discarded": "10@1"})
    rules.reset(rec, 10, "again", "person", NOW)
    run(rec, 10, {"checkpoint_image": "ami-10b"})
    run(rec, 100, fail=True)
    assert shown(rec) == ["checkpoint image ami-10b (milestone 10)"]


def test_only_delivered_builds_and_failed_ones_holding_nothing_may_be_removed() -> None:
    failed = record([0, 5, 100])
    run(failed, 5, fail=True)
    assert retention_verdict(failed).removable and retention_verdict(failed).reason == "failed, holds nothing"

    half = record([0, 5, 45, 100])
    run(half, 5)  # completed, never delivered: waiting for its next milestone
    verdict = retention_verdict(half)
    assert not verdict.removable and verdict.reason == "not finished: completed up to milestone 5, not delivered"

    running = record([0, 5, 100])
    rules.begin(running, 5, "w", 300, NOW)
    assert retention_verdict(running).reason == "not finished: in progress at milestone 5"

    leased = record([0, 5, 100])
    run(leased, 5, fail=True)
    rules.begin(leased, 5, "w", 300, NOW)  # a retry took the lease
    assert not retention_verdict(leased).removable


def test_a_reused_milestone_holds_only_its_own_copy_of_the_checkpoint() -> None:
    """#32: milestones 5 and 10 taken from build b-0 (rules.reuse) made nothing: the images their
    outputs name are b-0's (a record written before reuse left them out, or by hand), never held
    here, so an abandon never asks the target to delete them and prune does not wait on them; the
    checkpoint the build recorded at 10 is its own copy, held. Its own 15's staged image is held."""
    rec = record()
    lease, _ = rules.begin(rec, 5, "w", 300, NOW)
    made_from = ("0" * 64, {"previous": ""})
    rules.reuse(rec, 5, lease.token, "b-0", [
        (5, {"image_id": "ami-green-of-b0"}, made_from),
        (10, {"image_id": "ami-b0-10", "images": {"eu-west-1": "ami-b0-eu"}, "checkpoint_image": "ami-b1-copy"},
         made_from),
    ], NOW)  # fmt: skip
    run(rec, 15, {"image_id": "ami-b1-15"})
    run(rec, 95, fail=True)
    assert shown(rec) == ["checkpoint image ami-b1-copy (milestone 10)", "staged image ami-b1-15 (milestone 15)"]
