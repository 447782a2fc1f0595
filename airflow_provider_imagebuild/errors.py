"""Typed errors shared by the store, the CLI and the operators.

Every error names what was wrong and why, so that a CLI user, a Concourse job or an Airflow
operator can react to the *kind* of failure (exit code, retry or not) without parsing text.
"""

from __future__ import annotations


class ImageBuildError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class InvalidInput(ImageBuildError, ValueError):
    """Input that can never succeed as given; nothing was written."""

    exit_code = 2

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class Conflict(ImageBuildError):
    """The store's current state refuses the change (lease held, out of order, stale token...).

    ``holder`` names the owner of the live lease when that is the cause, so that the caller can
    tell a person who is working on the build (as Terraform shows who holds a state lock).
    """

    exit_code = 3

    def __init__(self, message: str, holder: str | None = None) -> None:
        self.holder = holder
        super().__init__(message)


class NotFound(ImageBuildError, LookupError):
    """The build does not exist in this store."""

    exit_code = 4

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else "not found"


class StoreUnavailable(ImageBuildError):
    """The store cannot be used: unreachable, not initialised, or holding a corrupt record.

    Transient for the operators (Airflow retries); exit code 5 for the CLI.
    """

    exit_code = 5


class CorruptRecord(StoreUnavailable):
    """A stored record cannot be parsed. It is reported and never overwritten."""


class TargetError(ImageBuildError):
    """The cloud or build host failed (API error, unreachable endpoint, image not available).

    Transient for the operators (Airflow retries the milestone); exit code 6 for the CLI.
    """

    exit_code = 6


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one log line: its message's first line, cut at ``limit``; its type's name
    when the message is empty (``ValueError()``, ``KeyError()``, a library's ``OSError()``), so that
    a handler that logs and carries on cannot fail on the first line of no lines."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
