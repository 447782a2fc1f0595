"""Which earlier build's work a new build can take instead of doing it again (#32).

Plain reads of build records (no target, no store, no Airflow): a new build knows the fingerprint
chain its milestones would record now (:meth:`..fingerprints.FingerprintSource.chain`); an earlier
build of the same pipeline recorded one per milestone it reached. Where the two agree at milestone
``m``, they agree on everything up to ``m`` (each fingerprint is chained on the previous one): the
same spec entries, files, variables, source image, tools and watched values, and the same target
settings, so the same account, project and region. The new build can then start from that
build's newest checkpoint at or before ``m`` (:func:`checkpoint_sources`), or, when the whole chain
agrees with a delivered build's, deliver that build's image without building
(:func:`unchanged_source`).

What is taken is recorded as attempts of kind ``reused`` (``rules.reuse``) with the source's
fingerprint and inputs and its outputs, less what would make the new build look as if it held the
source's images (:func:`taken_outputs`): the checkpoint the new build starts from is its own copy,
made by the target (``Target.adopt_checkpoint``), never the source's image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_imagebuild.build.checkpoints import CHECKPOINT_OUTPUT, Checkpoint, latest_checkpoint
from airflow_provider_imagebuild.build.fingerprint import MilestoneFingerprint
from airflow_provider_imagebuild.build.holdings import IMAGE_OUTPUT, PACKER_IMAGES_OUTPUT
from airflow_provider_imagebuild.build.record import BuildRecord

# Outputs naming a checkpoint image: the source's, never taken (the new build records its copy's).
CHECKPOINT_OUTPUTS = frozenset({CHECKPOINT_OUTPUT, "checkpoint_sha256", "checkpoint_gb"})
# Outputs naming an image a milestone staged on the way (the green image, Packer's per-region
# artifacts, the sealed image): a build not delivered holds them (build/holdings.py), so a partial
# reuse leaves them out; a whole reuse keeps the sealed image, the delivered product it reuses.
STAGED_OUTPUTS = frozenset({IMAGE_OUTPUT, PACKER_IMAGES_OUTPUT})


@dataclass(frozen=True)
class ReuseChoice:
    """Start ``build`` from ``source``: its milestones up to ``upto`` are taken; ``checkpoint`` is
    the source's image the new build copies and launches its host from (None: the whole build is
    taken, nothing changed)."""

    source: BuildRecord
    upto: int
    checkpoint: Checkpoint | None

    def describe(self) -> str:
        """For the task log (:func:`shown`: the recorded id is the store's word, not the target's)."""
        if self.checkpoint is None:
            return f"build {self.source.build_id} (nothing changed since)"
        return f"build {self.source.build_id}'s checkpoint after milestone {self.upto} ({shown(self.checkpoint.image)})"


def shown(value: object) -> str:
    """An id a record holds as the task log shows it: escaped and cut, since whoever can write the
    store wrote it (a newline in it must not forge a log line, a megabyte must not flood the log)."""
    text = str(value).encode("unicode_escape").decode("ascii")
    return text if len(text) <= 200 else f"{text[:200]}... ({len(str(value))} characters)"


def _candidates(builds: Iterable[BuildRecord], build: BuildRecord) -> list[BuildRecord]:
    """Earlier builds that may be reused from: the same pipeline and cloud, not this one, not given
    up (an abandoned build's images are deleted), newest first."""
    found = [
        b
        for b in builds
        if b.build_id != build.build_id
        and b.pipeline == build.pipeline
        and b.cloud == build.cloud
        and not b.abandoned
        and b.created_at <= build.created_at
    ]
    return sorted(found, key=lambda b: (b.created_at, b.build_id), reverse=True)


def _matches(source: BuildRecord, plan: list[int], chain: Mapping[int, MilestoneFingerprint], upto: int) -> bool:
    """Whether ``source`` reached every milestone of ``plan`` up to ``upto`` with the fingerprint the
    chain gives it now, in the same plan order, and recorded what each was made from."""
    codes = [c for c in plan[1:] if c <= upto]
    if not codes or source.plan[: len(codes) + 1] != plan[: len(codes) + 1]:
        return False
    for code in codes:
        attempt = source.completed_attempt(code)
        if attempt is None or attempt.fingerprint is None or attempt.inputs is None:
            return False
        if code in chain and attempt.fingerprint != chain[code].fingerprint:
            return False
    return all(code in chain for code in codes)


def unchanged_source(
    builds: Iterable[BuildRecord], build: BuildRecord, chain: Mapping[int, MilestoneFingerprint]
) -> ReuseChoice | None:
    """The newest delivered build whose whole chain is the one ``build`` would record now."""
    last = build.plan[-1]
    builds = list(builds)
    retired = " ".join(e.detail for b in builds for e in b.events if e.kind == "retire")
    for source in _candidates(builds, build):
        if any(image in retired for image in delivered_images(source)):
            continue  # retention deleted (some of) what it delivered: it is not delivered again
        if source.delivered and source.plan == build.plan and _matches(source, build.plan, chain, last):
            return ReuseChoice(source, last, None)
    return None


def delivered_images(build: BuildRecord) -> list[str]:
    """The ids of what ``build`` delivered: the sealed image and each published copy. Retention
    records a retirement on the build it judged the image's (the one that made it, or the newest
    delivered one when that record is gone), so every build's retire events are searched for them."""
    outputs = build.merged_outputs()
    found = [str(outputs[IMAGE_OUTPUT])] if outputs.get(IMAGE_OUTPUT) else []
    copies = outputs.get("published_images")
    if isinstance(copies, Mapping):
        found += [str(v) for v in copies.values() if v]
    return [image for image in found if len(image) >= 4]  # never a short id matching any text


def checkpoint_sources(
    builds: Iterable[BuildRecord], build: BuildRecord, chain: Mapping[int, MilestoneFingerprint]
) -> list[ReuseChoice]:
    """Each earlier build's newest checkpoint whose milestones up to it match the chain, the
    furthest first (the newest build first among equals). A checkpoint the seal deleted is not one."""
    found = []
    for source in _candidates(builds, build):
        matched = [c for c in build.plan[1:] if _matches(source, build.plan, chain, c)]
        if not matched:
            continue
        checkpoint = latest_checkpoint(source, matched[-1] + 1)
        if checkpoint is not None and checkpoint.code in matched:
            found.append(ReuseChoice(source, checkpoint.code, checkpoint))
    return sorted(found, key=lambda c: c.upto, reverse=True)  # stable: newest build first among equals


def taken_outputs(choice: ReuseChoice, code: int, adopted: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Milestone ``code``'s outputs as the new build records them: the source's, without its
    checkpoint image (and, in a partial reuse, without the images it staged); the milestone the
    new build starts from gets ``adopted``, the target's outputs for its own copy. Where that
    milestone's image was its checkpoint too (a Packer milestone's: a pipeline without a seal
    publishes it), the copy is the new build's image as well: without one, its publish would find
    no image, and with the source's, it would publish an image it does not own."""
    dropped = CHECKPOINT_OUTPUTS if choice.checkpoint is None else CHECKPOINT_OUTPUTS | STAGED_OUTPUTS
    made = choice.source.milestones[code].outputs
    outputs = {k: v for k, v in made.items() if k not in dropped}
    if choice.checkpoint is not None and code == choice.upto:
        outputs.update(adopted or {})
        copy = (adopted or {}).get(CHECKPOINT_OUTPUT)
        if copy and made.get(IMAGE_OUTPUT) and made.get(IMAGE_OUTPUT) == made.get(CHECKPOINT_OUTPUT):
            outputs[IMAGE_OUTPUT] = copy
    return outputs


def taken(
    choice: ReuseChoice, plan: list[int], start: int, adopted: Mapping[str, Any] | None = None
) -> list[tuple[int, dict[str, Any], str, dict[str, str]]]:
    """What ``store.reuse`` records, from milestone ``start`` (the lease's) to ``choice.upto``:
    (code, outputs, fingerprint, inputs) per milestone, the source's fingerprint and inputs."""
    found = []
    for code in plan[plan.index(start) :]:
        if code > choice.upto:
            break
        attempt = choice.source.completed_attempt(code)
        assert attempt is not None and attempt.fingerprint is not None and attempt.inputs is not None  # _matches
        found.append((code, taken_outputs(choice, code, adopted), attempt.fingerprint, dict(attempt.inputs)))
    return found


def reused_from(build: BuildRecord) -> str | None:
    """The build whose results ``build`` took (its first reused attempt's source), or None."""
    for attempt in build.attempts:
        if attempt.kind == "reused" and attempt.reused_from:
            return str(attempt.reused_from["build_id"])
    return None


def image_maker(builds: Iterable[BuildRecord], source: BuildRecord) -> BuildRecord | None:
    """The build that made the image ``source`` delivers: itself, or, when it delivered an earlier
    build's image again (and that one perhaps another's), the first of the chain; None when a build
    of the chain is not among ``builds`` (pruned) or the chain loops. Only the maker's tags or path
    prove the image, so a whole reuse checks it there (operators/reuse.py)."""
    by_id = {b.build_id: b for b in builds}
    seen = {source.build_id}
    while (earlier := delivered_unchanged(source)) is not None:
        if earlier in seen or earlier not in by_id:
            return None
        seen.add(earlier)
        source = by_id[earlier]
    return source


def delivered_unchanged(build: BuildRecord) -> str | None:
    """The build whose image ``build`` delivered again because nothing changed (its last
    milestone was reused), or None: what the build page and retention follow."""
    attempt = build.completed_attempt(build.plan[-1])
    if attempt is not None and attempt.kind == "reused" and attempt.reused_from:
        return str(attempt.reused_from["build_id"])
    return None
