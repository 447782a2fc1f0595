"""A new build taking an earlier build's work instead of doing it again (#32).

The first milestone after registration of a new build, holding its lease, asks here before it
runs (the spec's ``reuse:`` block, :mod:`..spec.reuse`): the chain its milestones would record now
(:meth:`..fingerprints.FingerprintSource.chain`) is compared with what earlier builds of the
pipeline recorded (:mod:`..build.reuse`). Nothing changed since the newest delivered build (and
``unchanged: reuse``): the whole build is recorded as reusing it and is delivered, its image being
that build's. Else, from the furthest matching checkpoint: the target copies the checkpoint image
into the new build's ownership (``Target.adopt_checkpoint``), and the milestones up to it are
recorded as reused, the copy as the last one's checkpoint; the next milestone launches the build
host from it. A copy that fails is the target's to clean up; the next candidate is tried, and
after the last one the milestone runs as any cold build's.

Only a build that has done nothing yet reuses: a resumed, reset or redone build runs what it is
told to run for real (a reset to a reused milestone runs it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_imagebuild.build.checkpoints import CHECKPOINT_OUTPUT
from airflow_provider_imagebuild.build.holdings import HOST_ID, IMAGE_OUTPUT
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.build.reuse import (
    ReuseChoice,
    checkpoint_sources,
    delivered_images,
    image_maker,
    shown,
    taken,
    unchanged_source,
)
from airflow_provider_imagebuild.errors import Conflict, ImageBuildError, first_line
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.store import BuildStore, ListFilter

if TYPE_CHECKING:
    from airflow_provider_imagebuild.fingerprints import FingerprintSource
    from airflow_provider_imagebuild.targets.base import Target


class MilestoneOperator(Protocol):
    """What of a milestone task reuse reads (operators/base.py's, named here without importing it)."""

    state: int
    made_from: FingerprintSource | None

    @property
    def log(self) -> Any: ...  # Airflow's task logger


REUSE_METADATA = "reused_from"  # the build the new one started from, and how far: "build-id@30"


def fresh(rec: BuildRecord, state: int) -> bool:
    """Whether ``rec`` has done nothing yet but begin milestone ``state`` (its first after
    registration): no other milestone was attempted, nothing was reset, skipped or completed, and
    no earlier try left a build host (a bootstrap that failed after making it): the next milestone
    would reconnect to that host, not launch from the copied checkpoint, and the reused
    milestones' work would not be on it."""
    plan = list(rec.plan)
    if len(plan) < 2 or state != plan[1] or rec.metadata.get(HOST_ID):
        return False
    if any(a.state not in (plan[0], state) or (a.status == "completed" and a.state == state) for a in rec.attempts):
        return False
    return not any(e.kind in ("reset", "skip", "reuse") for e in rec.events)


def reuse_earlier_work(
    op: MilestoneOperator, store: BuildStore, rec: BuildRecord, session: MilestoneSession
) -> BuildRecord | None:
    """Take what an earlier build did, if anything matches; the record after it, or None (run cold)."""
    source = op.made_from
    settings = source.spec.reuse if source is not None else None
    if source is None or settings is None or not fresh(rec, op.state):
        return None
    target = _target(op)
    resolve = None
    if target is not None:
        from airflow_provider_imagebuild.targets.source_images import source_image_id

        resolve = lambda: source_image_id(target)  # noqa: E731
    chain = source.chain(list(rec.plan[1:]), resolve, op.log.info)
    builds, _ = store.scan_builds(ListFilter(pipeline=rec.pipeline))
    if settings.unchanged == "reuse":
        whole = unchanged_source(builds, rec, chain)
        if whole is not None and _still_delivered(op, target, builds, whole):
            op.log.info("nothing changed since build %s (delivered %s): its image is delivered again, nothing is "
                        "built", whole.source.build_id, whole.source.delivered_at)  # fmt: skip
            return _record(op, session, rec, whole, None)
    choices = checkpoint_sources(builds, rec, chain)
    if not choices:
        op.log.info("reuse: no earlier build of %s matches up to a checkpoint; this build runs every milestone",
                    rec.pipeline)  # fmt: skip
        return None
    if target is None:
        return None
    for choice in choices[: settings.candidates]:
        if session.lost:  # another try took the build over: it decides, this one copies nothing more
            raise Conflict(f"reuse stopped, the lease was lost: {session.lost}")
        op.log.info("reuse: starting from %s", choice.describe())
        try:
            assert choice.checkpoint is not None
            adopted = target.adopt_checkpoint(rec, choice.source, choice.checkpoint)
        except (ImageBuildError, OSError, ValueError) as exc:  # gone, not provably the source's, a copy refused
            op.log.warning("reuse: %s cannot be used: %s", choice.describe(), first_line(exc))
            continue
        try:
            return _record(op, session, rec, choice, adopted)
        except BaseException:
            _forget(op, store, session, target, rec, adopted)  # not recorded: nothing would ever name the copy
            raise
    op.log.info("reuse: no matching checkpoint could be used; this build runs every milestone")
    return None


def _target(op: MilestoneOperator) -> Target | None:
    """The build's target (the first milestone may be a command one, without a target of its own)."""
    getter = getattr(op, "get_target", None)
    if getter is not None:
        found: Target = getter()
        return found
    if op.made_from is None:
        return None
    from airflow_provider_imagebuild.lifecycle import target_of

    return target_of(op.made_from.spec)


def _record(
    op: MilestoneOperator,
    session: MilestoneSession,
    rec: BuildRecord,
    choice: ReuseChoice,
    adopted: dict[str, Any] | None,
) -> BuildRecord:
    items = taken(choice, list(rec.plan), op.state, adopted)
    session.set_metadata({REUSE_METADATA: f"{choice.source.build_id}@{choice.upto}"}, actor=f"milestone {op.state}")
    done = session.reuse(choice.source.build_id, items)
    codes = [code for code, *_ in items]
    op.log.info("milestones %s of build %s reused from build %s (%d of %d milestones)", ", ".join(map(str, codes)),
                rec.build_id, choice.source.build_id, len(codes), len(rec.plan) - 1)  # fmt: skip
    return done


def _still_delivered(
    op: MilestoneOperator, target: Target | None, builds: list[BuildRecord], whole: ReuseChoice
) -> bool:
    """Whether the image ``whole.source`` delivered is still there, provably the build's that made
    it: retention records what it retires, but an image deleted by hand (or by a cloud's own
    lifecycle rule) is known only to the target. A build delivered with an image that is gone would
    be a green build nobody can launch; it builds instead (from a matching checkpoint, if any)."""
    image = whole.source.merged_outputs().get(IMAGE_OUTPUT)
    if not image:
        return True  # a pipeline that delivers no image (commands only): nothing to prove
    maker = image_maker(builds, whole.source)
    if target is None or maker is None:
        why = "the build that made it is not in the store" if maker is None else "no target to ask"
    else:
        try:
            if target.owns_image(maker, str(image)):
                return True
            why = f"it is gone, or not build {maker.build_id}'s"
        except (ImageBuildError, OSError, ValueError) as exc:
            why = f"the {target.name} target could not check it: {first_line(exc)}"
    op.log.warning("nothing changed since build %s, but its image %s is not delivered again (%s); this build builds",
                   whole.source.build_id, shown(image), why)  # fmt: skip
    return False


def _forget(
    op: MilestoneOperator,
    store: BuildStore,
    session: MilestoneSession,
    target: Target,
    rec: BuildRecord,
    adopted: dict[str, Any],
) -> None:
    """Delete the copy a reuse that was not recorded made, only once the store shows it was not: the
    lease still this attempt's and nothing recorded. A write whose answer was lost (it may have been
    made), or a lease another try took over (it may record this very copy: adopting is idempotent),
    keeps it; what no record names then is gc's, the copy being marked as the build's."""
    image = adopted.get(CHECKPOINT_OUTPUT)
    if not image:
        return
    try:
        now = store.get(rec.build_id)
    except ImageBuildError as exc:
        op.log.warning("reuse: the copied checkpoint %s is kept (the store could not say whether it is recorded: %s)",
                       shown(image), first_line(exc))  # fmt: skip
        return
    if now.lease is None or now.lease.token != session.token:
        op.log.warning("reuse: the copied checkpoint %s is kept: the reuse may be recorded (the lease is over)",
                       shown(image))  # fmt: skip
        return
    try:
        target.discard(rec, [str(image)])
    except Exception as exc:  # the error being raised matters more
        op.log.warning("reuse: the copied checkpoint %s was not deleted: %s", image, exc)


def release_earlier_checkpoints(op: MilestoneOperator, store: BuildStore, rec: BuildRecord, target: Target) -> None:
    """Once ``rec`` is delivered, the checkpoints earlier delivered builds of the pipeline kept for
    reuse (``reuse.keep_checkpoints``: the seal listed them in ``checkpoints_kept_for_reuse``) are
    not needed any more: ``rec``'s own are newer, and a build matching an older one matches
    ``rec``'s as well, or it changed at or before them. Done at every delivery, whatever ``rec``'s
    spec says now (a ``reuse:`` block removed since must not leave them for good). Each is recorded
    as deleted in its build's metadata before the target deletes it (a reset of that build must
    not launch from it), and only what the target proves that build's is deleted. A checkpoint the
    seal did not keep for reuse (one ``target.keep_checkpoints`` keeps for a redo) is never
    touched. Never fails the delivery."""
    from airflow_provider_imagebuild.build.checkpoints import (
        DISCARDED_METADATA,
        KEPT_FOR_REUSE,
        discarded_checkpoints,
    )
    from airflow_provider_imagebuild.build.holdings import checkpoint_images

    kept = set(getattr(getattr(op.made_from.spec, "target", None), "keep_checkpoints", []) if op.made_from else [])
    try:
        builds, _ = store.scan_builds(ListFilter(pipeline=rec.pipeline, status="completed"))
    except ImageBuildError as exc:
        op.log.warning("earlier builds' checkpoints are kept: the store could not list them: %s", exc)
        return
    # A checkpoint that is also what a build delivered (a pipeline whose last Packer milestone makes
    # the image it publishes, without a seal) is the product, not a checkpoint: retention's to retire.
    delivered = {image for b in [*builds, rec] if b.delivered for image in delivered_images(b)}
    # Only where ``rec`` has a checkpoint of its own: a build that started from an earlier one's
    # checkpoint after 25 has none after 10, and tomorrow's build changed at 15 starts from that one.
    own = set(checkpoint_images(rec)) - {c for c, _ in discarded_checkpoints(rec)}
    for earlier in builds:
        if earlier.build_id == rec.build_id or not earlier.delivered or earlier.cloud != rec.cloud:
            continue
        if earlier.delivered_at is None or rec.delivered_at is None or earlier.delivered_at >= rec.delivered_at:
            continue
        gone = discarded_checkpoints(earlier)
        for_reuse = discarded_checkpoints(earlier, KEPT_FOR_REUSE)
        images = {c: i for c, i in checkpoint_images(earlier).items()
                  if c not in kept and (c, earlier.milestones[c].attempt) in for_reuse - gone}  # fmt: skip
        images = {c: i for c, i in images.items() if i not in delivered and c in own}
        if not images:
            continue
        listed = ",".join(f"{c}@{a}" for c, a in sorted(gone | {(c, earlier.milestones[c].attempt) for c in images}))
        try:
            store.set_metadata(earlier.build_id, {DISCARDED_METADATA: listed}, actor=f"build {rec.build_id}")
            deleted = target.discard(earlier, list(images.values()))
        except Exception as exc:  # the delivery stands; gc or the next delivery tries again
            op.log.warning("build %s's checkpoints kept for reuse were not deleted: %s", earlier.build_id, exc)
            continue
        op.log.info("deleted build %s's checkpoints kept for reuse (build %s is newer): %s", earlier.build_id,
                    rec.build_id, ", ".join(deleted) or "none found")  # fmt: skip
