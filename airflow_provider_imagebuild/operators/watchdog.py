"""The ``imagebuild_watchdog`` DAG's task: stuck builds marked and announced, failed builds past
their ``on_failure.abandon_after`` abandoned and announced (see :mod:`..watchdog`), and the leak
collector run for the pipelines whose ``on_failure.gc`` asks, its report announced as ``leaks``.

One task per deployment, every 10 minutes, over every pipeline whose spec has a ``notify`` block
or an ``abandon_after``: their stores are read (never Airflow's metadata database), the pipeline's
delivered builds give each milestone's p90, and a stuck milestone attempt is marked in the build's
metadata (an event in its history) and sent as ``stuck`` once. A build due for abandon is abandoned
through :mod:`..lifecycle` (what it holds deleted through the pipeline's target) and sent as
``abandoned`` to every recipient of its ``notify``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_imagebuild.spec.notify import NotifySpec

if TYPE_CHECKING:
    from airflow_provider_imagebuild.build.record import BuildRecord
    from airflow_provider_imagebuild.spec.pipeline import PipelineSpec
    from airflow_provider_imagebuild.store import BuildStore
    from airflow_provider_imagebuild.watchdog import Stuck

WATCHDOG = "imagebuild_watchdog"  # the actor of what the watchdog records


@dataclass(frozen=True)
class Watched:
    """A pipeline the watchdog looks after: its store, who hears of it (``notify``, None: nobody:
    stuck builds are not looked for) and its spec, whose ``on_failure.abandon_after`` (None:
    never) and target settings the abandon uses."""

    pipeline: str
    store: str | None
    store_conn_id: str | None
    notify: NotifySpec | None
    spec: PipelineSpec | None = None

    @property
    def abandon_after(self) -> timedelta | None:
        return self.spec.on_failure.abandon_after if self.spec is not None else None


class WatchdogOperator(BaseOperator):
    ui_color = "#f5e6e6"

    def __init__(self, *, watched: Sequence[Watched], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.watched = tuple(watched)

    def execute(self, context: Any) -> dict[str, list[str]]:
        """Watch every pipeline, each build on its own: a record that cannot be read or judged is
        reported by build id (never with its content) and the others are still watched; a
        pipeline whose store cannot be read fails the task, but only after the other pipelines.
        Returns the builds marked stuck per pipeline, and those abandoned under ``abandoned``."""
        from airflow.sdk.exceptions import AirflowException

        from airflow_provider_imagebuild.hooks.store_choice import store_for
        from airflow_provider_imagebuild.store import ListFilter
        from airflow_provider_imagebuild.watchdog import abandon_due, gc_due, milestone_p90, stuck_in

        now = datetime.now(timezone.utc)
        marked: dict[str, list[str]] = {}
        unwatched: list[str] = []
        uncollected: list[str] = []
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
                    after = item.abandon_after
                    why = abandon_due(rec, after, now) if after is not None else None
                    if why is not None:
                        self.abandon(item, store, rec, why, now)
                        marked.setdefault("abandoned", []).append(rec.build_id)
                        continue
                    stuck = stuck_in(rec, p90, now, item.notify.stuck_after) if item.notify is not None else None
                    if stuck is not None and self.announce(item, store, stuck, now):
                        marked.setdefault(item.pipeline, []).append(rec.build_id)
                except Exception as exc:  # one build never stops the watch of the others
                    self.log.error("%s: build %s not watched this time (%s)", item.pipeline, rec.build_id, _what(exc))
            gc = item.spec.on_failure.gc if item.spec is not None else None
            if gc is not None and gc_due(gc.every, *_interval(context, now)):
                try:
                    marked.setdefault("leaks", []).append(f"{item.pipeline}: {self.collect_leaks(item, now)}")
                except Exception as exc:  # one pipeline's collector never stops the others'
                    self.log.error("%s: leaks not collected this time: %s", item.pipeline, exc)
                    uncollected.append(f"{item.pipeline} ({type(exc).__name__}: {exc})")
        if unwatched:
            raise AirflowException(f"stuck builds not looked for in {'; '.join(unwatched)}")
        if uncollected:
            raise AirflowException(f"leaks not collected in {'; '.join(uncollected)}")
        unretained = [self.retain_due(item, context, now, marked) for item in self.watched]
        if any(unretained):
            raise AirflowException(f"retention not applied in {'; '.join(u for u in unretained if u)}")
        return marked

    def retain_due(self, item: Watched, context: Any, now: datetime, marked: dict[str, list[str]]) -> str:
        """Apply the pipeline's ``retention`` when its ``every`` falls in this run (each period's
        first run, as ``on_failure.gc``), as ``imagebuild retention --apply`` does: deletions proven
        and recorded on each build's history by the watchdog. Its count goes under ``retired``; ""
        when done or not due, else what went wrong (the other pipelines are still looked after)."""
        from airflow_provider_imagebuild.watchdog import gc_due

        retention = item.spec.retention if item.spec is not None else None
        if retention is None or retention.every is None or not gc_due(retention.every, *_interval(context, now)):
            return ""
        from airflow_provider_imagebuild.cli.retention import retain

        try:
            result = retain(item.spec, True, WATCHDOG)
        except Exception as exc:  # one pipeline's retention never stops the others'
            self.log.error("%s: retention not applied this time: %s", item.pipeline, exc)
            return f"{item.pipeline} ({type(exc).__name__}: {exc})"
        rows = [r for d in result["destinations"] for r in d["images"]]
        done = [f"{r['name'] or r['id']} {r['done']}" for r in rows if r.get("done")]
        self.log.info("%s: retention: %s; %d kept", item.pipeline, ", ".join(done) or "nothing past it",
                      sum(1 for r in rows if not r["retire"]))  # fmt: skip
        marked.setdefault("retired", []).append(f"{item.pipeline}: {len(done)}")
        failures = result.get("failures") or []
        return f"{item.pipeline} ({len(failures)} not retired: {failures[0]})" if failures else ""

    def collect_leaks(self, item: Watched, now: datetime) -> int:
        """Run the leak collector (``imagebuild gc``) for the pipeline as its ``on_failure.gc`` says
        (deleting only with ``apply``) and tell the pipeline's notify recipients what it found
        (``leaks``, a pipeline's event); the number of leaks found."""
        from urllib.parse import quote

        from airflow_provider_imagebuild.cli.gc import collect
        from airflow_provider_imagebuild.links import UI_ROUTE, URL_PREFIX
        from airflow_provider_imagebuild.notify import Notice, send
        from airflow_provider_imagebuild.operators.links import airflow_address
        from airflow_provider_imagebuild.watchdog import leak_report

        assert item.spec is not None and item.spec.on_failure.gc is not None
        spec, gc = item.spec, item.spec.on_failure.gc
        result = collect([spec], gc.older_than, gc.apply)
        if not result["leaks"] and not result.get("unjudged"):
            self.log.info("%s: no leaked resources (%d of its own kept)", item.pipeline, result["kept"])
            return 0
        report = leak_report(result, gc.apply)
        self.log.warning("%s: %s", item.pipeline, report)
        if item.notify is not None:
            page = f"{airflow_address()}/plugin/{UI_ROUTE}{URL_PREFIX}/builds?pipeline={quote(item.pipeline)}"
            notice = Notice(event="leaks", build_id="", pipeline=spec.pipeline, cloud=spec.cloud,
                            image_type=spec.image_type, milestone=None, milestone_name="", status="", attempt=None,
                            error=report, build_page=page, at=now.isoformat())  # fmt: skip
            send(item.notify, notice, warn=self.log.warning)
        return len(result["leaks"])

    def abandon(self, item: Watched, store: BuildStore, rec: BuildRecord, why: str, now: datetime) -> None:
        """Abandon ``rec`` (its holdings deleted through the pipeline's target) and say so."""
        from airflow_provider_imagebuild.lifecycle import abandon_build, target_of, tell_abandoned

        target, no_target = None, ""
        if item.spec is not None:
            try:
                target = target_of(item.spec)
            except Exception as exc:  # a connection missing: abandoned all the same, nothing deleted
                no_target = f"the {item.spec.cloud} target could not be reached: {type(exc).__name__}: {exc}"[:500]
        done = abandon_build(store, rec.build_id, reason=why, actor=WATCHDOG, target=target, no_target_why=no_target)
        self.log.warning("build %s abandoned: %s", rec.build_id, done.summary(why))
        tell_abandoned(item.notify, done, why, warn=self.log.warning)

    def tell(
        self,
        notify: NotifySpec,
        event: str,
        rec: BuildRecord,
        state: int,
        attempt: int | None,
        error: str,
        now: datetime,
    ) -> list[str]:
        """Send ``event`` about ``rec`` to the pipeline's recipients; the kinds that took it."""
        from airflow_provider_imagebuild.links import build_page
        from airflow_provider_imagebuild.notify import Notice, send
        from airflow_provider_imagebuild.operators.links import airflow_address

        notice = Notice(event=event, build_id=rec.build_id, pipeline=rec.pipeline, cloud=rec.cloud,
                        image_type=rec.image_type, milestone=state, milestone_name=rec.title(state),
                        status=rec.status, attempt=attempt, error=error,
                        build_page=build_page(rec.build_id, airflow_address()), at=now.isoformat())  # fmt: skip
        return send(notify, notice, warn=self.log.warning)

    def announce(self, item: Watched, store: BuildStore, stuck: Stuck, now: datetime) -> bool:
        """Mark ``stuck`` in its build's metadata and send it, once per milestone attempt; whether
        it was new."""
        from airflow_provider_imagebuild.watchdog import STUCK_MARK

        assert item.notify is not None  # stuck builds are looked for where someone hears of them
        rec = stuck.build
        if rec.metadata.get(f"{STUCK_MARK}{stuck.state}", "").startswith(stuck.key):
            return False  # marked and announced already
        store.set_metadata(rec.build_id, {f"{STUCK_MARK}{stuck.state}": f"{stuck.key}: {stuck.why}"[:1000]},
                           actor=WATCHDOG)  # fmt: skip
        sent = self.tell(item.notify, "stuck", rec, stuck.state, stuck.attempt, stuck.why, now)
        self.log.warning("build %s is stuck: %s (told: %s)", rec.build_id, stuck.why, ", ".join(sent) or "nobody")
        return True


WATCHDOG_PERIOD = timedelta(minutes=10)  # the watchdog DAG's schedule (dag_factory.build_watchdog_dag)


def _interval(context: Any, now: datetime) -> tuple[datetime, datetime]:
    """The run's data interval (a scheduled run covers the 10 minutes before it), else the last 10
    minutes (a run triggered by hand)."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if isinstance(start, datetime) and isinstance(end, datetime) and end > start:
        return start, end
    return now - WATCHDOG_PERIOD, now


def _what(exc: Exception) -> str:
    """An error named without the record's content: its kind, and the field for bad input."""
    field = getattr(exc, "field", None)
    return f"{type(exc).__name__}" + (f" in {field}" if isinstance(field, str) else "")
