"""Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``),
from ``provider.yaml`` beside this module: the one source, as in Airflow's own providers."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_imagebuild import __version__

PROVIDER_YAML = Path(__file__).with_name("provider.yaml")


@functools.cache
def _provider_yaml() -> dict[str, Any]:
    info: dict[str, Any] = yaml.safe_load(PROVIDER_YAML.read_text(encoding="utf-8"))
    return info


def get_provider_info() -> dict[str, Any]:
    return {**_provider_yaml(), "versions": [__version__]}
