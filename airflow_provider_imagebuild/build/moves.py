"""The next moves a person can make on a build, answered the way the store's rules would answer
them: the milestones a reset or a redo may go back to (and what each does), whether the next
milestone may be skipped, what clearing the failed task resumes, and what abandoning it deletes.

Pure reads of a :class:`BuildRecord` (no store, no Airflow), next to :mod:`.rules` and
:mod:`.checkpoints` whose refusals they mirror, so that the API, the pages and the CLI offer
only what the store accepts, instead of a list of every milestone that the store then refuses
one by one after the person wrote a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_imagebuild.build.catalog import title_of
from airflow_provider_imagebuild.build.checkpoints import latest_checkpoint, resume_problem
from airflow_provider_imagebuild.build.holdings import holdings
from airflow_provider_imagebuild.build.record import FAILED, Attempt, BuildRecord, parse_ts

Titles = Callable[[int], str]


@dataclass(frozen=True)
class Move:
    """One milestone a move may take: its code and title, what the move does, and whether it is
    the one offered first (the failed or current milestone)."""

    code: int
    title: str
    does: str
    default: bool = False

    def to_public(self) -> dict[str, Any]:
        return {"milestone": self.code, "title": self.title, "does": self.does, "default": self.default}


def _name(code: int, titles: Titles) -> str:
    return f"{code} · {titles(code)}"


def live_holder(rec: BuildRecord, now: datetime) -> str | None:
    """Why nothing can be reset, redone or skipped now: a live lease (an expired one is taken over
    by the move, as the rules do), else None."""
    lease = rec.lease
    if lease is None or parse_ts(lease.expires_at) <= now:
        return None
    return f"milestone {lease.state} is running ({lease.owner}, lease until {lease.expires_at}); wait for it to end"


def anchor(rec: BuildRecord) -> int:
    """The milestone a person is looking at: the failed one, else the next to run, else the last."""
    if rec.status == FAILED:
        return rec.current_state
    nxt = rec.next_state
    return nxt if nxt is not None else rec.plan[-1]


def _reset_does(rec: BuildRecord, code: int, titles: Titles) -> str:
    dropped = [c for c in rec.plan if c >= code and c in rec.milestones]
    if not dropped:
        does = f"un-completes nothing; the next run starts at {_name(code, titles)}"
    elif dropped == [code]:
        does = f"un-completes {_name(code, titles)}; the next run runs it again"
    else:
        after = ", ".join(str(c) for c in dropped if c != code)
        first = f"{_name(code, titles)}" if code in dropped else f"nothing at {code}"
        does = f"un-completes {first} and {after}; the next run starts at {code}"
    meta = rec.metadata
    if meta.get("host_released") and not meta.get("host_id"):
        checkpoint = latest_checkpoint(rec, code)
        if checkpoint is not None:
            does += f"; the build host is relaunched from the checkpoint after {checkpoint.code}"
        else:
            does += "; a new build host is made"
    return does


def reset_moves(rec: BuildRecord, now: datetime, titles: Titles = title_of) -> list[Move]:
    """The milestones a reset (or a redo) may go back to: after registration, not past the failed
    or next milestone (a reset there would change nothing a run does), and only where the build
    could run again from (:func:`.checkpoints.resume_problem`, which the store's reset enforces).
    None while a live lease holds the build (the store refuses every reset then). The newest one
    is the default: the failed milestone, or the one to run next."""
    if live_holder(rec, now) is not None or rec.abandoned:  # the store refuses every reset of an abandoned build
        return []
    last = anchor(rec)
    codes = [c for c in rec.plan[1:] if c <= last and resume_problem(rec, c) is None]
    return [Move(c, titles(c), _reset_does(rec, c, titles), default=c == codes[-1]) for c in codes]


def refused_resets(rec: BuildRecord) -> dict[int, str]:
    """The milestones up to the failed or next one that a reset would be refused at, with why."""
    last = anchor(rec)
    refused = {c: resume_problem(rec, c) for c in rec.plan[1:] if c <= last}
    return {c: why for c, why in refused.items() if why}


def skip_move(rec: BuildRecord, now: datetime, titles: Titles = title_of) -> Move | None:
    """The next milestone, when the store would let a person step over it now."""
    nxt = rec.next_state
    if nxt is None or nxt in rec.unskippable or live_holder(rec, now) is not None or rec.abandoned:
        return None
    after = [c for c in rec.plan if c > nxt]
    then = f"the next run or clear continues at {_name(after[0], titles)}" if after else "the build is delivered"
    return Move(nxt, titles(nxt), f"counts {_name(nxt, titles)} as done without running it; {then}", default=True)


def allow_move(rec: BuildRecord, now: datetime, titles: Titles = title_of) -> Move | None:
    """The failed (or next) milestone when it has used every attempt its cap across runs allows,
    so that the store refuses its next ``begin`` (a clear, a run): what granting more attempts
    (``build allow``) changes. None when it may still begin, is done, or the build is abandoned,
    delivered or held by a live lease."""
    if rec.delivered or rec.abandoned or live_holder(rec, now) is not None:
        return None
    code = anchor(rec)
    if code == rec.plan[0] or code in rec.milestones:
        return None
    used = max((a.attempt for a in rec.attempts_at(code)), default=0)
    limit = rec.attempt_limit(code)
    if used < limit:
        return None
    does = (f"{_name(code, titles)} has used {used} of the {limit} attempts it may have across runs: no clear or "
            f"run may begin it again until more are granted; the next then begins attempt {used + 1}")  # fmt: skip
    return Move(code, titles(code), does, default=True)


def abandon_move(rec: BuildRecord, now: datetime) -> str | None:
    """What abandoning the build now does, when the store would accept it (not delivered, not
    abandoned already, no live lease): the holdings it deletes and the end of the build."""
    if rec.delivered or rec.abandoned or live_holder(rec, now) is not None:
        return None
    held = holdings(rec)
    deletes = f"deletes {', '.join(map(str, held))} (what the target proves is its own)" if held else "holds nothing"
    return f"{deletes}; no milestone of build {rec.build_id} begins again (a new build id starts over)"


def failing_attempt(rec: BuildRecord) -> Attempt | None:
    """The attempt whose failure the build is stopped at (None unless the build failed and was not
    abandoned: clearing its task would be refused)."""
    if rec.status != FAILED or rec.abandoned:
        return None
    runs = [a for a in rec.attempts_at(rec.current_state) if a.kind == "run"]
    return runs[-1] if runs else None


def clear_does(rec: BuildRecord, titles: Titles = title_of) -> str | None:
    """What clearing the failed milestone's task (with its downstream tasks) does to the build."""
    failed = failing_attempt(rec)
    if failed is None:
        return None
    code = rec.current_state
    kept = [c for c in rec.plan[1:] if c in rec.milestones]
    later = [c for c in rec.plan if c > code and c not in rec.milestones]
    does = f"runs {_name(code, titles)} again (attempt {failed.attempt + 1})"
    if later:
        does += f", then {', '.join(str(c) for c in later)}"
    if kept:
        does += f"; {', '.join(str(c) for c in kept)} stay done and are not run again"
    return does
