"""Retention of published images: which of a pipeline's published images may be deleted, and why
each other one stays. Pure rules over what a target listed and what the store knows; the targets
list and delete (:mod:`..targets.retire`), ``imagebuild retention`` drives both.

Not to be confused with :mod:`.retention`, which decides which build *records* ``store prune``
may remove: this module decides about the *images* those builds published.

The images of one destination are taken build by build (an AMI and its copies in other regions
are one build's release) and ranked newest first by when the build was delivered (its record's
``delivered_at``; the images' own creation time when the store no longer has the record). Then,
in this order, an image **stays**:

1. when its build is neither delivered nor abandoned nor unknown to the store: it is running,
   waiting or failed, and a resume may still publish it (a build reset after its delivery too);
2. when it is the newest delivered build's, whatever the policy: what users find as "latest";
3. when it is one of the ``keep_last`` newest delivered builds' (a build unknown to the store,
   its record pruned after delivery, counts as delivered; an abandoned build never counts);
4. when it was published less than ``keep_days`` ago, or when its publication time is unknown
   and ``keep_days`` is given (it cannot be proven old);
5. when something still refers to it where the cloud lets a target check (a launch template,
   the gallery's latest, an SSM parameter, the catalog's ``latest``): named in the verdict.

Every other image is retired. A policy key left out protects nothing on its own; without a
policy nothing is judged at all (the caller keeps everything).

A build that found nothing changed delivers an earlier build's image again instead of building
(#32, :func:`..build.reuse.delivered_unchanged`): it publishes nothing of its own, and its record
names the build whose images it delivered. Those images are in use as long as that newer build's
are: they rank, and count for ``keep_last`` and ``keep_days``, as delivered when the newest build
that delivered them again was (:func:`delivered_again`), so the newest delivered build's image
is never retired, whoever built it (also once the earlier build's record is pruned).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from airflow_provider_imagebuild.build.ids import check_build_id
from airflow_provider_imagebuild.build.record import BuildRecord, parse_ts
from airflow_provider_imagebuild.build.reuse import delivered_unchanged
from airflow_provider_imagebuild.build.status import ABANDONED_BUILD, DELIVERED, build_status
from airflow_provider_imagebuild.errors import InvalidInput


@dataclass(frozen=True)
class PublishedImage:
    """One published image as the target describes it now, proven the pipeline's own."""

    id: str
    region: str  # where it is (a region, a location, a library; "" where there is one place)
    build_id: str  # the build it is tagged with ("" where only the build key is written)
    created_at: datetime | None  # None: the cloud does not say
    build_key: str = ""  # the digest some clouds carry instead of the build id
    name: str = ""  # its name, for people
    detail: dict[str, str] = field(default_factory=dict)  # what the target needs to delete it again

    @property
    def where(self) -> str:
        """The image with its place, as an event and a listing name it: ``ami-1 in eu-west-1``."""
        return f"{self.id} in {self.region}" if self.region else self.id


@dataclass(frozen=True)
class Verdict:
    image: PublishedImage
    build_id: str  # the build the image belongs to (the record's, else the image's tag)
    retire: bool
    why: str  # why it stays, or why it goes


@dataclass(frozen=True)
class DeliveredAgain:
    """The newest delivered build that delivered an earlier build's image again, and when."""

    by: str
    at: datetime


def delivered_again(records: Sequence[BuildRecord]) -> dict[str, DeliveredAgain]:
    """For each build whose images a delivered build of ``records`` delivered again (nothing
    changed, #32), the newest such delivery. Followed to the build that made the images: a build
    reusing one that itself reused delivers the first one's images (its outputs are copies). A
    chain that loops or names a build not in ``records`` (pruned) ends at the last build named."""
    by_id = {r.build_id: r for r in records}
    found: dict[str, DeliveredAgain] = {}
    for rec in records:
        if not rec.delivered or not rec.delivered_at:
            continue
        source = delivered_unchanged(rec)
        seen = {rec.build_id}
        while source is not None and source not in seen and source in by_id:
            seen.add(source)
            further = delivered_unchanged(by_id[source])
            if further is None:
                break
            source = further
        if source is None or source == rec.build_id:
            continue
        at = parse_ts(rec.delivered_at)
        if source not in found or found[source].at < at:
            found[source] = DeliveredAgain(rec.build_id, at)
    return found


@dataclass
class _Release:
    """One build's images at one destination."""

    build_id: str
    record: BuildRecord | None
    images: list[PublishedImage]
    status: str | None  # the build status; None: unknown to the store
    published_at: datetime | None  # when delivered: its own delivery, or a newer one of its images (again)
    again: DeliveredAgain | None = None  # the newest build that delivered its images again

    @property
    def counted(self) -> bool:
        """Whether it counts among the delivered builds ``keep_last`` keeps."""
        return self.status in (DELIVERED, None) or self.again is not None

    @property
    def delivered(self) -> bool:
        """Whether its images are what a delivered build of the store delivered."""
        return self.status == DELIVERED or self.again is not None


