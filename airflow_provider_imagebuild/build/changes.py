"""What changed between two builds, milestone by milestone, from the inputs their attempts recorded.

``imagebuild build diff A B`` shows every milestone; a failure notice and the failed build's page
show what changed since the pipeline's last delivered build at and before the failing milestone
(:func:`changes_since`), the first thing an operator wants at 7 a.m. The failing milestone's own
inputs come from its failed attempt (a failed attempt records what it started from too).

Other parts of the provider may add changes of their own (the packages of an SBOM that differ,
say) through :func:`add_change_source`: each source gets the two records and a milestone and
returns more :class:`InputChange` rows, shown with the recorded ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_imagebuild.build.fingerprint import PREVIOUS, SECRET, InputChange, changed_inputs, kind_of
from airflow_provider_imagebuild.build.record import COMPLETED, REUSED, Attempt, BuildRecord

# (before, after, milestone code) -> more changes at that milestone.
ChangeSource = Callable[[BuildRecord, BuildRecord, int], list[InputChange]]
_SOURCES: list[ChangeSource] = []


def add_change_source(source: ChangeSource) -> None:
    """Let ``source`` add its own changes to every diff (registered once, at import)."""
    if source not in _SOURCES:
        _SOURCES.append(source)


@dataclass(frozen=True)
class ReusedAt:
    """Build ``build_id`` did not run the milestone: it took build ``source``'s milestone ``state``
    (its attempt of kind ``reused``), fingerprint and inputs included."""

    build_id: str
    source: str
    state: int

    def text(self) -> str:
        return f"build {self.build_id} reused it from build {self.source} (milestone {self.state})"

    def to_public(self) -> dict[str, Any]:
        return {"build_id": self.build_id, "from": self.source, "state": self.state}


@dataclass(frozen=True)
class MilestoneDiff:
    """One milestone of two builds: their fingerprints and the inputs that differ. ``known`` is
    False when either side recorded no inputs (not reached, skipped, or recorded before
    fingerprints existed): then nothing can be said of it. ``reused``: the sides whose result
    was taken from another build; their fingerprints are equal because one was copied, not
    because the milestone ran twice on the same inputs."""

    code: int
    label: str
    before: str | None
    after: str | None
    changes: list[InputChange] = field(default_factory=list)
    reused: list[ReusedAt] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return self.before is not None and self.after is not None

    @property
    def same(self) -> bool:
        return self.known and self.before == self.after

    @property
    def own_changes(self) -> list[InputChange]:
        """What changed at this milestone itself (not only an earlier one, through ``previous``)."""
        return [c for c in self.changes if c.name != PREVIOUS]

    def to_public(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "milestone": self.label,
            "known": self.known,
            "same": self.same,
            "fingerprint_before": self.before,
            "fingerprint_after": self.after,
            "changes": [c.to_public() for c in self.changes],
            "reused": [r.to_public() for r in self.reused],
        }


def made_from(rec: BuildRecord, code: int) -> Attempt | None:
    """The attempt whose inputs describe milestone ``code`` of ``rec``: the completed one, else the
    newest that recorded inputs (a failed attempt records what it started from)."""
    done = rec.completed_attempt(code)
    if done is not None and done.inputs is not None:
        return done
    tried = [a for a in rec.attempts_at(code) if a.inputs is not None]
    return tried[-1] if tried else None


def milestone_diff(before: BuildRecord, after: BuildRecord, code: int) -> MilestoneDiff:
    old, new = made_from(before, code), made_from(after, code)
    changes = changed_inputs(old.inputs, new.inputs) if old is not None and new is not None else []
    if old is not None and new is not None and old.fingerprint != new.fingerprint and not changes:
        # Only what is recorded without a digest can differ unseen: a secret-named variable.
        secrets = sorted(name for name, shown in (new.inputs or {}).items() if shown == SECRET)
        changes = [InputChange(name, kind_of(name), SECRET, SECRET) for name in secrets]
    for source in _SOURCES:
        changes += source(before, after, code)
    return MilestoneDiff(
        code,
        after.label(code) if code in after.plan else before.label(code),
        old.fingerprint if old is not None else None,
        new.fingerprint if new is not None else None,
        changes,
        [r for r in (_reused_at(before, old), _reused_at(after, new)) if r is not None],
    )


def _reused_at(rec: BuildRecord, attempt: Attempt | None) -> ReusedAt | None:
    """Whose result ``attempt`` holds when it took it from another build (a completed reused one)."""
    if attempt is None or attempt.kind != REUSED or attempt.status != COMPLETED or not attempt.reused_from:
        return None
    return ReusedAt(rec.build_id, str(attempt.reused_from["build_id"]), int(attempt.reused_from["state"]))


def build_diff(before: BuildRecord, after: BuildRecord) -> list[MilestoneDiff]:
    """Every milestone of either plan (registration aside), in code order."""
    codes = sorted((set(before.plan) | set(after.plan)) - {before.plan[0], after.plan[0]})
    return [milestone_diff(before, after, code) for code in codes]


def last_delivered(builds: Iterable[BuildRecord], rec: BuildRecord) -> BuildRecord | None:
    """The newest build of ``rec``'s pipeline delivered before ``rec`` was created (same cloud and
    image type: another pipeline's build says nothing of this one)."""
    found = [
        b
        for b in builds
        if b.build_id != rec.build_id
        and (b.pipeline, b.cloud, b.image_type) == (rec.pipeline, rec.cloud, rec.image_type)
        and b.delivered
        and b.delivered_at is not None
        and b.delivered_at <= rec.created_at
    ]
    return max(found, key=lambda b: str(b.delivered_at), default=None)


