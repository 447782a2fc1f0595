"""The build's status: one word for where a whole build stands, computed from its record.

The record keeps the *milestone* status (``in_progress``, ``completed``, ``failed``): whether the
attempt at the current milestone worked. That word alone misleads a reader: a build only
registered, or just reset, reads ``completed``, and a delivered one too. People and filters need
the build's own word, so it is derived here, in one place, and every reader shows it
(``build_status`` in ``imagebuild build show/list --json``, ``report --json``, the API, the UI):

- ``registered``: nothing begun yet, or reset back to the first milestone after registration;
- ``running``: a milestone holds a live lease (a worker is at it now);
- ``waiting``: the last milestone completed (or skipped), the next one not begun, not delivered;
- ``failed``: the attempt at the current milestone failed, or its lease expired without the
  milestone ending (the worker is gone): the milestone needs to run again;
- ``delivered``: the plan's last milestone (100) is completed;
- ``abandoned``: a build given up for good (``imagebuild build abandon``, the watchdog's
  ``on_failure.abandon_after``): what it held is deleted and no milestone of it begins again.

Derived rather than stored: the record stays the one truth, a lease expiring needs no write, and
records written by older releases get the word too.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow_provider_imagebuild.build.record import COMPLETED, FAILED, IN_PROGRESS, BuildRecord, parse_ts
from airflow_provider_imagebuild.errors import InvalidInput

REGISTERED = "registered"
RUNNING = "running"
WAITING = "waiting"
BUILD_FAILED = "failed"
DELIVERED = "delivered"
ABANDONED_BUILD = "abandoned"  # the record's abandoned_at (rules.abandon): kept in the store, on every backend

BUILD_STATUS_WORDS = (REGISTERED, RUNNING, WAITING, BUILD_FAILED, DELIVERED, ABANDONED_BUILD)

# What each word means, for help texts and the API's description.
MEANINGS = {
    REGISTERED: "nothing begun yet (or reset back to its first milestone)",
    RUNNING: "a milestone holds a live lease",
    WAITING: "the last milestone completed, the next not begun, not delivered",
    BUILD_FAILED: "the current milestone failed (or its worker's lease expired)",
    DELIVERED: "milestone 100 completed",
    ABANDONED_BUILD: "given up for good",
}


def build_status(rec: BuildRecord, now: datetime | None = None) -> str:
    """The build's status word at ``now`` (default: the current time)."""
    if rec.abandoned:
        return ABANDONED_BUILD
    if rec.delivered:
        return DELIVERED
    moment = now or datetime.now(timezone.utc)
    lease = rec.lease
    if lease is not None and parse_ts(lease.expires_at) > moment:
        return RUNNING
    if rec.status in (FAILED, IN_PROGRESS):  # in progress without a live lease: its worker is gone
        return BUILD_FAILED
    if rec.current_state == rec.plan[0]:
        return REGISTERED
    return WAITING


# The milestone status every build of a build status has, so that a listing by build status can
# ask the store for that status first (DynamoDB's status index) and check the word on what it reads.
# A failed build's milestone may read failed or in_progress (its worker died): no single one.
_MILESTONE_STATUS = {REGISTERED: COMPLETED, WAITING: COMPLETED, DELIVERED: COMPLETED, RUNNING: IN_PROGRESS}


def milestone_status_of(word: str) -> str | None:
    """The milestone status every build whose build status is ``word`` has (None: several)."""
    return _MILESTONE_STATUS.get(word)


def check_build_status(value: object, field: str = "--status") -> str:
    """A build status word typed by a person; anything else is refused naming the allowed words
    (the milestone statuses ``in_progress`` and ``completed`` included: they describe a milestone)."""
    if value not in BUILD_STATUS_WORDS:
        raise InvalidInput(field, f"must be a build status: one of {', '.join(BUILD_STATUS_WORDS)} (got {value!r})")
    return str(value)