def _release(
    build_id: str,
    record: BuildRecord | None,
    images: list[PublishedImage],
    now: datetime,
    again: DeliveredAgain | None = None,
) -> _Release:
    status = build_status(record, now) if record is not None else None
    when: datetime | None = None
    if record is not None and record.delivered_at:
        when = parse_ts(record.delivered_at)
    else:
        known = [i.created_at for i in images if i.created_at is not None]
        when = min(known) if known else None
    if again is not None and status in (DELIVERED, None):  # in use since the newer build's delivery
        when = max(when, again.at) if when is not None else again.at
    else:
        again = None  # a build reset or not finished keeps its own rule (a resume may still publish it)
    return _Release(build_id, record, images, status, when, again)


def _age(value: timedelta) -> str:
    hours = value.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def judge(
    found: Sequence[tuple[PublishedImage, BuildRecord | None]],
    now: datetime,
    *,
    keep_last: int | None,
    keep_days: timedelta | None,
    references: Mapping[str, str] | None = None,
    again: Mapping[str, DeliveredAgain] | None = None,
) -> list[Verdict]:
    """A verdict for every image of one destination (see the module's docstring), newest build
    first. ``found``: each image with its build's record (None: unknown to the store);
    ``references``: image id -> what still refers to it; ``again``: :func:`delivered_again` of the
    pipeline's records (build id -> the newest build that delivered its images again)."""
    refs = references or {}
    reused = again or {}
    grouped: dict[str, tuple[BuildRecord | None, list[PublishedImage]]] = {}
    odd: list[Verdict] = []
    for image, record in found:
        if record is None and image.build_id and not _is_build_id(image.build_id):
            # A tag no build of ours writes: its deletion could not be recorded on any build's
            # history under that name, and nothing proves whose it is.
            why = f"its build tag {image.build_id[:80]!r} is not a build id"
            odd.append(Verdict(image, image.build_id, False, why))
            continue
        key = record.build_id if record is not None else (image.build_id or image.build_key or image.id)
        grouped.setdefault(key, (record, []))[1].append(image)
    releases = [_release(key, record, images, now, reused.get(key)) for key, (record, images) in grouped.items()]
    oldest = datetime.min.replace(tzinfo=now.tzinfo)
    releases.sort(key=lambda r: (r.published_at or oldest, r.build_id), reverse=True)
    newest_delivered = next((r for r in releases if r.delivered), None)
    verdicts: list[Verdict] = []
    rank = 0
    for release in releases:
        why, retire = _release_verdict(release, rank, release is newest_delivered, now, keep_last, keep_days)
        if release.counted:
            rank += 1
        for image in sorted(release.images, key=lambda i: (i.region, i.id)):
            if retire and image.id in refs:
                verdicts.append(Verdict(image, release.build_id, False, f"still referenced by {refs[image.id]}"))
            else:
                verdicts.append(Verdict(image, release.build_id, retire, why))
    return verdicts + odd


def _is_build_id(value: str) -> bool:
    try:
        check_build_id(value)
    except InvalidInput:
        return False
    return True


def _release_verdict(
    release: _Release,
    rank: int,
    newest: bool,
    now: datetime,
    keep_last: int | None,
    keep_days: timedelta | None,
) -> tuple[str, bool]:
    """(why, retire) for one build's images, before their references are looked at."""
    build = release.build_id
    if release.status not in (DELIVERED, ABANDONED_BUILD, None):
        return f"build {build} is {release.status}, not delivered: a resume may still publish it", False
    published = f"delivered again by build {release.again.by}" if release.again is not None else "published"
    again = f"; {published}" if release.again is not None else ""
    if newest:
        return f"the newest delivered image (build {build}{again})", False
    if release.counted and rank == 0:
        return f"the newest published image (build {build}, unknown to the store)", False
    if keep_last is not None and release.counted and rank < keep_last:
        return f"one of the {keep_last} newest delivered builds' (keep_last{again})", False
    age = now - release.published_at if release.published_at is not None else None
    if keep_days is not None:
        if age is None:
            return "when it was published is unknown: not provably older than keep_days", False
        if age < keep_days:
            return f"{published} {_age(age)} ago, within keep_days ({_age(keep_days)})", False
    reasons = []
    if release.status == ABANDONED_BUILD:
        reasons.append(f"build {build} was abandoned")
    elif release.status is None:
        reasons.append(f"build {build} is unknown to the store")
    if keep_last is not None and release.counted:
        reasons.append(f"beyond the {keep_last} newest delivered builds")
    if keep_days is not None and age is not None:
        reasons.append(f"{published} {_age(age)} ago, past keep_days ({_age(keep_days)})")
    return "; ".join(reasons) or "past the retention policy", True
