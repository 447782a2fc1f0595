"""Asking for an approval and recording the decision in a build's store.

The same two writes serve every way a person decides: Airflow's respond page (the approval task,
:mod:`.operators.approval`), ``imagebuild build approve|reject`` (a shell or Concourse pipeline) and
a timeout. The decision is the milestone's attempt (:mod:`.build.approval`): the lease is taken in
the decider's name and at once completed (approved) or failed (rejected, the comment as the error),
so the history says who decided, when, what, and why, like any other attempt.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow_provider_imagebuild.build.approval import (
    awaiting_approval,
    clean_comment,
    decision_outputs,
    rejection_error,
    request_key,
    request_value,
    requested_at,
)
from airflow_provider_imagebuild.build.record import BuildRecord, format_ts
from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.store import BuildStore

DECISION_LEASE_SECONDS = 60  # begin and complete follow each other at once


def request_approval(store: BuildStore, build_id: str, code: int, actor: str) -> BuildRecord:
    """Record that milestone ``code`` waits for a decision from now on (a repeated request of the
    same wait keeps its first time: a task resumed twice does not restart the wait)."""
    rec = store.get(build_id)
    if awaiting_approval(rec, code) is not None:
        return rec
    at = format_ts(datetime.now(timezone.utc))
    return store.set_metadata(build_id, {request_key(code): request_value(rec, code, at)}, actor=actor)


def not_waiting_why(rec: BuildRecord, code: int) -> str:
    """Why a decision on ``code`` is refused: what the build is doing instead."""
    label = f"milestone {rec.label(code)} of build {rec.build_id}"
    done = rec.milestones.get(code)
    if done is not None:
        how = "skipped" if done.skipped else f"completed by {done.owner} at {done.completed_at}"
        return f"{label} is already {how}; nothing waits for a decision"
    if rec.abandoned:
        return f"build {rec.build_id} was abandoned at {rec.abandoned_at}; nothing of it runs again"
    if requested_at(rec, code) is None:
        return f"{label} has not asked for an approval (its task or step asks when the build reaches it)"
    if rec.next_state != code:
        return f"{label} is not the build's next milestone (next: {rec.next_state}); it does not wait"
    last = rec.attempts_at(code)[-1]
    return (
        f"{label} was decided since it asked (attempt {last.attempt}, {last.status} by {last.owner}); "
        "clear its task or re-run its step to ask again"
    )


def decide(
    store: BuildStore, build_id: str, code: int, *, approve: bool, decided_by: str, comment: object
) -> BuildRecord:
    """Record a person's decision on the approval milestone ``code`` as its attempt. Refused
    (:class:`Conflict`, nothing written) unless the build waits for that approval now."""
    rec = store.get(build_id)
    if awaiting_approval(rec, code) is None:
        raise Conflict(not_waiting_why(rec, code))
    text = clean_comment(comment)
    lease = store.begin(build_id, code, owner=decided_by, lease_seconds=DECISION_LEASE_SECONDS)
    if approve:
        outputs = decision_outputs(decided_by, lease.acquired_at, text)
        return store.complete(build_id, code, token=lease.token, outputs=outputs)
    return store.fail(build_id, code, token=lease.token, error=rejection_error(decided_by, text))


def record_timeout(store: BuildStore, build_id: str, code: int, error: str) -> BuildRecord:
    """A wait that ended without a decision (``on_timeout: fail``), as a failed attempt."""
    lease = store.begin(build_id, code, owner="approval timeout", lease_seconds=DECISION_LEASE_SECONDS)
    return store.fail(build_id, code, token=lease.token, error=error)
