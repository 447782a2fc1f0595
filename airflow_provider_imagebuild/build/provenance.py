"""Where a build's milestones came from, in the words every reader uses (#32): ``imagebuild build
show`` and ``history``, the build page and the API say the same sentence for the same record.

A milestone a new build took from an earlier build (``build/reuse.py``) holds a completed attempt of
kind ``reused`` naming its source; it did no work, so a reader that showed it as an ordinary
completed milestone would let an operator believe the playbook ran tonight. Only the attempt that
holds the milestone's result counts: a reused milestone redone later ran for real and is not
"reused" any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_imagebuild.build.record import REUSED, BuildRecord
from airflow_provider_imagebuild.build.reuse import delivered_unchanged


@dataclass(frozen=True)
class Taken:
    """Milestone ``code`` of a build holds build ``build_id``'s milestone ``state``'s result."""

    code: int
    build_id: str
    state: int

    def text(self) -> str:
        return f"reused from build {self.build_id} (milestone {self.state})"

    def to_public(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "state": self.state, "text": self.text()}


def reused_milestones(rec: BuildRecord) -> dict[int, Taken]:
    """The milestones of ``rec`` whose result was taken from another build, in plan order."""
    found = {}
    for code in rec.plan:
        attempt = rec.completed_attempt(code)
        if attempt is not None and attempt.kind == REUSED and attempt.reused_from:
            origin = attempt.reused_from
            found[code] = Taken(code, str(origin["build_id"]), int(origin["state"]))
    return found


def unchanged_text(source: str) -> str:
    return f"nothing changed since build {source}: its image delivered again"


@dataclass(frozen=True)
class Reuse:
    """What a build took from earlier builds: each reused milestone, and ``unchanged``, the build
    whose image it delivered again because nothing changed (None: it built something itself)."""

    taken: dict[int, Taken]
    unchanged: str | None

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(t.build_id for t in self.taken.values()))

    @property
    def span(self) -> str:
        """``milestones 5..30`` (or ``milestone 5``): the reused ones, consecutive from the first."""
        codes = list(self.taken)
        return f"milestones {codes[0]}..{codes[-1]}" if len(codes) > 1 else f"milestone {codes[0]}"

    def headline(self) -> str:
        if self.unchanged is not None:
            return unchanged_text(self.unchanged)
        return f"{self.span} reused from build {', '.join(self.sources)}"

    def to_public(self) -> dict[str, Any]:
        """What ``build show --json`` and the API's build carry as ``reuse``."""
        return {
            "headline": self.headline(),
            "delivered_unchanged": self.unchanged,
            "milestones": {str(code): t.to_public() for code, t in self.taken.items()},
        }


def reuse_of(rec: BuildRecord, taken: dict[int, Taken] | None = None) -> Reuse | None:
    """What ``rec`` reused (None: nothing). Delivered unchanged only while its last milestone's
    result is still the reused one (:func:`..build.reuse.delivered_unchanged`)."""
    taken = reused_milestones(rec) if taken is None else taken
    if not taken:
        return None
    return Reuse(taken, delivered_unchanged(rec))


def reuse_headline(rec: BuildRecord, taken: dict[int, Taken] | None = None) -> str | None:
    """One line for the whole build, or None when it reused nothing."""
    found = reuse_of(rec, taken)
    return found.headline() if found is not None else None


def reuse_view(rec: BuildRecord) -> dict[str, Any] | None:
    found = reuse_of(rec)
    return found.to_public() if found is not None else None
