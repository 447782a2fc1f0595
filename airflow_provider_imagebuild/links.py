"""Where a build shows in Airflow: the DAG it runs in, the Airflow page of each attempt, and its
own build page. Plain string work (no FastAPI, no Airflow imports): the API server uses it for the
pages, and every task for its extra links."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from airflow_provider_imagebuild.build.record import BuildRecord

URL_PREFIX = "/imagebuild"  # where the plugin's app is mounted on Airflow's API server
UI_ROUTE = "imagebuild"  # the UI shows the pages inside its own frame at /plugin/<UI_ROUTE>/...

_OWNER_RE = re.compile(r"^(?P<dag>[^/]+)/(?P<run>[^/]+)/(?P<task>[^/]+)/try-(?P<try>[0-9]+)$")


def dag_id_of(rec: BuildRecord) -> str:
    """The DAG a build runs in: recorded by its registration, else the factory's default name."""
    return rec.metadata.get("dag_id") or f"imagebuild_{rec.pipeline.replace('-', '_')}"


def _q(part: str) -> str:
    return quote(part, safe="")


@dataclass(frozen=True)
class TaskRef:
    """The Airflow task instance behind an attempt: its owner is ``dag/run/task/try-N``."""

    dag_id: str
    run_id: str
    task_id: str
    try_number: int

    @classmethod
    def parse(cls, owner: str) -> TaskRef | None:
        """None for owners that are not task instances (a person, the CLI, a takeover)."""
        found = _OWNER_RE.match(owner)
        if found is None:
            return None
        return cls(found["dag"], found["run"], found["task"], int(found["try"]))

    def run_path(self) -> str:
        return f"/dags/{_q(self.dag_id)}/runs/{_q(self.run_id)}"

    def log_path(self) -> str:
        """The task instance's page in Airflow's UI, at this try's log."""
        return f"{self.run_path()}/tasks/{_q(self.task_id)}?try_number={self.try_number}"


def build_page(build_id: str, root: str = "") -> str:
    """The build's page inside Airflow's UI frame (``root``: Airflow's base path, if any)."""
    return f"{root}/plugin/{UI_ROUTE}{URL_PREFIX}/builds/{_q(build_id)}"


def runs_of(rec: BuildRecord) -> list[TaskRef]:
    """The Airflow task instances that worked on the build, oldest first, one per run."""
    seen: dict[tuple[str, str], TaskRef] = {}
    for attempt in rec.attempts:
        ref = TaskRef.parse(attempt.owner)
        if ref is not None:
            seen.setdefault((ref.dag_id, ref.run_id), ref)
    return list(seen.values())
