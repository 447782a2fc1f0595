"""The Airflow connections the specs name: defined where this worker can read them, of the type
their hook is registered as, with the fields the provider's code reads.

Read through the Task SDK as a task outside its supervisor reads them: ``AIRFLOW_CONN_<ID>`` and
the secrets backend configured in ``[secrets] backend``. A connection kept only in Airflow's
metadata database reaches a task through the API server and is not visible here unless
``--airflow-db`` asks to read that database too (where this host can reach it).

Nothing of a connection is printed but its id, its type and the names of the fields it lacks:
not a login, a host, an extra's value or the text of an error about it (a URI Airflow cannot
parse would be quoted whole, password included).
"""

from __future__ import annotations

import os
from typing import Any

from airflow_provider_imagebuild.doctor.findings import OK, WARN, Finding, judged
from airflow_provider_imagebuild.doctor.needs import ConnectionNeed

LOOKED = "$AIRFLOW_CONN_{env} and the configured secrets backend"
DB_HINT = "; one kept in Airflow's database only is read with --airflow-db where the database is reachable"


def env_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _has(conn: Any, field: str) -> bool:
    """Whether the connection gives ``field`` ("host", "extra.auth_url"; "a|b": either)."""
    for name in field.split("|"):
        if name.startswith("extra."):
            extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
            value = extra.get(name.removeprefix("extra."))
        else:
            value = getattr(conn, name, None)
        if value not in (None, ""):
            return True
    return False


def use_airflow_db() -> None:
    """Read connections as Airflow's servers do, the metadata database included. Must run before
    the first connection is read (the Task SDK chooses its secrets backends once)."""
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"


def _read(conn_id: str) -> tuple[Any | None, str]:
    """The connection, or None and why (never the text of Airflow's error: it may quote it)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id), ""
    except AirflowNotFoundException:
        if os.environ.get(env_name(conn_id)):
            return None, f"${env_name(conn_id)} is set but is not a connection Airflow can read (JSON or URI)"
        looked = LOOKED.format(env=conn_id.upper())
        db = "" if os.environ.get("_AIRFLOW_PROCESS_CONTEXT") == "server" else DB_HINT
        return None, f"not defined in {looked}{db}"
    except Exception as exc:
        return None, f"cannot be read ({type(exc).__name__})"


def examine_connection(need: ConnectionNeed, conn: Any | None, why: str, needed_by: list[str]) -> Finding:
    check = f"connection {need.conn_id}" + (f" ({need.conn_type})" if need.conn_type else "")
    define = f"define it: airflow connections add {need.conn_id} --conn-type {need.conn_type or 'generic'} ..."
    if conn is None:
        if need.fallback and needed_by:
            return Finding(check, WARN, f"{why}; {need.fallback}", define, tuple(needed_by))
        return judged(check, False, why, define, needed_by)
    problems = []
    if need.conn_type and conn.conn_type != need.conn_type:
        problems.append(f"is of type {conn.conn_type or 'none'}, not {need.conn_type}")
    lacking = [field for field in need.fields if not _has(conn, field)]
    if lacking:
        problems.append(f"lacks {', '.join(lacking)}")
    if problems:
        fix = f"edit connection {need.conn_id}: " + "; ".join(problems)
        return judged(check, False, "; ".join(problems), fix, needed_by)
    return Finding(check, OK, f"defined, type {conn.conn_type}", "", tuple(needed_by))


def examine_connections(needs: dict[ConnectionNeed, list[str]]) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The ``connections`` entries of the report and their findings, each connection read once."""
    read: dict[str, tuple[Any | None, str]] = {}
    entries, findings = [], []
    for need, needed_by in needs.items():
        if need.conn_id not in read:
            read[need.conn_id] = _read(need.conn_id)
        conn, why = read[need.conn_id]
        finding = examine_connection(need, conn, why, needed_by)
        findings.append(finding)
        entries.append(
            {
                "conn_id": need.conn_id,
                "conn_type": need.conn_type,
                "found_type": None if conn is None else conn.conn_type,
                "needed_by": needed_by,
                "ok": finding.status == OK,
                "status": finding.status,
                "problem": None if finding.status == OK else finding.detail,
            }
        )
    return entries, findings
