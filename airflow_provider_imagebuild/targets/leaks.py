"""The leak collector's rules: which of a pipeline's tagged cloud resources nobody will use again.

A target lists what it can prove is this provider's and this pipeline's in its own account /
subscription and group / project / folder (:meth:`LeakCollecting.owned_resources`: the
``ManagedBy`` tag or label, the pipeline, the build id or the build key the target writes), and
deletes one of them after proving it again (:meth:`LeakCollecting.delete_resource`). Which of them
are leaks is decided here, from the build's record in the pipeline's store, the same for every
cloud (:func:`leak_reason`):

- the build is **unknown to the store** (its record was pruned, or never written there);
- the build is **delivered** or **abandoned**: nothing of it is needed any more, except its
  published and final images (retention's business, never the collector's) and, of a delivered
  build, the checkpoints its record still holds (recorded and not discarded: those
  ``target.keep_checkpoints`` keeps for a redo, and those ``reuse.keep_checkpoints`` keeps for the
  next build to start from until the next delivered build deletes them, #32; ``store prune``
  keeps such a record while the next build may need them, and once a record is gone what it held
  is a leak of a build unknown to the store);
- the build is neither, and **not leased for longer than the threshold** (nobody works on it): only
  what its record does not hold is a leak (an instance that is not the recorded host, a test
  instance, a checkpoint image no milestone recorded), because the recorded host and checkpoints
  are what a resume starts from; a failed build is given up by ``build abandon``, not by gc.

Every resource must also be older than the threshold itself: a resource a worker has just made may
not be in the record yet; the threshold is never below :data:`MIN_OLDER_THAN`. Resources of another
pipeline are never listed (their builds are in another store, so nothing here can judge them), nor
of another account or project (never seen).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from airflow_provider_imagebuild.build.holdings import holdings
from airflow_provider_imagebuild.build.record import BuildRecord, parse_ts
from airflow_provider_imagebuild.build.status import ABANDONED_BUILD, DELIVERED, build_status
from airflow_provider_imagebuild.build.values import DEFAULT_LEASE_SECONDS
from airflow_provider_imagebuild.errors import InvalidInput

# Roles of what is kept whatever the build's state: the published image is retention's to delete.
KEPT_ROLES = frozenset({"final", "published", "copy"})
UNKNOWN, GONE_DELIVERED, GONE_ABANDONED, IDLE = "unknown to the store", "delivered", "abandoned", "not leased"

# The least threshold gc takes: twice the default lease. While its worker lives, what a milestone
# makes before its record says so is covered by the build's lease (a leased build is never idle); a
# lease not renewed for this long has no living holder (Airflow itself declares a task whose
# heartbeat stopped for 5 minutes a zombie), and a resource younger than this may still be on its
# way into the record (launched, not yet written). Below it, ``--older-than 0s`` took a running
# build's host, launched a second ago by a worker whose heartbeat was late, for a leak.
MIN_OLDER_THAN = timedelta(seconds=2 * DEFAULT_LEASE_SECONDS)


def check_older_than(value: timedelta, field: str = "older_than") -> timedelta:
    """``value`` if gc may use it as its threshold (at least :data:`MIN_OLDER_THAN`)."""
    if value < MIN_OLDER_THAN:
        floor = round(MIN_OLDER_THAN.total_seconds() / 60)
        raise InvalidInput(
            field,
            f"must be at least {floor}m: a younger resource may be one a running build made and has not "
            "recorded yet, and a build whose lease lapsed less long ago may still have a live worker",
        )
    return value


@dataclass(frozen=True)
class Resource:
    """One tagged resource as the cloud describes it now."""

    kind: str  # instance, volume, snapshot, image, nic, disk, server, template
    id: str
    region: str
    pipeline: str
    build_id: str  # the build it is tagged with ("" where only the build key is written)
    created_at: datetime | None  # None: the cloud does not say (judged as old)
    role: str = ""  # buildhost, checkpoint, final, published, launch-test (the Role tag / label)
    milestone: int | None = None  # the Milestone tag: which checkpoint an image is
    size: str = ""  # an instance's type or size, for its price
    gb: float | None = None  # a disk's, snapshot's or image's size, for its price
    build_key: str = ""  # the digest some clouds carry instead of the build id
    parent: str = ""  # what it is part of (an Azure NIC's or disk's VM): held while that is held
    detail: dict[str, str] = field(default_factory=dict)  # what the target needs to delete it again

    def age(self, now: datetime) -> timedelta:
        return now - self.created_at if self.created_at is not None else timedelta.max


@dataclass(frozen=True)
class Leak:
    resource: Resource
    reason: str  # one of UNKNOWN, GONE_DELIVERED, GONE_ABANDONED, IDLE (with how long)
    age: timedelta
    cost: float | None  # an estimate of what it cost so far; None: no price known


def held_by(rec: BuildRecord, resource: Resource) -> bool:
    """Whether the record holds the resource (:func:`..build.holdings.holdings`: the recorded host,
    a checkpoint not discarded, a staged image), which is what a resume or a later reuse needs."""
    held = {h.id.lower() for h in holdings(rec)}  # Azure's ids are case-insensitive
    return bool(resource.id) and (resource.id.lower() in held or resource.parent.lower() in held - {""})


def idle_since(rec: BuildRecord) -> datetime:
    """When the build was last worked on: its live or expired lease's expiry, else its last change."""
    if rec.lease is not None:
        return max(parse_ts(rec.lease.expires_at), parse_ts(rec.updated_at))
    return parse_ts(rec.updated_at)


