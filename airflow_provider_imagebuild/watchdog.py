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
Pure functions here; :mod:`.operators.watchdog` runs them every 10 minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from airflow_provider_imagebuild.build.record import IN_PROGRESS, BuildRecord, parse_ts
from airflow_provider_imagebuild.build.report import percentile

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
