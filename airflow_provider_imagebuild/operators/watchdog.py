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
from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_imagebuild.spec_notify import NotifySpec


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
        from airflow_provider_imagebuild.build.catalog import title_of
        from airflow_provider_imagebuild.hooks.build_state import store_for
        from airflow_provider_imagebuild.links import build_page
        from airflow_provider_imagebuild.notify import Notice, send
        from airflow_provider_imagebuild.operators.links import airflow_address
        from airflow_provider_imagebuild.store import ListFilter
        from airflow_provider_imagebuild.watchdog import STUCK_MARK, milestone_p90, stuck_builds

        now = datetime.now(timezone.utc)
        marked: dict[str, list[str]] = {}
        for item in self.watched:
            store = store_for(item.store, item.store_conn_id)
            records, problems = store.scan_builds(ListFilter.checked(pipeline=item.pipeline))
            for problem in problems:
                self.log.warning("%s: %s (not watched)", item.pipeline, problem)
            for stuck in stuck_builds(records, milestone_p90(records), now, item.notify.stuck_after):
                rec = stuck.build
                if rec.metadata.get(f"{STUCK_MARK}{stuck.state}", "").startswith(stuck.key):
                    continue  # marked and announced already
                store.set_metadata(rec.build_id, {f"{STUCK_MARK}{stuck.state}": f"{stuck.key}: {stuck.why}"[:1000]},
                                   actor="imagebuild_watchdog")  # fmt: skip
                notice = Notice(event="stuck", build_id=rec.build_id, pipeline=rec.pipeline, cloud=rec.cloud,
                                image_type=rec.image_type, milestone=stuck.state, milestone_name=title_of(stuck.state),
                                status=rec.status, attempt=stuck.attempt, error=stuck.why,
                                build_page=build_page(rec.build_id, airflow_address()), at=now.isoformat())  # fmt: skip
                sent = send(item.notify, notice, warn=self.log.warning)
                self.log.warning(
                    "build %s is stuck: %s (told: %s)", rec.build_id, stuck.why, ", ".join(sent) or "nobody"
                )
                marked.setdefault(item.pipeline, []).append(rec.build_id)
        return marked
