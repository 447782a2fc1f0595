"""A spec's ``retention:`` block: how many published images of the pipeline are kept, and how long.

::

    retention: {keep_last: 5, keep_days: 30d}     # the pipeline's, for every destination
    publish:
      - target                                    # takes the pipeline's retention
      - name: lab
        glance: {openstack_conn_id: lab}
        retention: {keep_last: 2}                 # this destination's own, replacing the pipeline's

Both keys are optional; an image is retired (``imagebuild retention --apply``) only when it is
beyond **both**: not one of the ``keep_last`` newest delivered builds' images, and published more
than ``keep_days`` ago. A key left out protects nothing on its own (``keep_last: 5`` alone: only
the five newest stay; ``keep_days: 30d`` alone: every image younger than 30 days stays). Without
the block nothing is ever retired, as before. A destination's block replaces the pipeline's whole
(a destination that wants to keep everything while the pipeline retires says so with a block of
its own: ``retention: {keep_days: 36500d}``). Whatever the policy, the newest delivered image and
an image still referenced (:mod:`..build.image_retention`) stay.

The pipeline's block may add ``every: 1d``: the watchdog then applies the retention once per that
period (each period's first watchdog run, as ``on_failure.gc``), deleting and recording as
``imagebuild retention --apply`` does. Without it, nothing is deleted unless a person or a job of
one's own runs the command. A destination's block has no ``every``: the run is the pipeline's.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_provider_imagebuild.spec.airflow_options import Duration

# The shortest keep_days taken: a deployment may pick an image up minutes after it is published
# (an autoscaling group's next launch, a nightly deploy), and a retired image is gone for good.
MIN_KEEP_DAYS = timedelta(hours=1)
MAX_KEEP_LAST = 10_000


class RetentionSpec(BaseModel):
    """Which published images stay: the ``keep_last`` newest delivered builds', and those published
    less than ``keep_days`` ago."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_last: int | None = Field(
        default=None,
        ge=1,
        le=MAX_KEEP_LAST,
        strict=True,  # a count, not ``true`` read as 1
        description="the published images of this many newest delivered builds stay (at least 1)",
    )
    keep_days: Duration | None = Field(
        default=None,
        description="images published less than this long ago stay (a duration like 30d; at least 1h)",
    )

    @field_validator("keep_days", mode="before")
    @classmethod
    def _not_a_bare_number(cls, value: object) -> object:
        """``keep_days: 30`` means thirty days to whoever writes it, and 30 seconds to the duration
        type: refused, naming the form that says it."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f"write a duration like {value:g}d: a bare number would be read as {value:g} seconds")
        return value

    @field_validator("keep_days")
    @classmethod
    def _keep_days(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < MIN_KEEP_DAYS:
            raise ValueError("must be at least 1h (a deployment may pick a new image up right after its publish)")
        return value

    @model_validator(mode="after")
    def _something(self) -> RetentionSpec:
        if self.keep_last is None and self.keep_days is None:
            raise ValueError("give keep_last, keep_days or both (without a retention block nothing is retired)")
        return self

    def describe(self) -> str:
        """The policy in words, for a verdict: ``keep_last 5, keep_days 30d``."""
        parts = []
        if self.keep_last is not None:
            parts.append(f"keep_last {self.keep_last}")
        if self.keep_days is not None:
            parts.append(f"keep_days {_days(self.keep_days)}")
        return ", ".join(parts)


def _days(value: timedelta) -> str:
    hours = value.total_seconds() / 3600
    if hours >= 24 and hours % 24 == 0:
        return f"{int(hours // 24)}d"
    return f"{hours:g}h"


# The shortest period the watchdog applies retention at: each run lists every published image of the
# pipeline (every region, every launch template on AWS), which a daily run does as well as a quick one.
MIN_EVERY = timedelta(hours=1)


class PipelineRetentionSpec(RetentionSpec):
    """The pipeline's retention, which may also say how often the watchdog applies it."""

    every: Duration | None = Field(
        default=None,
        description="the watchdog applies this retention (deletes, records) once per this period, like 1d "
        "(at least 1h); without it only imagebuild retention --apply does",
    )

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < MIN_EVERY:
            raise ValueError("must be at least 1h (each run lists every published image of the pipeline)")
        return value
