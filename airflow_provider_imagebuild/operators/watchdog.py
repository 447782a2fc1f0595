"""The ``imagebuild_watchdog`` DAG's task: stuck builds marked and announced (see :mod:`..watchdog`).

One task per deployment, every 10 minutes, over every pipeline whose spec has a ``notify`` block:
their stores are read (never Airflow's metadata database), the pipeline's delivered builds give
each milestone's p90, and a stuck milestone attempt is marked in the build's metadata (an event
in its history) and sent as ``stuck`` once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_imagebuild.spec_notify import NotifySpec

if TYPE_CHECKING:
    from airflow_provider_imagebuild.store import BuildStore
    from airflow_provider_imagebuild.watchdog import Stuck


@dataclass(frozen=True)
class Watched:
    pipeline: str
    store: str | None
    store_conn_id: str | None
    notify: NotifySpec


class WatchdogOperator(BaseOperator):
    ui_color = "#f5e6e6"

    def __init__(self, *, watched: Sequence[Watched], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watched = tuple(watched)

    def execute(self, context: Any) -> dict[str, list[str]]:
        """Watch every pipeline, each build on its own: a record that cannot be read or judged is
        reported by build id (never with its content) and the others are still watched; a
        pipeline whose store cannot be read fails the task, but only after the other pipelines."""
        from airflow.sdk.exceptions import AirflowException

        from airflow_provider_imagebuild.hooks.build_state import store_for
        from airflow_provider_imagebuild.store import ListFilter
        from airflow_provider_imagebuild.watchdog import milestone_p90, stuck_in

        now = datetime.now(timezone.utc)
        marked: dict[str, list[str]] = {}
        unwatched: list[str] = []
        for item in self.watched:
            try:
                store = store_for(item.store, item.store_conn_id)
                records, problems = store.scan_builds(ListFilter.checked(pipeline=item.pipeline))
            except Exception as exc:  # one pipeline's store never stops the watch of the others
                self.log.error("%s: its store cannot be read, not watched this time: %s", item.pipeline, exc)
                unwatched.append(f"{item.pipeline} ({type(exc).__name__}: {exc})")
                continue
            for problem in problems:
                self.log.warning("%s: %s (not watched)", item.pipeline, problem)
            p90 = milestone_p90(records)
            for rec in records:
                try:
                    stuck = stuck_in(rec, p90, now, item.notify.stuck_after)
                    if stuck is not None and self.announce(item, store, stuck, now):
                        marked.setdefault(item.pipeline, []).append(rec.build_id)
                except Exception as exc:  # one build never stops the watch of the others
                    self.log.error("%s: build %s not watched this time (%s)", item.pipeline, rec.build_id, _what(exc))
        if unwatched:
            raise AirflowException(f"stuck builds not looked for in {'; '.join(unwatched)}")
        return marked

    def announce(self, item: Watched, store: BuildStore, stuck: Stuck, now: datetime) -> bool:
        """Mark ``stuck`` in its build's metadata and send it, once per milestone attempt; whether
        it was new."""
        from airflow_provider_imagebuild.links import build_page
        from airflow_provider_imagebuild.notify import Notice, send
        from airflow_provider_imagebuild.operators.links import airflow_address
        from airflow_provider_imagebuild.watchdog import STUCK_MARK

        rec = stuck.build
        if rec.metadata.get(f"{STUCK_MARK}{stuck.state}", "").startswith(stuck.key):
            return False  # marked and announced already
        store.set_metadata(rec.build_id, {f"{STUCK_MARK}{stuck.state}": f"{stuck.key}: {stuck.why}"[:1000]},
                           actor="imagebuild_watchdog")  # fmt: skip
        notice = Notice(event="stuck", build_id=rec.build_id, pipeline=rec.pipeline, cloud=rec.cloud,
                        image_type=rec.image_type, milestone=stuck.state, milestone_name=rec.title(stuck.state),
                        status=rec.status, attempt=stuck.attempt, error=stuck.why,
                        build_page=build_page(rec.build_id, airflow_address()), at=now.isoformat())  # fmt: skip
        sent = send(item.notify, notice, warn=self.log.warning)
        self.log.warning("build %s is stuck: %s (told: %s)", rec.build_id, stuck.why, ", ".join(sent) or "nobody")
        return True


def _what(exc: Exception) -> str:
    """An error named without the record's content: its kind, and the field for bad input."""
    field = getattr(exc, "field", None)
    return f"{type(exc).__name__}" + (f" in {field}" if isinstance(field, str) else "")
