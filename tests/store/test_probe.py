"""``BuildStore.probe``: the write ``imagebuild doctor`` proves a store takes, on every backend,
leaves no record behind and never writes over a build that happens to carry the probe's id."""

from __future__ import annotations

import pytest

from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.store import BuildStore
from airflow_provider_imagebuild.store.base import PROBE_BUILD_ID


def test_a_probe_write_leaves_no_record(store: BuildStore) -> None:
    store.create_build("kept", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 100])
    store.probe()
    store.probe()  # again: nothing of the first is in the way
    records, problems = store.scan_builds()
    assert [r.build_id for r in records] == ["kept"] and not problems
    assert store.find(PROBE_BUILD_ID) is None


def test_a_probe_never_touches_a_build_of_its_name(store: BuildStore) -> None:
    store.create_build(PROBE_BUILD_ID, pipeline="real", cloud="aws", image_type="t", plan=[0, 5, 100])
    with pytest.raises(Conflict, match="not a probe record"):
        store.probe()
    kept = store.get(PROBE_BUILD_ID)
    assert (kept.pipeline, kept.cloud, kept.version) == ("real", "aws", 1)
