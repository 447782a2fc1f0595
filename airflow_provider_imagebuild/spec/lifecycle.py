"""A spec's ``on_failure:`` block and its milestones' ``max_attempts``: what happens to a build
that fails and is not resumed.

::

    on_failure:
      park: true           # stop (deallocate, power off, shelve) the build host when a milestone
                           # fails for good; default: the target's own (clouds park, local keeps)
      abandon_after: 7d    # the watchdog abandons a failed build not resumed for this long
                           # (deletes what it holds, build_status ``abandoned``); default: never
    milestones:
      45: {action: ansible, playbook: storage.yml, max_attempts: 5}   # default 10, across runs

``park`` is ``None`` when the spec says nothing, meaning "the target's default": the parking target
reads ``spec.on_failure.park`` and decides. ``abandon_after`` takes durations as every other
duration of a spec (``7d``, ``36h``, seconds). ``max_attempts`` is kept in each build's record at
registration and enforced by the store's ``begin`` (:mod:`.build.rules`), so that clears and
re-triggers, from Airflow, Concourse or a shell, cannot retry one milestone without end.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_imagebuild.build.values import DEFAULT_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS
from airflow_provider_imagebuild.spec.airflow_options import Duration

# The shortest abandon_after taken: a build is abandoned for good (its host and checkpoints are
# deleted), so an hour is the least a person gets to notice a failure and clear the task.
MIN_ABANDON_AFTER = timedelta(hours=1)

__all__ = ["DEFAULT_MAX_ATTEMPTS", "MAX_MAX_ATTEMPTS", "MIN_ABANDON_AFTER", "OnFailureSpec"]


class OnFailureSpec(BaseModel):
    """What becomes of a build whose milestone failed and that nobody resumes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    park: bool | None = Field(
        default=None,
        description="stop the build host when a milestone fails for good (default: the target's: clouds park, "
        "local keeps)",
    )
    abandon_after: Duration | None = Field(
        default=None,
        description="the watchdog abandons a failed build not resumed for this long (like 7d; default: never)",
    )

    @field_validator("abandon_after")
    @classmethod
    def _abandon_after(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < MIN_ABANDON_AFTER:
            raise ValueError("must be at least 1h (an abandoned build's host and checkpoints are deleted)")
        return value
