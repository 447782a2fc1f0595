"""The store's rules as pure transitions on a :class:`BuildRecord`.

Every backend loads a record, applies one of these functions and compare-and-swaps the result,
so the rules (plan order, one live lease, late writers refused, failures never roll the state
back) are written once. A transition returns ``changed=False`` when the request was already
applied (a retried ``complete`` after a lost response), so nothing is written twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_imagebuild.build.catalog import check_code, previous_in, validate_plan
from airflow_provider_imagebuild.build.checkpoints import resume_problem
from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.record import (
    ABANDONED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    REUSED,
    SKIPPED,
    Attempt,
    BuildRecord,
    Event,
    Lease,
    MilestoneResult,
    format_ts,
    lease_id_of,
    parse_ts,
)
from airflow_provider_imagebuild.build.values import DEFAULT_MAX_ATTEMPTS, MAX_GRANTED_AHEAD
from airflow_provider_imagebuild.errors import Conflict, InvalidInput

# History kept in the record (a DynamoDB item holds at most 400 KB): the newest attempts keep
# their whole error text, older ones its start; beyond the counts, the oldest finished attempts
# and events are dropped (the newest attempt of every milestone always stays, so attempt numbers
# keep counting) and ``trimmed`` says how many.
KEEP_FULL_ERRORS = 10
OLD_ERROR_CHARS = 300
MAX_ATTEMPTS = 200
MAX_EVENTS = 100
KEEP_FULL_EVENTS = 10
OLD_EVENT_CHARS = 300
# Stricter levels, used in turn while a record is still over its size limit.
COMPACTION_LEVELS = (
    (KEEP_FULL_ERRORS, OLD_ERROR_CHARS, MAX_ATTEMPTS, MAX_EVENTS),
    (3, 200, 60, 40),
    (1, 120, 20, 10),
)
TRIM_MARK = " ...[trimmed]"


def new_record(build_id: str, identity: BuildIdentity, owner: str, now: datetime) -> BuildRecord:
    """A registered build: milestone 0 ("initialize") is reached by registration itself."""
    ts = format_ts(now)
    first = identity.plan[0]
    rec = BuildRecord(
        build_id=build_id,
        pipeline=identity.pipeline,
        cloud=identity.cloud,
        image_type=identity.image_type,
        os=identity.os,
        plan=list(identity.plan),
        metadata=dict(identity.metadata),
        created_at=ts,
        updated_at=ts,
        version=1,
        current_state=first,
        status=COMPLETED,
        unskippable=list(identity.not_skippable),
        titles=dict(identity.titles),
        max_attempts=dict(identity.max_attempts),
    )
    lease_id = uuid.uuid4().hex
    rec.attempts.append(Attempt(first, 1, COMPLETED, owner, lease_id, ts, ts))
    rec.milestones[first] = MilestoneResult(first, 1, owner, ts, ts, 0.0, {})
    rec.events.append(Event(ts, "create", "build registered", owner, first))
    return rec


def same_parameters(rec: BuildRecord, identity: BuildIdentity) -> list[str]:
    """The fields in which an existing build differs from a repeated create (empty: identical).

    Metadata is compared on the keys the create gives: keys recorded since (the build host, for
    instance) do not make a re-run of milestone 0 a different build."""
    differ = rec.identity.differences(identity)
    if any(rec.metadata.get(k) != v for k, v in identity.metadata.items()):
        differ.append("metadata")
    if tuple(rec.plan) != tuple(identity.plan):
        differ.append("plan")
    return differ


def change_plan(rec: BuildRecord, identity: BuildIdentity, actor: str, now: datetime) -> tuple[BuildRecord, bool]:
    """Take a new plan for a build that is under way: a DAG author added, removed or re-keyed
    milestones in the spec after a failure, and the next run resumes the same build.

    Only milestones not reached yet may change (added or removed after the last completed one);
    a change to a completed milestone is refused, naming each, with the ways forward. The change
    is recorded as an event ("plan changed by <run>: +42, -60")."""
    new = list(validate_plan(identity.plan))
    if new == rec.plan:
        return rec, False
    added = sorted(set(new) - set(rec.plan))
    removed = sorted(set(rec.plan) - set(new))
    done = [c for c in rec.completed if c != rec.plan[0]]
    last = max(done, default=rec.plan[0])
    conflicts = [f"milestone {_name(rec, c)} is completed" for c in removed if c in rec.milestones]
    conflicts += [f"milestone {c} would come before completed milestone {_name(rec, last)}" for c in added if c < last]
    if conflicts:
        raise Conflict(
            f"the plan of build {rec.build_id} changed where the build is done: {'; '.join(conflicts)}. "
            f"Reset the build to an earlier milestone (imagebuild build reset {rec.build_id} N) "
            "or start a new build id"
        )
    if rec.lease is not None and rec.lease.state in removed:
        _take_over_expired(rec, now, actor)
    rec.plan = new
    rec.unskippable = list(identity.not_skippable)
    rec.titles = dict(identity.titles)
    # The caps follow the spec; a grant or reset's limit of a milestone taken out goes with it.
    rec.max_attempts = {code: n for code, n in identity.max_attempts.items() if code in new}
    rec.attempt_limits = {code: n for code, n in rec.attempt_limits.items() if code in new}
    if rec.current_state not in new:  # the failed milestone was taken out of the plan
        rec.current_state, rec.status = last, COMPLETED
    change = ", ".join([f"+{c}" for c in added] + [f"-{c}" for c in removed])
    _add_event(rec, Event(format_ts(now), "plan", f"plan changed by {actor}: {change}", actor))
    return rec, True


def _in_plan(rec: BuildRecord, state: object, field: str = "state") -> int:
    code = check_code(state, field)
    if code not in rec.plan:
        raise InvalidInput(field, f"milestone {code} is not in the plan of build {rec.build_id}: {rec.plan}")
    return code


def _name(rec: BuildRecord, code: int) -> str:
    return f"{code} ({rec.title(code)})"


def retitle(rec: BuildRecord, identity: BuildIdentity) -> bool:
    """Take the pipeline's milestone titles (a DAG author renamed a custom milestone, or the build
    was registered before records kept titles); True if they changed. Titles are labels: no event."""
    titles = {code: title for code, title in identity.titles.items() if code in rec.plan}
    if titles == rec.titles:
        return False
    rec.titles = titles
    return True


def recap(rec: BuildRecord, identity: BuildIdentity, actor: str, now: datetime) -> bool:
    """Take the pipeline's attempt caps (a spec changed ``max_attempts``, ``build create
    --max-attempts`` again); True if they changed, recorded as an event. Caps are not part of what
    makes two builds different: the record follows the spec."""
    caps = {code: n for code, n in identity.max_attempts.items() if code in rec.plan}
    if caps == rec.max_attempts:
        return False
    rec.max_attempts = caps
    shown = ", ".join(f"{c}: {n}" for c, n in sorted(caps.items())) or f"the default ({DEFAULT_MAX_ATTEMPTS})"
    _add_event(rec, Event(format_ts(now), "caps", f"attempt caps set by {actor}: {shown}", actor))
    return True


def _refuse_abandoned(rec: BuildRecord, doing: str) -> None:
    """An abandoned build is over: what it held was deleted, nothing of it runs again."""
    if rec.abandoned:
        why = next((e.detail for e in reversed(rec.events) if e.kind == "abandon"), "abandoned")
        raise Conflict(
            f"build {rec.build_id} was abandoned at {rec.abandoned_at} ({why}); it cannot {doing}: start a new build id"
        )


def _last_attempt(rec: BuildRecord, code: int) -> int:
    return _next_attempt(rec, code) - 1


def _capped(rec: BuildRecord, code: int, number: int) -> Conflict | None:
    """The refusal of attempt ``number`` at ``code`` past the build's attempt limit, else None."""
    limit = rec.attempt_limit(code)
    if number <= limit:
        return None
    cap = rec.attempt_cap(code)
    granted = f" (its cap is {cap}; more were granted since)" if limit != cap else ""
    return Conflict(
        f"milestone {_name(rec, code)} of build {rec.build_id} reached its attempt cap: {number - 1} attempts "
        f"of max_attempts {limit}{granted}. Grant more: imagebuild build allow {rec.build_id} {code} "
        f'--attempts N --reason "...", or reset the build (a reset counts afresh)'
    )


