"""Field types the ``target:`` models of every cloud share, each with its one check."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from airflow_provider_imagebuild.build.ids import KEY_RE


def _conn_id(value: str) -> str:
    if not KEY_RE.fullmatch(value):
        raise ValueError("is not a connection id")
    return value


def _login(value: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value) or value == "root":
        raise ValueError(f"{value!r} is not a login name (lowercase, not root)")
    return value


ConnId = Annotated[str, AfterValidator(_conn_id)]  # an Airflow connection id
LoginName = Annotated[str, AfterValidator(_login)]  # the build host's SSH user
