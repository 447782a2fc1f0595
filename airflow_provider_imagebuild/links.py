"""Where a build shows in Airflow: the DAG it runs in, the Airflow page of each attempt, and its
own build page. Plain string work (no FastAPI, no Airflow imports): the API server uses it for the
pages, and every task for its extra links."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from airflow_provider_imagebuild.build.record import BuildRecord

URL_PREFIX = "/imagebuild"  # where the plugin's app is mounted on Airflow's API server
# Airflow's UI shows a nav view at /plugin/<UI_ROUTE>/<the frame's own path>: a page of the app is
# /plugin/image-builds/imagebuild/builds/... (a route named as the app is mounted read as a typo:
# /plugin/imagebuild/imagebuild/...). The route is the view's name as Airflow would derive it.
UI_ROUTE = "image-builds"

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
    """The build's page inside Airflow's UI frame (``root``: Airflow's base path, or its full address
    for a link read outside Airflow). The UI loads the frame at the part after ``/plugin/<route>``,
    from the site's origin: so that part is the app page's own path, Airflow's base path included."""
    base_path = urlsplit(root).path.rstrip("/") if "://" in root else root
    return f"{root}/plugin/{UI_ROUTE}{app_page(build_id, base_path)}"


def app_page(build_id: str, root: str = "") -> str:
    """The build's page as the plugin's app serves it (what Airflow's frame loads)."""
    return f"{root}{URL_PREFIX}/builds/{_q(build_id)}"


def sbom_api(build_id: str, root: str = "") -> str:
    """The build's bill of materials as the plugin's API serves it (proven; ``imagebuild build sbom``)."""
    return f"{root}{URL_PREFIX}/api/builds/{_q(build_id)}/sbom"


def runs_of(rec: BuildRecord) -> list[TaskRef]:
    """The Airflow task instances that worked on the build, oldest first, one per run."""
    seen: dict[tuple[str, str], TaskRef] = {}
    for attempt in rec.attempts:
        ref = TaskRef.parse(attempt.owner)
        if ref is not None:
            seen.setdefault((ref.dag_id, ref.run_id), ref)
    return list(seen.values())
