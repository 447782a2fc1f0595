"""A connection a pipeline names that does not exist: one line saying which one to create.

A first run usually fails here: the project's spec names ``aws_default`` or ``vsphere_default``
and nobody has made it yet. Airflow's own error (``The conn_id `x` isn't defined``) comes from
deep in a provider hook, and the Amazon hook does not even raise: it falls back to the machine's
credentials and the build fails later with "no AWS credentials found". Neither can be cured by a
retry or a clear, so the milestone fails at once (no retries) with one line that names the
connection and how to create it, and no chained traceback behind it.
"""

from __future__ import annotations

import re

from airflow_provider_imagebuild.errors import InvalidInput

# Airflow 3's text when a connection is in neither the secrets backends nor the metadata DB.
_NOT_DEFINED = re.compile(r"conn_id `(?P<conn_id>[^`]+)` isn't defined")


class ConnectionMissing(InvalidInput):
    """The Airflow connection ``conn_id`` (named by ``field``) does not exist."""

    def __init__(self, conn_id: str, field: str) -> None:
        self.conn_id = conn_id
        super().__init__(field, missing_reason(conn_id, field))


def missing_reason(conn_id: str, field: str = "") -> str:
    where = f", or name another one in {field}" if field else ""
    return (
        f"the Airflow connection {conn_id!r} does not exist: create it (Admin > Connections in the UI, or "
        f"`airflow connections add {conn_id} ...`){where}"
    )


def connection_exists(conn_id: str) -> bool:
    """Whether Airflow finds ``conn_id`` (secrets backends, environment, metadata DB)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def missing_connection(exc: BaseException) -> str | None:
    """The one-line error for ``exc`` when it (or an error it was raised from) says a connection is
    not defined, whichever cloud's code met it; None for every other failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionMissing):
            return str(current)
        found = _NOT_DEFINED.search(str(current))
        if found is not None:
            field = current.field if isinstance(current, InvalidInput) else ""
            reason = missing_reason(found["conn_id"], field)
            return f"{field}: {reason}" if field else reason
        current = current.__cause__ or current.__context__
    return None
