"""What a person asks of a build besides its record: how far it is, how long it took, and when a
running one will be done, estimated from the history of the same pipeline.

Pure functions of records (no store, no Airflow): the operator's UI and the CLI read the same
figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_imagebuild.build.record import IN_PROGRESS, BuildRecord, format_ts, parse_ts
from airflow_provider_imagebuild.build.status import build_status


def milestone_medians(records: Iterable[BuildRecord]) -> dict[int, float]:
    """The median duration of each milestone over the builds given (skipped ones left out)."""
    samples: dict[int, list[float]] = {}
    for rec in records:
        for code, done in rec.milestones.items():
            if code != rec.plan[0] and not done.skipped:
                samples.setdefault(code, []).append(done.duration_s)
    return {code: statistics.median(values) for code, values in samples.items()}


def eta(rec: BuildRecord, medians: dict[int, float], now: datetime) -> datetime | None:
    """When a running build will be done: now plus the median duration of each milestone still to
    do (the one running counted from when it started). None when it is not running or a remaining
    milestone has no history to go by."""
    if rec.status != IN_PROGRESS or rec.lease is None:
        return None
    remaining = 0.0
    for code in rec.plan:
        if code in rec.milestones:
            continue
        if code not in medians:
            return None
        expected = medians[code]
        if code == rec.lease.state:
            expected = max(expected - (now - parse_ts(rec.lease.acquired_at)).total_seconds(), 0.0)
        remaining += expected
    return now + timedelta(seconds=remaining)


def summary(rec: BuildRecord, medians: dict[int, float] | None = None, now: datetime | None = None) -> dict[str, Any]:
    """One row of a builds list."""
    end = rec.delivered_at or rec.updated_at
    expected = eta(rec, medians, now) if medians is not None and now is not None else None
    return {
        "build_id": rec.build_id,
        "pipeline": rec.pipeline,
        "cloud": rec.cloud,
        "image_type": rec.image_type,
        "os": rec.os,
        "current_state": rec.current_state,
        "current_title": rec.title(rec.current_state),
        "status": rec.status,
        "build_status": build_status(rec, now),
        "delivered": rec.delivered,
        "progress": {"done": len(rec.completed), "total": len(rec.plan), "skipped": len(rec.skipped)},
        "started_at": rec.created_at,
        "updated_at": rec.updated_at,
        "duration_s": round((parse_ts(end) - parse_ts(rec.created_at)).total_seconds(), 3),
        "eta": format_ts(expected) if expected is not None else None,
    }
