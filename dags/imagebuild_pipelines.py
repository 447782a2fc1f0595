"""Registers one DAG per pipeline spec in dags/pipelines (or $IMAGEBUILD_PIPELINES_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

from airflow_provider_imagebuild.dag_factory import PIPELINES_ENV, load_pipelines

load_pipelines(os.environ.get(PIPELINES_ENV) or Path(__file__).parent / "pipelines", globals())
