"""Milestone titles as the pipeline names them: a custom milestone reads ``42 · License check`` on
the pages, not ``milestone 42``.

A build's record keeps its pipeline's own titles (``BuildRecord.titles``) since it is registered
with them. Builds registered before that hold codes only: for those the pages read the titles of
the build's own DAG, whose tasks the DAG factory names ``42 · License check`` and whose serialized
form the API server has (one read per DAG, only when a record lacks a title), and fall back to the
catalog's titles for a DAG Airflow does not know (deleted, not parsed yet).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from airflow_provider_imagebuild.build.catalog import CATALOG, title_of
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.links import dag_id_of

log = logging.getLogger(__name__)

_TASK_RE = re.compile(r"^s(?P<code>[0-9]{3})_")
_SEPARATOR = " · "


def dag_titles(dag_id: str) -> dict[int, str]:
    """``{code: title}`` from the display names of the DAG's milestone tasks (``s042_...``)."""
    try:
        from airflow.models.dagbag import DBDagBag
        from airflow.utils.session import create_session

        with create_session() as session:
            dag = DBDagBag(load_op_links=False).get_latest_version_of_dag(dag_id, session=session)
            tasks = list(dag.task_dict.values()) if dag is not None else []
    except Exception as exc:  # the titles are a nicety: never a page that fails for them
        log.warning("milestone titles of DAG %s could not be read (%s)", dag_id, type(exc).__name__)
        return {}
    titles = {}
    for task in tasks:
        found = _TASK_RE.match(task.task_id)
        shown = getattr(task, "task_display_name", "") or ""
        code, _, title = shown.partition(_SEPARATOR)
        if found and title and code == str(int(found["code"])):
            titles[int(found["code"])] = title
    return titles


def titles_for(rec: BuildRecord) -> Callable[[int], str]:
    """The title of each milestone of build ``rec``: its record's, else its DAG's, else the catalog's."""
    own = rec.titles
    unnamed = [c for c in rec.plan if c not in CATALOG and c not in own]
    named = dag_titles(dag_id_of(rec)) if unnamed else {}
    return lambda code: own.get(code) or named.get(code) or title_of(code)
