"""The stuck-build watchdog: builds nobody is working on, or that sit in a milestone far longer
than that milestone usually takes.

A build is *stuck* when it is in progress and either

- its lease expired and nobody took the build over: the task that held it died with its worker,
  and no retry came (a paused DAG, a scheduler down, retries used up by a killed task); or
- it has been in its current milestone longer than ``stuck_after`` (the spec's ``notify``) times
  that milestone's p90 over the pipeline's delivered builds: a hung Packer wait, an Ansible task
  waiting on a prompt.

Each stuck milestone attempt is marked once in the build's metadata (``stuck.<milestone>`` = the
attempt and why), which also records an event in its history, and announced once as ``stuck``.

A build is *due for abandon* when its spec says ``on_failure.abandon_after`` and it has been
failed (its milestone failed, or its worker's lease expired) with no attempt begun or ended for
that long: nobody resumed it, and its host and checkpoints cost money every hour. The watchdog
abandons it (:mod:`.lifecycle`: what it holds is deleted, ``begin`` refused from then on) and
announces ``abandoned``.

Pure functions here; :mod:`.operators.watchdog` runs them every 10 minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_imagebuild.build.record import IN_PROGRESS, BuildRecord, parse_ts
from airflow_provider_imagebuild.build.report import percentile
from airflow_provider_imagebuild.build.status import BUILD_FAILED, build_status

STUCK_MARK = "stuck."


@dataclass(frozen=True)
class Stuck:
    build: BuildRecord
    state: int
    attempt: int
    why: str

    @property
    def key(self) -> str:
        return f"{self.state}@{self.attempt}"


def milestone_p90(history: Iterable[BuildRecord]) -> dict[int, float]:
    """The p90 duration of each milestone over delivered builds."""
    samples: dict[int, list[float]] = {}
    for rec in history:
        if rec.delivered:
            for code, done in rec.milestones.items():
                if not done.skipped and code != rec.plan[0]:
                    samples.setdefault(code, []).append(done.duration_s)
    return {code: percentile(values, 0.9) for code, values in samples.items()}


def stuck_in(rec: BuildRecord, p90: dict[int, float], now: datetime, factor: float) -> Stuck | None:
    """Whether ``rec`` is stuck (see the module's docstring), and why. One record at a time: the
    watchdog reports a record it cannot judge and goes on with the others."""
    if rec.status != IN_PROGRESS or rec.delivered:
        return None
    attempts = [a for a in rec.attempts if a.state == rec.current_state and a.kind == "run"]
    if not attempts:
        return None
    attempt = attempts[-1]
    lease = rec.lease
    if lease is not None and parse_ts(lease.expires_at) < now:
        why = f"its lease (owner {lease.owner}) expired at {lease.expires_at} and no task took the build over"
        return Stuck(rec, rec.current_state, attempt.attempt, why)
    usual = p90.get(rec.current_state)
    running = (now - parse_ts(attempt.started_at)).total_seconds()
    if usual and running > factor * usual:
        why = (f"milestone {rec.current_state} has run {running:.0f} s, over {factor:g} x its p90 of {usual:.0f} s "
               "in the pipeline's delivered builds")  # fmt: skip
        return Stuck(rec, rec.current_state, attempt.attempt, why)
    return None


def last_activity(rec: BuildRecord) -> str:
    """When an attempt of the build last began or ended (its registration if none did)."""
    stamps = [a.finished_at or a.started_at for a in rec.attempts]
    return max([rec.created_at, *stamps])


def abandon_due(rec: BuildRecord, after: timedelta, now: datetime) -> str | None:
    """Why ``rec`` is due for abandon after ``after`` without a resume (see the module's
    docstring), or None. A delivered, abandoned, running or waiting build never is."""
    if rec.abandoned or rec.delivered or build_status(rec, now) != BUILD_FAILED:
        return None
    idle = now - parse_ts(last_activity(rec))
    if idle < after:
        return None
    return (
        f"failed at milestone {rec.label(rec.current_state)} and not resumed for {_span(idle)} "
        f"(on_failure.abandon_after: {_span(after)})"
    )


def _span(delta: timedelta) -> str:
    """``7d``, ``36h``, ``90m``: a duration as the spec writes it, to the unit that fits."""
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and (seconds % size == 0 or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def gc_due(every: timedelta, start: datetime, end: datetime) -> bool:
    """Whether the leak collector's turn (``on_failure.gc.every``, counted from the Unix epoch in
    UTC, so every watchdog agrees without keeping state) falls in the watchdog run's interval
    ``[start, end)``: each period's first run collects."""
    period = every.total_seconds()
    return int(end.timestamp() // period) > int(start.timestamp() // period) or (
        start.timestamp() % period == 0 and end > start
    )


LISTED_LEAKS = 20  # a report names this many leaks; the rest are counted


def leak_report(result: Mapping[str, Any], applied: bool) -> str:
    """What ``imagebuild gc`` found for a pipeline (its ``collect`` answer), as a notification's
    text: the count, the estimated cost, what was deleted (or that it was a dry run), then each
    leak with its reason and age."""
    rows: list[dict[str, Any]] = [r for r in result.get("leaks") or [] if isinstance(r, dict)]
    unjudged = result.get("unjudged") or []
    costs = [r["estimated_cost"] for r in rows if isinstance(r.get("estimated_cost"), (int, float))]
    currency = next((str(r.get("currency")) for r in rows if r.get("currency")), "")
    older = _span(timedelta(seconds=float(result.get("older_than_s") or 0)))
    head = f"{len(rows)} leaked resource(s) older than {older}"
    if costs:
        head += f", about {sum(costs):.2f} {currency} so far"
    if applied:
        deleted = sum(1 for r in rows if r.get("deleted"))
        failed = [r for r in rows if r.get("error")]
        head += f"; deleted {deleted}" + (f", {len(failed)} refused" if failed else "")
    else:
        head += "; dry run, nothing deleted (on_failure.gc.apply: false; imagebuild gc --apply deletes them)"
    if unjudged:
        head += f"; {len(unjudged)} left alone, not judged"
    named = [f"{r.get('kind')} {r.get('id')} ({r.get('reason')}, {_age(r.get('age_s'))})" for r in rows[:LISTED_LEAKS]]
    more = f"; and {len(rows) - LISTED_LEAKS} more" if len(rows) > LISTED_LEAKS else ""
    return head + (": " + "; ".join(named) + more if named else "")


def _age(seconds: object) -> str:
    return _span(timedelta(seconds=float(seconds))) if isinstance(seconds, (int, float)) else "age unknown"