def leak_reason(
    resource: Resource,
    rec: BuildRecord | None,
    now: datetime,
    older_than: timedelta,
    keep_checkpoints: Iterable[int] = (),
) -> str | None:
    """Why ``resource`` is a leak (see the module's docstring), or None when it is not one."""
    if resource.role in KEPT_ROLES or resource.age(now) < older_than:
        return None
    if rec is None:
        return UNKNOWN
    status = build_status(rec, now)
    if status in (DELIVERED, ABANDONED_BUILD):
        kept = resource.role == "checkpoint" and resource.milestone in set(keep_checkpoints)
        if status == DELIVERED and (kept or held_by(rec, resource)):  # target.keep_checkpoints
            return None
        return GONE_DELIVERED if status == DELIVERED else GONE_ABANDONED
    idle = now - idle_since(rec)
    if idle < older_than or held_by(rec, resource):
        return None
    hours = idle.total_seconds() / 3600
    return f"{IDLE} for {hours:.1f} h"


PriceOf = Callable[[str, Resource], "float | None"]  # (cloud, resource) -> price per hour


def no_price(cloud: str, resource: Resource) -> float | None:
    """The price hook's default: no price known (the cost helper's prices plug in here)."""
    return None


def estimated_cost(cloud: str, resource: Resource, age: timedelta, price_of: PriceOf = no_price) -> float | None:
    """What the resource cost over its age at ``price_of``'s hourly price; None without a price, or
    when the figures are no real cost (a size the cloud reports as 1e308 GB, negative or NaN: the
    answer must stay valid JSON, which has no Infinity)."""
    hourly = price_of(cloud, resource)
    if hourly is None or age == timedelta.max:
        return None
    cost = hourly * age.total_seconds() / 3600
    return round(cost, 4) if math.isfinite(cost) and cost >= 0 else None


def parse_time(value: object) -> datetime | None:
    """A cloud's creation time (a datetime, or ISO 8601 text with or without its zone: UTC then);
    None when there is none to read."""
    if isinstance(value, datetime):
        found = value
    else:
        try:
            found = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return found if found.tzinfo else found.replace(tzinfo=timezone.utc)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class LeakCollecting:
    """The two hooks a cloud target writes for ``imagebuild gc`` (as targets/launch.py's for the
    launch test): list what is provably this pipeline's, and delete one of them once proven again."""

    # Whether a resource's marks prove it this pipeline's even when its build key is no build's in
    # the store: true where the pipeline's whole name is written; Google Cloud's label is a lossy
    # copy of it (lowercased, cut), so there only a build id the target proved (``Resource.build_id``)
    # does, and a resource with neither is left unjudged (cli/gc.py's ``BuildsOf``).
    marks_prove_pipeline: bool = True

    @abstractmethod
    def owned_resources(self) -> list[Resource]:
        """Every resource in the target's own account/project carrying ``ManagedBy`` and this
        pipeline's tags or labels (instances, volumes, snapshots, images, NICs, disks...)."""

    def build_key(self, rec: BuildRecord) -> str:
        """The key this target tags a build's resources with where their labels cannot carry the
        build id (Google Cloud's label values, OpenStack's digest); "" where the id itself is
        written. The collector finds a resource's build by it when no id is written."""
        return ""

    @abstractmethod
    def delete_resource(self, resource: Resource) -> bool:
        """Delete ``resource`` after proving again that it is still this pipeline's and that
        build's (its tags now, in the target's own account); False when it is gone or no longer
        provably ours (left alone)."""