def _live(lease: Lease, now: datetime) -> bool:
    return parse_ts(lease.expires_at) > now


def _holder_conflict(rec: BuildRecord, lease: Lease) -> Conflict:
    return Conflict(
        f"build {rec.build_id} is leased by {lease.owner!r} for milestone {_name(rec, lease.state)} "
        f"until {lease.expires_at} (lease {lease_id_of(lease.token)}, attempt {lease.attempt})",
        holder=lease.owner,
    )


def _attempt_for(rec: BuildRecord, token: str) -> Attempt | None:
    for attempt in reversed(rec.attempts):
        if attempt.lease_id == token and attempt.kind == "run":
            return attempt
    return None


def _add_event(rec: BuildRecord, event: Event) -> None:
    rec.events.append(event)


def _next_attempt(rec: BuildRecord, code: int) -> int:
    """The number of the next attempt at ``code`` (attempts may have been trimmed: not a count)."""
    return max((a.attempt for a in rec.attempts_at(code)), default=0) + 1


def _shorten(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit + len(TRIM_MARK):
        return text
    return text[:limit] + TRIM_MARK


def compact(rec: BuildRecord, level: int = 0) -> None:
    """Bound the history a record carries (see :data:`COMPACTION_LEVELS`)."""
    full_errors, error_chars, max_attempts, max_events = COMPACTION_LEVELS[level]
    finished = [a for a in rec.attempts if a.status != IN_PROGRESS]
    for attempt in finished[: max(len(finished) - full_errors, 0)]:
        attempt.error = _shorten(attempt.error, error_chars)
    if len(rec.attempts) > max_attempts:
        newest = {}
        for attempt in rec.attempts:
            newest[attempt.state] = attempt
        keep = {id(a) for a in newest.values()} | {id(a) for a in rec.attempts if a.status == IN_PROGRESS}
        excess = len(rec.attempts) - max_attempts
        kept = []
        for attempt in rec.attempts:
            if excess > 0 and id(attempt) not in keep:
                excess -= 1
                rec.trimmed["attempts"] = rec.trimmed.get("attempts", 0) + 1
                continue
            kept.append(attempt)
        rec.attempts = kept
    if len(rec.events) > max_events:
        dropped = len(rec.events) - max_events
        del rec.events[:dropped]
        rec.trimmed["events"] = rec.trimmed.get("events", 0) + dropped
    for event in rec.events[: max(len(rec.events) - KEEP_FULL_EVENTS, 0)]:
        event.detail = _shorten(event.detail, error_chars) or ""


def _abandon(rec: BuildRecord, lease: Lease, now: datetime, by: str) -> None:
    """Record a lease that expired without completing as an ``abandoned`` attempt."""
    ts = format_ts(now)
    attempt = _attempt_for(rec, lease.token)
    if attempt is not None and attempt.status == IN_PROGRESS:
        attempt.status = ABANDONED
        attempt.finished_at = ts
        attempt.error = f"lease expired at {lease.expires_at} without a heartbeat; taken over by {by!r}"
    rec.lease = None
    _add_event(rec, Event(ts, "takeover", f"expired lease of {lease.owner!r} taken over", by, lease.state))


def _take_over_expired(rec: BuildRecord, now: datetime, actor: str) -> None:
    """Before a change that needs the build free: a live lease refuses it (naming the holder), an
    expired one is taken over and its attempt recorded as abandoned."""
    lease = rec.lease
    if lease is None:
        return
    if _live(lease, now):
        raise _holder_conflict(rec, lease)
    _abandon(rec, lease, now, actor)


DONE, HELD = "done", "held"


def readiness(rec: BuildRecord, state: object, now: datetime, owner: str | None = None) -> tuple[str | None, str]:
    """Whether :func:`begin` would start milestone ``state`` now, without changing anything:
    ``(None, why)`` if it would, ``(DONE, why)`` if the milestone is completed or skipped, and
    ``(HELD, why)`` if a live lease of someone else holds the build or an earlier milestone is
    not done. Asked by a shell or Concourse step before it does the milestone's work."""
    code = _in_plan(rec, state)
    done = rec.milestones.get(code)
    if done is not None:
        how = "skipped" if done.skipped else "completed"
        return DONE, f"milestone {_name(rec, code)} of build {rec.build_id} is already {how} (attempt {done.attempt})"
    if rec.abandoned:
        return HELD, f"build {rec.build_id} was abandoned at {rec.abandoned_at}; nothing of it runs again"
    lease = rec.lease
    if lease is not None and _live(lease, now):
        if lease.owner == owner and lease.state == code:
            return None, f"milestone {_name(rec, code)} is leased by this owner: it resumes"
        return HELD, str(_holder_conflict(rec, lease))
    if code != rec.next_state:
        return HELD, f"milestone {_name(rec, code)} cannot start before {_name(rec, rec.next_state or 0)} is done"
    capped = _capped(rec, code, _next_attempt(rec, code))
    if capped is not None:
        return HELD, str(capped)
    return None, f"milestone {_name(rec, code)} of build {rec.build_id} is next"


def begin(rec: BuildRecord, state: object, owner: str, lease_seconds: int, now: datetime) -> tuple[Lease, bool]:
    code = _in_plan(rec, state)
    done = rec.milestones.get(code)
    if done is not None:
        raise Conflict(
            f"milestone {_name(rec, code)} of build {rec.build_id} is already completed "
            f"(at {done.completed_at} by attempt {done.attempt}, owner {done.owner!r})"
        )
    _refuse_abandoned(rec, f"begin milestone {_name(rec, code)}")
    lease = rec.lease
    if lease is not None and _live(lease, now) and lease.owner == owner and lease.state == code:
        return lease, False  # a repeated begin by the same owner: same lease
    _take_over_expired(rec, now, owner)
    expected = rec.next_state
    if code != expected:
        raise Conflict(
            f"milestone {_name(rec, code)} of build {rec.build_id} cannot start before "
            f'milestone {_name(rec, expected or 0)} is completed or skipped. (Airflow\'s "Mark success" '
            f"records nothing in the build; to step over {expected} on purpose: "
            f'imagebuild build skip {rec.build_id} {expected} --reason "...", or Skip on the build page)'
        )
    ts = format_ts(now)
    number = _next_attempt(rec, code)
    capped = _capped(rec, code, number)
    if capped is not None:
        raise capped
    lease = Lease(
        token=uuid.uuid4().hex,
        owner=owner,
        state=code,
        attempt=number,
        seconds=lease_seconds,
        acquired_at=ts,
        expires_at=format_ts(now + timedelta(seconds=lease_seconds)),
        heartbeat_at=ts,
    )
    rec.lease = lease
    attempt = Attempt(code, number, IN_PROGRESS, owner, lease.token, ts, reason=_clear_reason(rec, code))
    rec.attempts.append(attempt)
    rec.current_state = code
    rec.status = IN_PROGRESS
    return lease, True


def _clear_reason(rec: BuildRecord, code: int) -> str | None:
    """The reason a person gave for the attempt about to start at ``code``: the latest clear
    recorded for it since its previous attempt began (see :func:`note_clear`)."""
    since = max((a.started_at for a in rec.attempts_at(code)), default="")
    for event in reversed(rec.events):
        if event.kind == "clear" and event.state == code and event.at >= since:
            return f"{event.detail} (cleared by {event.actor})"
    return None


def note_clear(rec: BuildRecord, state: object, note: str, actor: str, now: datetime) -> tuple[BuildRecord, bool]:
    """A person cleared the Airflow task of milestone ``state`` (with a note, or none): recorded in
    the events, and given as the reason of the milestone's next attempt. Changes no state."""
    code = _in_plan(rec, state)
    detail = note or "cleared without a note"
    _add_event(rec, Event(format_ts(now), "clear", detail, actor, code))
    return rec, True


def _held_lease(rec: BuildRecord, code: int, token: str) -> Lease:
    """The lease ``token`` names, refusing a late writer whose lease is gone or taken over."""
    lease = rec.lease
    if lease is None or lease.token != token:
        attempt = _attempt_for(rec, token)
        if attempt is None:
            raise Conflict(f"lease token {token[:8]}... does not hold build {rec.build_id}")
        holder = f"; now held by {lease.owner!r}" if lease is not None else ""
        raise Conflict(
            f"stale lease token: attempt {attempt.attempt} at milestone {attempt.state} "
            f"by {attempt.owner!r} is {attempt.status}{holder}",
            holder=lease.owner if lease is not None else None,
        )
    if lease.state != code:
        raise InvalidInput("state", f"the lease is for milestone {lease.state}, not {code}")
    return lease


def heartbeat(rec: BuildRecord, state: object, token: str, now: datetime) -> tuple[Lease, bool]:
    code = _in_plan(rec, state)
    lease = _held_lease(rec, code, token)
    ts = format_ts(now)
    lease.heartbeat_at = ts
    lease.expires_at = format_ts(now + timedelta(seconds=lease.seconds))
    return lease, True


def complete(
    rec: BuildRecord,
    state: object,
    token: str,
    outputs: dict[str, Any],
    now: datetime,
    usage: dict[str, Any] | None = None,
    fingerprint: tuple[str, dict[str, str]] | None = None,
) -> tuple[BuildRecord, bool]:
    """``fingerprint``: what the run was made from (its fingerprint and inputs), kept on the attempt."""
    code = _in_plan(rec, state)
    earlier = _attempt_for(rec, token)
    if earlier is not None and earlier.state == code and earlier.status == COMPLETED:
        # The response to an applied complete was lost and this is its retry: a no-op, but only
        # while that attempt's result is still the recorded one and says the same.
        done = rec.milestones.get(code)
        if done is None or done.attempt != earlier.attempt or done.started_at != earlier.started_at:
            raise Conflict(
                f"attempt {earlier.attempt} completed milestone {_name(rec, code)} of build {rec.build_id}, "
                "but the build was reset since; this lease token no longer holds it (begin the milestone again)"
            )
        if done.outputs != outputs:
            raise Conflict(
                f"milestone {_name(rec, code)} of build {rec.build_id} is already completed by this attempt "
                f"with other outputs ({', '.join(sorted(done.outputs)) or 'none'}); they were kept"
            )
        return rec, False
    lease = _held_lease(rec, code, token)
    attempt = _attempt_for(rec, token)
    assert attempt is not None  # a held lease always has its attempt
    ts = format_ts(now)
    attempt.status = COMPLETED
    attempt.finished_at = ts
    attempt.usage = usage
    if fingerprint is not None:
        attempt.fingerprint, attempt.inputs = fingerprint[0], dict(fingerprint[1])
    _reach(rec, code, attempt, lease.owner, now, outputs)
    _reached(rec, code, ts)
    return rec, True


def _reach(rec: BuildRecord, code: int, attempt: Attempt, owner: str, now: datetime, outputs: dict[str, Any]) -> None:
    """Milestone ``code``'s result: ``attempt``'s, with its outputs, as of ``now``."""
    started = parse_ts(attempt.started_at)
    duration = round((now - started).total_seconds(), 3)
    rec.milestones[code] = MilestoneResult(code, attempt.attempt, owner, attempt.started_at, format_ts(now), duration,
                                           dict(outputs))  # fmt: skip


def _reached(rec: BuildRecord, code: int, ts: str) -> None:
    """The build stands at ``code``, completed, its lease over (delivered with the plan's last)."""
    rec.lease = None
    rec.current_state = code
    rec.status = COMPLETED
    if code == rec.plan[-1]:
        rec.delivered_at = ts


def fail(
    rec: BuildRecord,
    state: object,
    token: str,
    error: str,
    now: datetime,
    usage: dict[str, Any] | None = None,
    fingerprint: tuple[str, dict[str, str]] | None = None,
) -> tuple[BuildRecord, bool]:
    code = _in_plan(rec, state)
    earlier = _attempt_for(rec, token)
    if earlier is not None and earlier.state == code and earlier.status == FAILED:
        if earlier.error != error:
            raise Conflict(
                f"attempt {earlier.attempt} at milestone {_name(rec, code)} of build {rec.build_id} is already "
                "recorded as failed with another error; the first one was kept"
            )
        return rec, False
    _held_lease(rec, code, token)
    attempt = _attempt_for(rec, token)
    assert attempt is not None
    attempt.status = FAILED
    attempt.finished_at = format_ts(now)
    attempt.error = error
    attempt.usage = usage
    if fingerprint is not None:  # what the failed run started from: "what changed" compares it
        attempt.fingerprint, attempt.inputs = fingerprint[0], dict(fingerprint[1])
    rec.lease = None
    rec.current_state = code  # a failure never moves the state back
    rec.status = FAILED
    return rec, True


def reset(rec: BuildRecord, to: object, reason: str, actor: str, now: datetime) -> tuple[BuildRecord, bool]:
    """A person sends the build back so that milestone ``to`` and everything after it run again.
    Refused (nothing written) when the build could not run from there (:func:`resume_problem`):
    checked here, on the record being changed, so no entry point can reset around it."""
    code = _in_plan(rec, to, "to")
    previous = previous_in(rec.plan, code)
    if previous is None:
        raise InvalidInput("to", "milestone 0 is the build's registration; create a new build instead")
    _refuse_abandoned(rec, "be reset")
    problem = resume_problem(rec, code)
    if problem:
        raise Conflict(problem)
    _take_over_expired(rec, now, actor)
    dropped = [c for c in rec.plan if c >= code and c in rec.milestones]
    for c in dropped:
        del rec.milestones[c]
    for c in rec.plan:  # a person sent the build back: each milestone from there counts afresh
        if c >= code:
            rec.attempt_limits[c] = _last_attempt(rec, c) + rec.attempt_cap(c)
    rec.current_state = previous
    rec.status = COMPLETED
    rec.delivered_at = None
    detail = f"reset to {code}: {reason}" + (f" (un-completed {dropped})" if dropped else "")
    _add_event(rec, Event(format_ts(now), "reset", detail, actor, code))
    return rec, True


def skip(rec: BuildRecord, state: object, reason: str, actor: str, now: datetime) -> tuple[BuildRecord, bool]:
    """A person steps over the next milestone on purpose: it counts as done for the plan's
    order, produces nothing, and shows as skipped with the reason and who decided."""
    code = _in_plan(rec, state)
    done = rec.milestones.get(code)
    if done is not None:
        how = "skipped" if done.skipped else "completed"
        raise Conflict(f"milestone {_name(rec, code)} of build {rec.build_id} is already {how} ({done.completed_at})")
    if code in rec.unskippable:
        raise InvalidInput("state", f"milestone {_name(rec, code)} cannot be skipped (the pipeline marks it so)")
    _refuse_abandoned(rec, f"skip milestone {_name(rec, code)}")
    _take_over_expired(rec, now, actor)
    expected = rec.next_state
    if code != expected:
        raise Conflict(
            f"milestone {_name(rec, code)} of build {rec.build_id} is not next: "
            f"milestone {_name(rec, expected or 0)} comes first"
        )
    ts = format_ts(now)
    number = _next_attempt(rec, code)
    rec.attempts.append(Attempt(code, number, SKIPPED, actor, uuid.uuid4().hex, ts, ts, reason, "skip"))
    rec.milestones[code] = MilestoneResult(code, number, actor, ts, ts, 0.0, {}, reason)
    rec.current_state, rec.status = code, COMPLETED
    _add_event(rec, Event(ts, "skip", f"skipped {code}: {reason}", actor, code))
    return rec, True


def allow(
    rec: BuildRecord, state: object, attempts: int, reason: str, actor: str, now: datetime
) -> tuple[BuildRecord, bool]:
    """A person grants milestone ``state`` ``attempts`` more attempts than it may have now (its cap,
    or what an earlier grant or reset left): recorded as an event with the reason."""
    code = _in_plan(rec, state)
    if code == rec.plan[0]:
        raise InvalidInput("milestone", "milestone 0 is the build's registration; it takes no attempts")
    done = rec.milestones.get(code)
    if done is not None:
        raise Conflict(
            f"milestone {_name(rec, code)} of build {rec.build_id} is already completed; "
            f"reset the build to it to run it again (a reset counts afresh)"
        )
    _refuse_abandoned(rec, f"be granted attempts at milestone {_name(rec, code)}")
    last = _last_attempt(rec, code)
    limit = max(rec.attempt_limit(code), last) + attempts
    if limit - last > MAX_GRANTED_AHEAD:  # grants stacked without bound would undo the cap
        raise Conflict(
            f"milestone {_name(rec, code)} of build {rec.build_id} may begin up to attempt "
            f"{max(rec.attempt_limit(code), last)} ({last} so far): at most {MAX_GRANTED_AHEAD} attempts may be "
            f"granted ahead of use (MAX_GRANTED_AHEAD); grant more once those are used, or reset the build to it"
        )
    rec.attempt_limits[code] = limit
    detail = f"allowed {attempts} more attempts at {code} (up to attempt {limit}, {last} so far): {reason}"
    _add_event(rec, Event(format_ts(now), "allow", detail, actor, code))
    return rec, True


def abandon(rec: BuildRecord, reason: str, actor: str, now: datetime) -> tuple[BuildRecord, bool]:
    """Give the build up for good: no milestone of it begins again (``begin``, ``skip``, ``reset``,
    ``allow`` refuse it), and its build status reads ``abandoned``. A delivered build is not
    abandoned (its images are the product); a live lease refuses it (a worker is at it), an
    expired one is taken over. Abandoning it again changes nothing (``changed=False``) so that a
    caller may retry deleting what it holds."""
    if rec.abandoned:
        return rec, False
    if rec.delivered:
        raise Conflict(f"build {rec.build_id} is delivered ({rec.delivered_at}); a delivered build is not abandoned")
    _take_over_expired(rec, now, actor)
    ts = format_ts(now)
    rec.abandoned_at = ts
    _add_event(rec, Event(ts, "abandon", f"abandoned by {actor}: {reason}", actor, rec.current_state))
    return rec, True


def record_release(
    rec: BuildRecord,
    released: list[str],
    still_held: list[str],
    actor: str,
    now: datetime,
    not_found: list[str] | None = None,
) -> tuple[BuildRecord, bool]:
    """What an abandon deleted (``released``), found gone or not provably the build's
    (``not_found``: left alone) and could not delete (``still_held``: sentences saying why), as an
    event; the ids deleted or not found leave :func:`~.holdings.holdings` for good."""
    if not rec.abandoned:
        raise Conflict(f"build {rec.build_id} is not abandoned; only an abandon releases what a build holds")
    gone = list(not_found or [])
    rec.released.extend(r for r in [*released, *gone] if r not in rec.released)
    parts = [f"deleted {', '.join(released)}" if released else "deleted nothing"]
    if gone:
        parts.append(f"not found as the build's (left alone): {', '.join(gone)}")
    if still_held:
        parts.append(f"still held: {'; '.join(still_held)}")
    _add_event(rec, Event(format_ts(now), "release", "; ".join(parts), actor))
    return rec, True


def record_retirement(
    rec: BuildRecord, retired: list[str], reason: str, actor: str, now: datetime
) -> tuple[BuildRecord, bool]:
    """That published images of the build were deleted by retention (``imagebuild retention
    --apply``), and why, as an event: whatever the build's state, its record says where its product
    went. Nothing else of the record changes (a delivered build stays delivered)."""
    if not retired:
        raise InvalidInput("retired", "name at least one image that was deleted")
    _add_event(rec, Event(format_ts(now), "retire", f"retired {', '.join(retired)}: {reason}", actor))
    return rec, True


def record_replay(
    rec: BuildRecord,
    state: object,
    token: str,
    replayed: int,
    outputs: dict[str, Any],
    now: datetime,
    usage: dict[str, Any] | None = None,
) -> tuple[BuildRecord, bool]:
    """Record that completed milestone ``replayed`` was applied again on a relaunched build host."""
    code = _in_plan(rec, state)
    lease = _held_lease(rec, code, token)
    done = rec.milestones.get(_in_plan(rec, replayed, "replayed"))
    if done is None:
        raise InvalidInput("replayed", f"milestone {replayed} is not completed, so it cannot be replayed")
    ts = format_ts(now)
    number = _next_attempt(rec, replayed)
    rec.attempts.append(
        Attempt(replayed, number, COMPLETED, lease.owner, lease.token, ts, ts, None, "replay", usage=usage)
    )
    done.outputs.update(outputs)
    return rec, True


def reuse(
    rec: BuildRecord,
    state: object,
    token: str,
    source: str,
    taken: list[tuple[int, dict[str, Any], tuple[str, dict[str, str]]]],
    now: datetime,
) -> tuple[BuildRecord, bool]:
    """The lease's milestone and the ones after it, in plan order, reached by taking build
    ``source``'s results (build/reuse.py decided their fingerprint chain matches): each is a
    completed attempt of kind ``reused`` with ``reused_from`` naming the source's milestone, its
    fingerprint and inputs, and the outputs given (the source's, with what the new build made of
    them: its own copy of the checkpoint). The lease's own attempt is the first; the lease ends.
    ``taken``: (code, outputs, (fingerprint, inputs)) from the lease's milestone on."""
    code = _in_plan(rec, state)
    lease = _held_lease(rec, code, token)
    if source == rec.build_id:
        raise InvalidInput("source", "a build cannot reuse its own results")
    codes = [c for c, _, _ in taken]
    start = rec.plan.index(code)
    if not codes or codes != rec.plan[start : start + len(codes)]:
        raise InvalidInput("reused", f"must be consecutive milestones of the plan from {code}")
    done = [c for c in codes if c in rec.milestones]
    if done:
        raise Conflict(f"milestones {done} of build {rec.build_id} are already done; nothing is reused over them")
    ts = format_ts(now)
    for c, outputs, (fingerprint, inputs) in taken:
        origin = {"build_id": source, "state": c}
        if c == code:
            attempt = _attempt_for(rec, token)
            assert attempt is not None  # a held lease always has its attempt
            attempt.status, attempt.finished_at, attempt.kind = COMPLETED, ts, REUSED
        else:
            attempt = Attempt(c, _next_attempt(rec, c), COMPLETED, lease.owner, lease.token, ts, ts, kind=REUSED)
            rec.attempts.append(attempt)
        attempt.reused_from, attempt.fingerprint, attempt.inputs = origin, fingerprint, dict(inputs)
        _reach(rec, c, attempt, lease.owner, now, outputs)
    last = codes[-1]
    _add_event(rec, Event(ts, "reuse", f"reused {codes[0]}..{last} from build {source}", lease.owner, last))
    _reached(rec, last, ts)
    return rec, True


def set_metadata(
    rec: BuildRecord,
    items: dict[str, str],
    actor: str,
    now: datetime,
    token: str | None = None,
    state: object = None,
) -> tuple[BuildRecord, bool]:
    """Add or change metadata. With ``token``, only while that lease holds the build (for
    milestone ``state`` when given): the build host's metadata is written this way, so a late
    writer whose lease was taken over cannot point the build at another host."""
    if token is not None:
        if state is None:
            _held_lease(rec, rec.lease.state if rec.lease is not None else -1, token)
        else:
            _held_lease(rec, _in_plan(rec, state), token)
    rec.metadata.update(items)
    _add_event(rec, Event(format_ts(now), "metadata", ", ".join(sorted(items)), actor))
    return rec, True


def check_status(value: object, field: str = "status") -> str:
    from airflow_provider_imagebuild.build.record import BUILD_STATUSES

    if value not in BUILD_STATUSES:
        raise InvalidInput(field, f"must be one of {', '.join(BUILD_STATUSES)} (got {value!r})")
    return str(value)
