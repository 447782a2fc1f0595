"""A spec's ``on_failure:`` block and its milestones' ``max_attempts``: what happens to a build
that fails and is not resumed.

::

    on_failure:
      park: true           # stop (deallocate, power off, shelve) the build host when a milestone
                           # fails for good; default: the target's own (clouds park, local keeps)
      abandon_after: 7d    # the watchdog abandons a failed build not resumed for this long
                           # (deletes what it holds, build_status ``abandoned``); default: never
      gc:                  # the watchdog runs the leak collector (imagebuild gc) for the pipeline
        every: 1d          # how often (at least 10m; the watchdog runs every 10 minutes)
        older_than: 2h     # imagebuild gc --older-than (at least 10m)
        apply: false       # delete the leaks; default: only report them to notify's recipients
    milestones:
      45: {action: ansible, playbook: storage.yml, max_attempts: 5}   # default 10, across runs

``park`` is ``None`` when the spec says nothing, meaning "the target's default": the parking target
reads ``spec.on_failure.park`` and decides. ``abandon_after`` takes durations as every other
duration of a spec (``7d``, ``36h``, seconds). ``max_attempts`` is kept in each build's record at
registration and enforced by the store's ``begin`` (:mod:`.build.rules`), so that clears and
re-triggers, from Airflow, Concourse or a shell, cannot retry one milestone without end.

``gc`` sits here because leaks are what failed builds leave: a killed worker's host, an image a
failed attempt made before it could record it, the resources of an abandon whose delete failed. Its
report (what was found, why, for how long, at what estimated cost, and whether it was deleted) goes
to every recipient of the spec's ``notify`` as ``leaks``, whatever ``notify.on`` lists, when gc
found something; without ``apply`` nothing is deleted.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from airflow_provider_imagebuild.build.values import DEFAULT_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS
from airflow_provider_imagebuild.spec.airflow_options import Duration

# The shortest abandon_after taken: a build is abandoned for good (its host and checkpoints are
# deleted), so an hour is the least a person gets to notice a failure and clear the task.
MIN_ABANDON_AFTER = timedelta(hours=1)

# The watchdog's period: a shorter ``gc.every`` could not be kept.
MIN_GC_EVERY = timedelta(minutes=10)

__all__ = ["DEFAULT_MAX_ATTEMPTS", "MAX_MAX_ATTEMPTS", "MIN_ABANDON_AFTER", "GcSpec", "OnFailureSpec"]


class GcSpec(BaseModel):
    """The leak collector the watchdog runs for the pipeline (``imagebuild gc``), on a schedule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: Duration = Field(
        default=timedelta(days=1),
        description="how often the watchdog runs imagebuild gc for the pipeline (like 6h, 1d; at least 10m)",
    )
    older_than: Duration = Field(
        default=timedelta(hours=2),
        description="imagebuild gc --older-than: the age and idleness past which a resource is a leak (at least 10m)",
    )
    apply: bool = Field(
        default=False,
        description="delete the leaks (imagebuild gc --apply); default: only report them to notify's recipients",
    )

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta) -> timedelta:
        if value < MIN_GC_EVERY:
            raise ValueError("must be at least 10m (the watchdog runs every 10 minutes)")
        return value

    @field_validator("older_than")
    @classmethod
    def _older_than(cls, value: timedelta) -> timedelta:
        from airflow_provider_imagebuild.targets.leaks import MIN_OLDER_THAN

        if value < MIN_OLDER_THAN:
            raise ValueError(f"must be at least {round(MIN_OLDER_THAN.total_seconds() / 60)}m (as imagebuild gc's)")
        return value


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
    gc: GcSpec | None = Field(
        default=None,
        description="the watchdog runs the leak collector (imagebuild gc) for the pipeline on a schedule and "
        "reports what it finds to notify's recipients (default: never)",
    )

    @field_validator("abandon_after")
    @classmethod
    def _abandon_after(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < MIN_ABANDON_AFTER:
            raise ValueError("must be at least 1h (an abandoned build's host and checkpoints are deleted)")
        return value
