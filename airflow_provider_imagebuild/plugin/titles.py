"""Milestone titles as the pipeline names them: a custom milestone reads ``42 · License check`` on
the pages, not ``custom 42``.

A build's record holds milestone codes only; the titles are in the pipeline's spec, and the DAG
factory gives each task its milestone's title as Airflow's display name (``42 · License check``).
The API server has Airflow's serialized DAGs, so the pages read the titles of the build's own DAG
there (one read per page), and fall back to the catalog's titles for a DAG Airflow does not know
(deleted, not parsed yet).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from airflow_provider_imagebuild.build.catalog import title_of

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


def titles_for(dag_id: str) -> Callable[[int], str]:
    """The title of each milestone of a build of DAG ``dag_id``."""
    named = dag_titles(dag_id)
    return lambda code: named.get(code) or title_of(code)
