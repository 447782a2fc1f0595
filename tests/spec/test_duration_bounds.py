"""A duration too long for Python's timedelta is one line naming its key, and the other specs of
the folder still load (an OverflowError escaped pydantic and took every pipeline's DAG down)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_imagebuild.spec.pipeline import load_specs, spec_files

BASE = 'pipeline: {name}\ncloud: local\nimage_type: base\nmilestones:\n  15: {{action: command, command: "true"}}\n'


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("on_failure: {abandon_after: 99999999999999d}\n", "on_failure.abandon_after"),
        ("on_failure: {abandon_after: 1e300}\n", "on_failure.abandon_after"),
        ("default_args: {retry_delay: 99999999999999h}\n", "default_args.retry_delay"),
    ],
)
def test_a_duration_beyond_timedelta_is_one_line_and_the_others_load(tmp_path: Path, extra: str, key: str) -> None:
    (tmp_path / "a.yaml").write_text(BASE.format(name="a") + extra)
    (tmp_path / "b.yaml").write_text(BASE.format(name="b"))
    loaded, errors = load_specs(spec_files(tmp_path))
    assert [spec.pipeline for _, spec in loaded] == ["b"]
    [error] = errors
    assert "a.yaml:" in str(error) and key in str(error) and "\n" not in str(error)
