"""How every ``imagebuild`` command answers: one redacted error line and an exit code, ``--json``
for scripts, or a rich table for people."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from airflow_provider_imagebuild.errors import ImageBuildError
from airflow_provider_imagebuild.redact import redact_patterns

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> None:
    click.echo(f"imagebuild: error: {redact_patterns(message)}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    click.echo(f"imagebuild: warning: {redact_patterns(message)}", err=True)


def handles_errors(func: F) -> F:
    """Typed errors become one line and an exit code; anything else is reported, not dumped."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ImageBuildError as exc:
            fail(str(exc), exc.exit_code)
        except Exception as exc:
            if os.environ.get("IMAGEBUILD_DEBUG"):
                raise
            fail(f"unexpected {type(exc).__name__}: {exc} (set IMAGEBUILD_DEBUG=1 for details)", 1)

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def emit(as_json: bool, data: Callable[[], Any], table: Callable[[Any], Any]) -> None:
    """``--json`` prints ``data()``; otherwise a rich table (rich costs 0.2 s, so it loads only here)."""
    if as_json:
        print_json(data())
        return
    from airflow_provider_imagebuild.cli import render

    render.console().print(table(render))
