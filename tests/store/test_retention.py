"""Retention on every backend: the store's own conditional delete (``BuildStore.prune``) removes
delivered builds and failed ones that hold nothing, and never a build that is not finished or a
failed one that still records a build host or images, whoever calls it."""

from __future__ import annotations

from airflow_provider_imagebuild.store import BuildStore
from tests.conftest import FakeClock


def test_prune_never_removes_an_unfinished_build_or_one_that_still_holds_something(
    store: BuildStore, clock: FakeClock
) -> None:
    from airflow_provider_imagebuild.build.record import format_ts

    for build_id, plan in (("delivered", [0, 5, 100]), ("half-done", [0, 5, 45, 100]), ("host-left", [0, 5, 100]),
                           ("failed-clean", [0, 5, 100])):  # fmt: skip
        store.create_build(build_id, pipeline="web", cloud="aws", image_type="base", plan=plan)
        lease = store.begin(build_id, 5, owner="w")
        if build_id == "host-left":
            store.set_metadata(build_id, {"host_id": "i-0abc"}, token=lease.token, state=5)
        if build_id in ("host-left", "failed-clean"):
            store.fail(build_id, 5, token=lease.token, error="broke")
        else:
            store.complete(build_id, 5, token=lease.token, outputs={"checkpoint_image": "ami-5"})
    lease = store.begin("delivered", 100, owner="w")
    store.complete("delivered", 100, token=lease.token)
    clock.advance(3600)
    cutoff = format_ts(clock())

    assert store.prune("half-done", updated_before=cutoff) is None  # completed up to 5, never delivered
    assert store.prune("host-left", updated_before=cutoff) is None  # failed, its host still recorded
    assert store.prune("failed-clean", updated_before=cutoff) is not None
    assert store.prune("delivered", updated_before=cutoff) is not None  # its kept checkpoint is the product's
    assert sorted(r.build_id for r in store.scan_builds()[0]) == ["half-done", "host-left"]
