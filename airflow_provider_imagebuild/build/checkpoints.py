"""Checkpoints as a build records them, and the one rule that decides whether a build can run
again from a milestone.

Plain reads of a :class:`BuildRecord` (no target, no store, no Airflow): a checkpoint image is a
milestone output (``checkpoint_image``), the seal lists the ones it deleted in the build's
metadata, and the publish marks the build host released. From those alone :func:`resume_problem`
tells whether a reset or a redo to a milestone would leave the build nothing to start from. It
lives here, below the store, so that the store's ``reset`` enforces it for every caller (the CLI,
the API, a redo, the Concourse resource, and any entry point added later) on the very record it
changes, instead of each caller remembering to ask first. The targets module re-exports these
names for its callers.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_imagebuild.build.record import BuildRecord

CHECKPOINT_OUTPUT = "checkpoint_image"
# The checkpoints seal deleted, as "code@attempt" of the milestone that captured each: "10@1,30@2".
DISCARDED_METADATA = "checkpoints_discarded"
# The checkpoints the seal kept for the next build to start from (spec reuse.keep_checkpoints), in
# the same form: what a later delivery of the pipeline deletes (operators/reuse.py), and nothing else.
KEPT_FOR_REUSE = "checkpoints_kept_for_reuse"


@dataclass(frozen=True)
class Checkpoint:
    code: int
    image: str


def discarded_checkpoints(build: BuildRecord, key: str = DISCARDED_METADATA) -> set[tuple[int, int]]:
    """(milestone, attempt) of each checkpoint image the seal deleted. Kept in the build's
    metadata, not in the seal's outputs: a reset that un-completes the seal must not bring those
    images back, while a later attempt at the milestone captures a new, usable one. ``key``
    :data:`KEPT_FOR_REUSE`: those it kept for the next build instead."""
    found = set()
    for item in build.metadata.get(key, "").split(","):
        code, _, attempt = item.strip().partition("@")
        if code.isdigit() and attempt.isdigit():
            found.add((int(code), int(attempt)))
    return found


def _deleted(build: BuildRecord, code: int, gone: set[tuple[int, int]]) -> bool:
    return (code, build.milestones[code].attempt) in gone


def latest_checkpoint(build: BuildRecord, before: int) -> Checkpoint | None:
    """The newest checkpoint image captured after a completed milestone earlier than ``before``
    (and not deleted since)."""
    gone = discarded_checkpoints(build)
    for code in sorted(build.completed, reverse=True):
        if code >= before or _deleted(build, code, gone):
            continue
        image = build.milestones[code].outputs.get(CHECKPOINT_OUTPUT)
        if image:
            return Checkpoint(code, str(image))
    return None


def resume_problem(build: BuildRecord, code: int) -> str | None:
    """Why the build cannot run again from milestone ``code``, or None. After delivery the build
    host is released and the seal has deleted the checkpoints it was not told to keep: a milestone
    after the host's first image then has nothing to start from. Said before a reset or a redo
    changes anything, rather than by a run that fails at the relaunch."""
    meta = build.metadata
    reused = None if meta.get("host_id") else _reused_before(build, code)  # no live host to go on with
    if reused is not None:
        return reused
    if not meta.get("host_released") or meta.get("host_id"):
        return None  # a live host, or a build without one (shell pipelines)
    recorded = str(meta.get("host_checkpoint") or "0")
    first = int(recorded) if recorded.isascii() and recorded.isdigit() else 0  # never a traceback from a reset
    if code <= first or latest_checkpoint(build, code) is not None:
        return None
    gone = sorted({c for c, _ in discarded_checkpoints(build) if c < code})
    deleted = (
        f"the seal deleted the checkpoint images of milestones {', '.join(map(str, gone))}"
        if gone
        else "no checkpoint image was captured before it"
    )
    return (
        f"build {build.build_id} cannot run again from milestone {code}: its build host was released at "
        f"delivery and {deleted}. Redo from {first or 'the first milestone'} to rebuild, or list the "
        "checkpoints to keep in the pipeline's target.keep_checkpoints"
    )


def _reused_before(build: BuildRecord, code: int) -> str | None:
    """Why the released build cannot run again from ``code`` when the milestones before it were
    taken from another build (#32, build/reuse.py): their work is on no image of this build but the
    checkpoint it copied after them, so a host for ``code`` has nothing to start from. Redone from
    the first milestone, every reused milestone runs for real."""
    plan = list(build.plan)
    first = plan[1] if len(plan) > 1 else code
    if code <= first or latest_checkpoint(build, code) is not None:
        return None
    before = [c for c in plan if first <= c < code]
    taken = [c for c in before if (a := build.completed_attempt(c)) is not None and a.kind == "reused"]
    if not taken:
        return None
    source = next(a.reused_from for a in build.attempts if a.kind == "reused" and a.reused_from)
    return (
        f"build {build.build_id} cannot run again from milestone {code}: milestones "
        f"{', '.join(map(str, taken))} were reused from build {(source or {}).get('build_id')} and no checkpoint "
        f"of this build comes before {code}. Redo from {first} to run them for real"
    )
