"""What the Image builds pages show, as plain data: a page of the builds list, and one build as a
timeline with its attempts, host, checkpoints, replays and events, each attempt linked to the
Airflow task instance that made it. Kept apart from the routes so that it is tested without a
server, and the JSON API and the HTML pages show the same thing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from airflow_provider_imagebuild.build.catalog import title_of
from airflow_provider_imagebuild.build.record import (
    ABANDONED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    Attempt,
    BuildRecord,
    parse_ts,
)
from airflow_provider_imagebuild.build.stats import eta, milestone_medians, summary
from airflow_provider_imagebuild.links import TaskRef, dag_id_of, runs_of
from airflow_provider_imagebuild.targets.base import Host, checkpoint_images
from airflow_provider_imagebuild.targets.links import image_links

PENDING = "pending"


def builds_page(
    records: list[BuildRecord],
    readable: Callable[[str], bool],
    *,
    state: int | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A page of the builds list, newest change first: only builds whose DAG the caller may read
    (``readable(dag_id)``, asked once per DAG); an ETA for running builds from the medians of the
    same pipeline's builds."""
    now = now or datetime.now(timezone.utc)
    if state is not None:
        records = [r for r in records if r.current_state == state]
    allowed: dict[str, bool] = {}
    visible = [r for r in records if allowed.setdefault(dag_id_of(r), readable(dag_id_of(r)))]
    medians: dict[str, dict[int, float]] = {}
    rows = []
    for rec in visible[offset : offset + limit]:
        if rec.pipeline not in medians:
            medians[rec.pipeline] = milestone_medians(r for r in visible if r.pipeline == rec.pipeline)
        rows.append({**summary(rec, medians[rec.pipeline], now), "dag_id": dag_id_of(rec)})
    return {"builds": rows, "total": len(visible), "limit": limit, "offset": offset}


def _seconds(start: str, end: str | None, now: datetime) -> float:
    finish = parse_ts(end) if end else now
    return max(0.0, (finish - parse_ts(start)).total_seconds())


def attempt_row(attempt: Attempt, now: datetime) -> dict[str, Any]:
    ref = TaskRef.parse(attempt.owner)
    return {
        "state": attempt.state,
        "title": title_of(attempt.state),
        "attempt": attempt.attempt,
        "kind": attempt.kind,
        "status": attempt.status,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "duration_s": round(_seconds(attempt.started_at, attempt.finished_at, now), 1),
        "owner": attempt.owner,
        "airflow": ref.log_path() if ref else None,
        "try_number": ref.try_number if ref else None,
        "reason": attempt.reason,
        "error": attempt.error if attempt.kind != "skip" else None,
    }


def _milestone_status(rec: BuildRecord, code: int, attempts: list[Attempt]) -> str:
    done = rec.milestones.get(code)
    if done is not None:
        return "skipped" if done.skipped else COMPLETED
    runs = [a for a in attempts if a.kind == "run"]
    if not runs:
        return PENDING
    last = runs[-1].status
    return last if last in (IN_PROGRESS, FAILED, ABANDONED) else PENDING


def build_view(rec: BuildRecord, pipeline_builds: list[BuildRecord], now: datetime | None = None) -> dict[str, Any]:
    """One build for its page: ``pipeline_builds`` (the same pipeline's builds) give the ETA."""
    now = now or datetime.now(timezone.utc)
    timeline = []
    for code in rec.plan:
        attempts = rec.attempts_at(code)
        done = rec.milestones.get(code)
        status = _milestone_status(rec, code, attempts)
        last = attempts[-1] if attempts else None
        outputs = dict(done.outputs) if done else {}
        timeline.append(
            {
                "state": code,
                "title": title_of(code),
                "status": status,
                "current": code == rec.current_state and not rec.delivered,
                "attempts": len([a for a in attempts if a.kind == "run"]),
                "duration_s": round(done.duration_s, 1) if done else None,
                "finished_at": done.completed_at if done else None,
                "owner": done.owner if done else (last.owner if last else None),
                "airflow": _airflow_of(done.owner if done else (last.owner if last else "")),
                "outputs": outputs,
                "images": image_links(rec.cloud, outputs),
                "error": last.error if last is not None and status in (FAILED, ABANDONED) else None,
                "skip_reason": done.skip_reason if done else None,
                "skippable": code not in rec.unskippable,
            }
        )
    host = Host.from_metadata(rec.metadata)
    expected = eta(rec, milestone_medians(pipeline_builds), now) if rec.status == IN_PROGRESS else None
    next_state = rec.next_state
    return {
        "summary": {**summary(rec, milestone_medians(pipeline_builds), now), "dag_id": dag_id_of(rec)},
        "record": rec,
        "timeline": timeline,
        "attempts": [attempt_row(a, now) for a in reversed(rec.attempts)],
        "replays": [attempt_row(a, now) for a in rec.attempts if a.kind == "replay"],
        "host": host,
        "checkpoints": [
            {
                "state": code,
                "title": title_of(code),
                "image": image,
                "link": image_links(rec.cloud, {"checkpoint_image": image}),
            }
            for code, image in sorted(checkpoint_images(rec).items())
        ],
        "events": list(reversed(rec.events)),
        "runs": [{"run_id": r.run_id, "path": r.run_path()} for r in runs_of(rec)],
        "metadata": {k: v for k, v in sorted(rec.metadata.items()) if not k.startswith("host_")},
        "eta": expected,
        # What the action forms offer: reset and redo to any milestone after registration; skip
        # only the next milestone, when the pipeline allows skipping it.
        "reset_choices": [(c, title_of(c)) for c in rec.plan[1:]],
        "skip_choice": (next_state, title_of(next_state))
        if next_state is not None and next_state not in rec.unskippable and rec.status != IN_PROGRESS
        else None,
    }


def _airflow_of(owner: str) -> str | None:
    ref = TaskRef.parse(owner)
    return ref.log_path() if ref else None
