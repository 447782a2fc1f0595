"""What a build cost, from its record and its pipeline's prices: per attempt, per milestone, per build.

Pure functions of a :class:`BuildRecord` and :class:`~.prices.Prices` (no store, no cloud). What an
attempt used is in its ``usage`` (written by the milestone operator when the attempt ends, see
:data:`~.record.USAGE_KEYS`):

- **host time**: ``host_hours`` of a build host of ``host_size`` (the attempt's begin..end while the
  build had a host), priced per hour of that size;
- **transfer**: ``transfer_gb`` copied between regions or accounts (publish), priced per GB;
- **checkpoint storage**: ``checkpoint_gb`` of the checkpoint image the attempt captured, priced per
  GB-month over its lifetime: from the milestone's completion to the seal's recorded deletion of
  it (the ``checkpoints_discarded`` metadata event) or to the build's abandon that released it,
  or to ``now`` while it is still kept. It is
  counted on the milestone that captured it (a checkpoint's storage is part of what that milestone
  cost), once, for the attempt whose result the record holds.

A milestone a build took from an earlier build (an attempt of kind ``reused``, #32: nothing changed
up to it, build/reuse.py) cost nothing: no host ran. It is neither priced nor unmetered, but listed
in ``reused_milestones``; ``saved_by_reuse`` is what those milestones cost the build that did them
(the attempt whose result it holds, followed to the build that ran it when that one reused it in
turn), when every such build's record is at hand (None otherwise: a sum missing some would
understate it).

Not counted: a host's idle time between attempts (a failed build left running is a leak, which
``imagebuild gc`` estimates), and attempts without ``usage`` (older records, steps recorded from a
shell with ``imagebuild build complete``): they are counted in ``unmetered_attempts`` instead of
being priced at a guess.

Definitions the report uses:

- ``milestone_costs``: per milestone of the plan, the cost of every attempt at it (failed retries
  and replays on a relaunched host included) plus the storage of its checkpoint.
- ``cost_of_failures``: the cost of the attempts that ended ``failed``.
- ``cost_saved_by_resumes``: for each resumed failure (a failed run attempt that a later attempt of
  the same build followed), what a monolithic rerun from scratch would have repeated and the resume
  did not: the cost of the attempts that completed the milestones reached before the failure
  (registration excluded, as in ``time_saved_by_resumes_s``), minus what the resume itself paid to
  get back there (the ``replay`` attempts after the failure and before the next run attempt, when
  the host had to be relaunched; a replay carries the host time of its playbook, which the attempt
  that did it leaves out of its own). Never below zero for one failure. The failed milestone's own
  retry is left out on both sides: a rerun and a resume both pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_imagebuild.build.checkpoints import CHECKPOINT_OUTPUT, DISCARDED_METADATA, discarded_checkpoints
from airflow_provider_imagebuild.build.prices import HOURS_PER_MONTH, Prices
from airflow_provider_imagebuild.build.provenance import reused_milestones
from airflow_provider_imagebuild.build.record import FAILED, REUSED, SKIPPED, Attempt, BuildRecord, parse_ts


def money(amount: float | None, currency: str = "") -> str:
    """``12.34 USD``; four places under one unit (minutes of a small host cost fractions of a cent)."""
    if amount is None:
        return "-"
    shown = f"{amount:.2f}" if amount >= 1 or amount == 0 else f"{amount:.4f}" if amount >= 0.0001 else f"{amount:.6f}"
    return f"{shown} {currency}".strip()


@dataclass(frozen=True)
class BuildCost:
    """A build's cost, rounded to 6 places (seconds of a small host are millionths); :func:`money`
    shows it."""

    total: float
    milestones: dict[int, float]
    failures: float
    saved_by_resumes: float
    unmetered_attempts: int
    currency: str
    reused_milestones: tuple[int, ...] = ()  # taken from an earlier build: cost nothing here
    saved_by_reuse: float | None = 0.0  # what they cost the build that ran them; None: not known

    def to_public(self) -> dict[str, Any]:
        """As the report, the API and the pages show it (``text``: the total with its currency)."""
        return {
            "text": money(self.total, self.currency),
            "total": self.total,
            "currency": self.currency,
            "milestones": {str(c): v for c, v in self.milestones.items()},
            "cost_of_failures": self.failures,
            "cost_saved_by_resumes": self.saved_by_resumes,
            "unmetered_attempts": self.unmetered_attempts,
            "reused_milestones": list(self.reused_milestones),
            "cost_saved_by_reuse": self.saved_by_reuse,
        }


def _number(usage: Mapping[str, Any], key: str) -> float:
    value = usage.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0.0


def attempt_cost(attempt: Attempt, prices: Prices) -> float:
    """Host time and transfer of one attempt (its checkpoint's storage is the milestone's)."""
    usage = attempt.usage or {}
    cost = 0.0
    hours = _number(usage, "host_hours")
    size = usage.get("host_size")
    hourly = prices.host_hourly(size if isinstance(size, str) else None)
    if hours and hourly:
        cost += hours * hourly
    transfer = _number(usage, "transfer_gb")
    if transfer and prices.transfer_gb:
        cost += transfer * prices.transfer_gb
    return cost


def _discarded_at(rec: BuildRecord) -> str | None:
    """When the seal recorded the checkpoints it deleted (the last such metadata event)."""
    found = [e.at for e in rec.events if e.kind == "metadata" and DISCARDED_METADATA in e.detail.split(", ")]
    return max(found) if found else None


def checkpoint_storage_cost(rec: BuildRecord, code: int, prices: Prices, now: datetime) -> float:
    """The storage of the checkpoint milestone ``code`` captured, over its lifetime so far."""
    done = rec.milestones.get(code)
    if done is None or done.skipped or not done.outputs.get(CHECKPOINT_OUTPUT) or not prices.storage_gb_month:
        return 0.0
    by = next((a for a in rec.attempts if a.state == code and a.attempt == done.attempt and a.kind == "run"), None)
    gb = _number(by.usage or {}, "checkpoint_gb") if by is not None else 0.0
    if not gb:
        return 0.0
    created = parse_ts(done.completed_at)
    deleted_at = _discarded_at(rec) if (code, done.attempt) in discarded_checkpoints(rec) else None
    if deleted_at is None and rec.abandoned_at and str(done.outputs[CHECKPOINT_OUTPUT]) in rec.released:
        deleted_at = rec.abandoned_at  # the abandon deleted it (what it released is recorded on its way)
    until = parse_ts(deleted_at) if deleted_at and deleted_at >= done.completed_at else now
    hours = max((until - created).total_seconds(), 0.0) / 3600
    return gb * prices.storage_gb_month * hours / HOURS_PER_MONTH


def _saved(rec: BuildRecord, prices: Prices) -> float:
    """``cost_saved_by_resumes`` of one build (see the module docstring)."""
    saved = 0.0
    for i, failed in enumerate(rec.attempts):
        if failed.kind != "run" or failed.status != FAILED:
            continue
        later = rec.attempts[i + 1 :]
        next_run = next((j for j, a in enumerate(later) if a.kind == "run"), None)
        if next_run is None:
            continue  # never resumed: nothing saved (yet)
        done_before = [
            code
            for code, done in rec.milestones.items()
            if not done.skipped and code != rec.plan[0] and done.completed_at <= failed.started_at
        ]
        repeated = sum(
            attempt_cost(a, prices)
            for a in rec.attempts
            if a.kind == "run" and a.state in done_before and a.attempt == rec.milestones[a.state].attempt
        )
        replays = sum(attempt_cost(a, prices) for a in later[:next_run] if a.kind == "replay")
        saved += max(repeated - replays, 0.0)
    return saved


def _saved_by_reuse(
    rec: BuildRecord, codes: tuple[int, ...], prices: Prices, records: Mapping[str, BuildRecord] | None
) -> float | None:
    """What the milestones ``codes`` cost the builds that ran them (see the module docstring)."""
    if not codes:
        return 0.0
    if records is None:
        return None
    saved = 0.0
    for code in codes:
        seen: set[str] = set()
        attempt = rec.completed_attempt(code)
        while attempt is not None and attempt.kind == REUSED and attempt.reused_from:
            name, state = str(attempt.reused_from["build_id"]), int(attempt.reused_from["state"])
            if name in seen:
                return None  # a loop a hand-written record made: no build ran it
            seen.add(name)
            source = records.get(name)
            if source is not None and (source.pipeline, source.cloud) != (rec.pipeline, rec.cloud):
                source = None  # the same id in another pipeline's store (the report reads several)
            attempt = source.completed_attempt(state) if source is not None else None
        if attempt is None:
            return None  # the build that ran it is pruned, or never recorded it
        saved += attempt_cost(attempt, prices)
    return saved


def build_cost(
    rec: BuildRecord,
    prices: Prices,
    now: datetime | None = None,
    records: Mapping[str, BuildRecord] | None = None,
) -> BuildCost:
    """The cost of ``rec`` at ``now`` (checkpoints still kept are stored until then); ``records``:
    the pipeline's builds by id, where at hand, for what reuse saved (None without them)."""
    moment = now or datetime.now(timezone.utc)
    per: dict[int, float] = {}
    for attempt in rec.attempts:
        if attempt.state != rec.plan[0] and attempt.kind != REUSED:  # registration and reuse ran nothing
            per[attempt.state] = per.get(attempt.state, 0.0) + attempt_cost(attempt, prices)
    for code in rec.plan:
        storage = checkpoint_storage_cost(rec, code, prices, moment)
        if storage or code in per:
            per[code] = per.get(code, 0.0) + storage
    failures = sum(attempt_cost(a, prices) for a in rec.attempts if a.status == FAILED)
    unmetered = sum(
        1
        for a in rec.attempts
        if a.finished_at is not None
        and a.usage is None
        and a.state != rec.plan[0]
        and a.status != SKIPPED
        and a.kind != REUSED  # nothing ran: nothing to meter
        and not (a.kind == "replay" and a.started_at == a.finished_at)  # before replays had usage: inside their run
    )
    reused = tuple(reused_milestones(rec))
    saved_by_reuse = _saved_by_reuse(rec, reused, prices, records)
    return BuildCost(
        total=round(sum(per.values()), 6),
        milestones={c: round(per[c], 6) for c in rec.plan if c in per},
        failures=round(failures, 6),
        saved_by_resumes=round(_saved(rec, prices), 6),
        unmetered_attempts=unmetered,
        currency=prices.currency,
        reused_milestones=reused,
        saved_by_reuse=round(saved_by_reuse, 6) if saved_by_reuse is not None else None,
    )
