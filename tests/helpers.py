"""Small helpers shared by tests and benchmarks (importable without the conftest's set-up)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def task_context(build_id: str, task_id: str, try_number: int = 1) -> dict[str, Any]:
    """The parts of an Airflow task context a milestone operator reads, for calling ``execute``
    directly where the Airflow path itself is covered by a ``dag.test()`` test."""
    ti = SimpleNamespace(dag_id="d", run_id="r1", task_id=task_id, try_number=try_number, xcom_push=lambda **kw: None)
    return {"ti": ti, "dag_run": SimpleNamespace(conf={"build_id": build_id}, run_id="r1")}


def packer() -> str:
    """The Packer the provider runs (beside the venv's Python, $IMAGEBUILD_TOOLS_DIR, PATH), by
    absolute path: a test's own environment never decides which Packer it tests."""
    from airflow_provider_imagebuild.toolchain.locate import find_tool

    found = find_tool("packer")
    assert found, "packer is installed by `make packer-tools`"
    return found


def packer_env(home: str, **extra: str) -> dict[str, str]:
    """The whole environment for running :func:`packer` by hand, as the provider runs it: its
    plugins (the folder beside it, as a Packer milestone passes them), no version check call, a
    throwaway ``home`` (Packer's config and plugin folders are under it), and nothing else of the
    test's own environment."""
    from airflow_provider_imagebuild.toolchain.packer import plugin_env

    return {"PATH": "/usr/bin:/bin", "CHECKPOINT_DISABLE": "1", "HOME": home, **plugin_env(packer(), {}), **extra}


def gc_minutes_later(monkeypatch: Any, minutes: float = 11) -> None:
    """``imagebuild gc`` judging as if ``minutes`` from now: its threshold is at least 10 minutes
    (``targets.leaks.MIN_OLDER_THAN``) and what a test plants is seconds old. Only the collector's
    clock moves; the store and the clouds keep theirs, so resources and records age together."""
    from datetime import timedelta

    from airflow_provider_imagebuild.targets import leaks

    real = leaks.utc_now
    monkeypatch.setattr(leaks, "utc_now", lambda: real() + timedelta(minutes=minutes))
