"""How every ``imagebuild`` command answers: one redacted error line and an exit code, ``--json``
for scripts, or a rich table for people.

Every error the CLI prints goes through :func:`redact`: the typed ones and the unexpected ones
(:func:`handles_errors`), warnings, the traceback ``IMAGEBUILD_DEBUG=1`` asks for (the exception
and its causes, as tasks redact theirs), and click's own usage errors, which quote what was typed
(:class:`RedactingGroup`). The redaction is the patterns every task and the store use plus what the
command was given as a secret (:mod:`airflow_provider_imagebuild.redact.shell`): an error can
quote a secret with nothing around it that says so, such as the session token boto could not send
or the password of a store URL inside the bucket name it refused.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from airflow_provider_imagebuild.build.ids import without_controls
from airflow_provider_imagebuild.errors import ImageBuildError
from airflow_provider_imagebuild.redact.patterns import Redactor, redact_exception
from airflow_provider_imagebuild.redact.shell import shell_redactor

F = TypeVar("F", bound=Callable[..., Any])


def redactor() -> Redactor:
    """The redaction of what this command prints: the shared patterns plus the secrets of its
    arguments, environment, store URL and parameters (click's, when a command is running)."""
    given: list[object] = []
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        given.append(dict(ctx.params))
        if isinstance(ctx.obj, dict):
            given.append(ctx.obj.get("url"))
        ctx = ctx.parent
    return shell_redactor(*given)


def redact(text: str) -> str:
    return redactor()(text)


def fail(message: str, code: int) -> None:
    # What an error quotes (a path, a name, a tool's words) never drives the terminal: escaped
    click.echo(f"imagebuild: error: {without_controls(redact(message))}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    click.echo(f"imagebuild: warning: {without_controls(redact(message))}", err=True)


def handles_errors(func: F) -> F:
    """Typed errors become one line and an exit code; anything else is reported, not dumped (with
    ``IMAGEBUILD_DEBUG`` set, raised with its text and its causes' redacted)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ImageBuildError as exc:
            fail(str(exc), exc.exit_code)
        except Exception as exc:
            if os.environ.get("IMAGEBUILD_DEBUG"):
                safe = redact_exception(exc, redactor())
                if safe is exc:
                    raise
                raise safe from safe.__cause__
            fail(f"unexpected {type(exc).__name__}: {exc} (set IMAGEBUILD_DEBUG=1 for details)", 1)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _redacted_usage() -> Iterator[None]:
    try:
        yield
    except click.ClickException as exc:
        vars(exc)["message"] = redact(exc.message)  # an instance attribute click's stubs call Final
        raise


class RedactingGroup(click.Group):
    """The root group: click reports a bad value, an unknown option or an extra argument itself,
    before or around any command (so :func:`handles_errors` never sees it), quoting what was typed;
    its message is redacted on the way out like every other error."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        with _redacted_usage():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _redacted_usage():
            return super().invoke(ctx)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def emit(as_json: bool, data: Callable[[], Any], table: Callable[[Any], Any]) -> None:
    """``--json`` prints ``data()``; otherwise a table: drawn with boxes for a person at a terminal,
    as tab-separated lines when the output goes to a pipe or a file (rich costs 0.2 s, so it loads
    only here)."""
    if as_json:
        print_json(data())
        return
    from airflow_provider_imagebuild.cli import render

    made = table(render)
    if sys.stdout.isatty():
        render.console().print(made)
    else:
        click.echo(render.as_tsv(made), nl=False)


def note(text: str) -> None:
    """A line said after a table: piped, it starts ``# `` like the table's title and caption, so
    the tab-separated rows stay the only other lines."""
    click.echo(text if sys.stdout.isatty() else f"# {text}")