def changes_since(last: BuildRecord, rec: BuildRecord, upto: int) -> list[MilestoneDiff]:
    """The milestones at and before ``upto`` whose own inputs changed since ``last`` (a milestone
    that differs only because an earlier one did is left out: that one is listed)."""
    return [d for d in build_diff(last, rec) if d.code <= upto and d.own_changes]


def describe(change: InputChange) -> str:
    """``file ../ansible/30-monitoring.yml changed``, ``tool ansible-core 2.18.1 -> 2.19.0``,
    ``package openssl 3.0.15-1 -> 3.0.20-1`` (from :mod:`sbom.changes`' source)."""
    kind = change.kind if change.kind in ("package", "packages") else kind_of(change.name)
    name = change.name.split(":", 1)[1] if ":" in change.name and kind != change.name else change.name
    label = kind if kind == name else f"{kind} {name}"
    if kind == "packages":  # a change source could not compare two bills of materials: it says why
        return f"packages unknown: {change.after}"
    if kind == "package" and (change.before is None or change.after is None):
        return f"{label} {change.before or change.after} {'added' if change.before is None else 'removed'}"
    if change.before is None:
        return f"{label} added"
    if change.after is None:
        return f"{label} removed"
    if change.before == change.after == SECRET:
        return f"{label} may have changed (a secret: recorded without its digest)"
    if kind in ("tool", "source_image", "watch", "package") and len(change.before) <= 64 and len(change.after) <= 64:
        return f"{label} {change.before} -> {change.after}"
    return f"{label} changed"


def change_lines(diffs: Iterable[MilestoneDiff], limit: int = 12) -> list[str]:
    """One line per changed milestone (``30 · Monitoring: file ../ansible/30.yml changed; ...``),
    at most ``limit`` lines, the last saying how many more."""
    lines = []
    for diff in diffs:
        own = diff.own_changes
        if not own:
            continue
        shown = "; ".join(describe(c) for c in own[:6])
        more = f"; and {len(own) - 6} more" if len(own) > 6 else ""
        lines.append(f"{diff.label}: {shown}{more}")
    if len(lines) > limit:
        return [*lines[: limit - 1], f"... and {len(lines) - limit + 1} more milestones"]
    return lines


@dataclass(frozen=True)
class ChangesSince:
    """What changed at and before a failing milestone since the pipeline's last delivered build:
    for a failure notice and the failed build's page."""

    since: str  # the last delivered build's id
    delivered_at: str
    upto: int
    lines: list[str]
    unknown: bool = False  # neither build recorded what the milestones were made from

    def headline(self) -> str:
        if self.unknown:
            return f"what changed since build {self.since} (the last delivered) is unknown: it recorded no fingerprints"
        if not self.lines:
            return (
                f"no recorded input of milestones up to {self.upto} changed since build {self.since} (the last "
                "delivered): look beyond the spec, files, tools and watched values"
            )
        return f"what changed since build {self.since} (the last delivered, {self.delivered_at}):"

    def text_lines(self) -> list[str]:
        return [self.headline(), *self.lines]

    def to_public(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "delivered_at": self.delivered_at,
            "upto": self.upto,
            "unknown": self.unknown,
            "headline": self.headline(),
            "lines": list(self.lines),
        }


def what_changed(rec: BuildRecord, builds: Iterable[BuildRecord], upto: int) -> ChangesSince | None:
    """What changed at and before milestone ``upto`` of ``rec`` since its pipeline's last delivered
    build (None: the pipeline has delivered nothing before it)."""
    last = last_delivered(builds, rec)
    if last is None or last.delivered_at is None:
        return None
    diffs = [d for d in build_diff(last, rec) if d.code <= upto]
    if not any(d.known for d in diffs):
        return ChangesSince(last.build_id, last.delivered_at, upto, [], unknown=True)
    return ChangesSince(last.build_id, last.delivered_at, upto, change_lines(diffs))
