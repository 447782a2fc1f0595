"""The build's status: one word for where a whole build stands, computed from its record.

The record keeps the *milestone* status (``in_progress``, ``completed``, ``failed``): whether the
attempt at the current milestone worked. That word alone misleads a reader: a build only
registered, or just reset, reads ``completed``, and a delivered one too. People and filters need
the build's own word, so it is derived in one place (:func:`.record.build_status`, beside the record it reads: the
record's own ``to_public`` shows it; this module says what each word means) and every reader shows it
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

from airflow_provider_imagebuild.build.record import (
    ABANDONED_BUILD,
    BUILD_FAILED,
    COMPLETED,
    DELIVERED,
    IN_PROGRESS,
    REGISTERED,
    RUNNING,
    WAITING,
    build_status,
)
from airflow_provider_imagebuild.errors import InvalidInput

# The words and build_status are the record's (its to_public shows the word); they are read from here.
__all__ = [
    "ABANDONED_BUILD",
    "BUILD_FAILED",
    "BUILD_STATUS_WORDS",
    "DELIVERED",
    "MEANINGS",
    "REGISTERED",
    "RUNNING",
    "WAITING",
    "build_status",
    "check_build_status",
    "milestone_status_of",
]

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
