"""A spec's ``reuse:`` block: a new build starts from an earlier build's work when nothing it
depends on changed (#32; build/reuse.py decides, docs/concepts/reuse.md explains).

::

    reuse: {}                          # on, with the defaults below
    reuse: {unchanged: rebuild, keep_checkpoints: false}

Without the block every build is cold, as before. With it, a new build of the pipeline compares the
fingerprint chain its milestones would record now with what earlier builds of the pipeline recorded,
and starts from the newest checkpoint whose chain matches (the milestones before it are recorded as
``reused``). ``unchanged`` says what a build does when its whole chain matches the newest delivered
build's: ``reuse`` delivers that build's image again without building (nothing is published again),
``rebuild`` builds anyway (from its newest checkpoint). ``keep_checkpoints``: the seal keeps the
build's checkpoint images so that tomorrow's build can start from them, until the next delivered
build (whose delivery deletes them); false: the seal deletes them as it does without the block
(``target.keep_checkpoints`` still keeps the ones it lists).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ReuseSpec(BaseModel):
    """Whether, and how, a new build starts from an earlier build's matching work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unchanged: Literal["reuse", "rebuild"] = Field(
        default="reuse",
        description="when nothing changed since the newest delivered build: reuse its image (deliver without "
        "building, nothing published again) or rebuild",
    )
    keep_checkpoints: bool = Field(
        default=True,
        description="the seal keeps the build's checkpoint images for the next build to start from, until the "
        "next delivered build deletes them; false: deleted at the seal as without reuse",
    )
    candidates: int = Field(
        default=3,
        ge=1,
        le=20,
        strict=True,
        description="how many earlier builds' checkpoints are tried, newest match first, before building cold "
        "(one may be gone, or copying it may fail)",
    )
