"""The build record: what a store keeps for one build, as plain data.

Backends store the record as one JSON document with a ``version`` that every write
compare-and-swaps on; :mod:`.rules` holds the transitions. Keeping the record plain (no Airflow,
no SQL, no boto3) is what lets one contract test suite and one model prove every backend.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from airflow_provider_imagebuild.build.catalog import milestone_label, title_of, validate_plan
from airflow_provider_imagebuild.build.fingerprint import check_fingerprint, check_inputs
from airflow_provider_imagebuild.build.identity import DEFAULT_UNSKIPPABLE, BuildIdentity, check_titles
from airflow_provider_imagebuild.build.ids import CLOUDS, check_build_id, check_cloud, check_name
from airflow_provider_imagebuild.build.values import DEFAULT_MAX_ATTEMPTS
from airflow_provider_imagebuild.errors import CorruptRecord, InvalidInput

SCHEMA_VERSION = 1

# Status of the build's current state, and of one attempt.
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
ABANDONED = "abandoned"
SKIPPED = "skipped"  # a person stepped over the milestone on purpose, with a reason
BUILD_STATUSES = (IN_PROGRESS, COMPLETED, FAILED)
ATTEMPT_STATUSES = (IN_PROGRESS, COMPLETED, FAILED, ABANDONED, SKIPPED)

# The whole build's status word, derived from the record (what each means: :mod:`.status`).
REGISTERED = "registered"
RUNNING = "running"
WAITING = "waiting"
BUILD_FAILED = "failed"
DELIVERED = "delivered"
ABANDONED_BUILD = "abandoned"  # the record's abandoned_at (rules.abandon): kept in the store, on every backend

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# An attempt's usage: the build host's size and the hours it existed during the attempt, the size
# of the checkpoint image it captured, the GB it copied between regions or accounts.
USAGE_KEYS = ("host_size", "host_hours", "checkpoint_gb", "transfer_gb")
MAX_HOST_SIZE = 64  # the longest host size word kept (Azure's sizes are the longest, ~25 characters)
MAX_USAGE = 1e9  # hours or GB of one attempt: any real figure is far below, and every cost stays finite


def check_usage(usage: object, field: str = "usage") -> dict[str, Any] | None:
    """An attempt's usage as the store keeps it: only :data:`USAGE_KEYS`, sizes and hours as finite
    non-negative numbers under :data:`MAX_USAGE`, the host size a short word. Checked when it is
    written and again when a record is read (a record written by hand or by anyone who can write the
    store: a list, ``1e308`` or NaN hours broke the build list, its API and the report). The error
    names the key, never the value."""
    if usage is None:
        return None
    if not isinstance(usage, Mapping):
        raise InvalidInput(field, "must be a mapping of " + ", ".join(USAGE_KEYS))
    clean: dict[str, Any] = {}
    for key, value in usage.items():
        if key not in USAGE_KEYS:
            named = isinstance(key, str) and key.isidentifier() and len(key) <= 32
            raise InvalidInput(f"{field}.{key}" if named else field, "holds a key that is not a usage key ("
                               + ", ".join(USAGE_KEYS) + ")")  # fmt: skip
        if value is None:
            continue
        if key == "host_size":
            if not isinstance(value, str) or not 0 < len(value) <= MAX_HOST_SIZE or not value.isprintable():
                raise InvalidInput(f"{field}.{key}", f"must be a host size name of 1-{MAX_HOST_SIZE} characters")
            clean[key] = value
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < MAX_USAGE:
            raise InvalidInput(f"{field}.{key}", f"must be a non-negative number below {MAX_USAGE:.0e}")
        else:
            clean[key] = round(float(value), 6)
    return clean


REUSED = "reused"  # an attempt's kind when it took an earlier build's result (build/reuse.py)


def check_reused_from(value: object, field: str = "reused_from") -> dict[str, Any]:
    """A reused attempt's source as the store keeps it: the earlier build's id and its milestone.
    Checked on write and read (anyone who can write the store can write a record by hand): a
    reader follows it to another record, so it must name one the way a build id does."""
    if not isinstance(value, Mapping) or set(value) != {"build_id", "state"}:
        raise InvalidInput(field, "must be {build_id, state}: the build and milestone the result was taken from")
    state = value["state"]
    if isinstance(state, bool) or not isinstance(state, int) or not 0 < state <= 100:
        raise InvalidInput(f"{field}.state", "must be a milestone code 1-100")
    try:
        check_build_id(value["build_id"])
    except InvalidInput:
        raise InvalidInput(f"{field}.build_id", "must be a build id") from None
    return {"build_id": value["build_id"], "state": state}


def format_ts(moment: datetime) -> str:
    """UTC timestamps with a fixed width, so that string order is time order in every backend."""
    return moment.astimezone(timezone.utc).strftime(_TS_FORMAT)


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, _TS_FORMAT).replace(tzinfo=timezone.utc)


# format_ts's output, ranges included (a day past the 28th is checked against its month by
# _real_day); the year 0000 is refused (strptime, so parse_ts, cannot read it).
_TS = (r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
       r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z")  # fmt: skip
_TS_RE = re.compile(_TS)
_TS_LINES_RE = re.compile(f"(?:{_TS}\n)*")
_LATE_DAY_RE = re.compile(r"-(?:29|3[01])T")
_TS_WIDTH = 27
_TS_RULE = "must be a UTC time written as 2026-01-31T23:59:59.000000Z"


def _real_day(text: str) -> bool:
    """Whether the date at the start of ``text`` exists (the 31st of April does not)."""
    try:
        date.fromisoformat(text[:10])
        return True
    except ValueError:
        return False


def check_ts(value: object, field: str) -> str:
    """A timestamp exactly as :func:`format_ts` writes it, so that :func:`parse_ts` reads it and
    string order is time order. The error names the field, never the value."""
    if isinstance(value, str) and _TS_RE.fullmatch(value) and (value[8:10] < "29" or _real_day(value)):
        return value
    raise InvalidInput(field, _TS_RULE)


def all_ts(values: list[object]) -> bool:
    """Whether every value is a timestamp :func:`check_ts` takes, in one regular expression over
    them all: every read of a record checks each attempt's and event's times (a record carries
    hundreds), and one match costs a fraction of one ``strptime`` per value."""
    try:
        joined = "\n".join(values) + "\n"  # type: ignore[arg-type]  # a value that is no string: False below
    except TypeError:
        return False
    if len(joined) != (_TS_WIDTH + 1) * len(values) or not _TS_LINES_RE.fullmatch(joined):
        return False  # the length check: a value with a newline in it is not two timestamps
    return all(_real_day(joined[m.start() - 7 :]) for m in _LATE_DAY_RE.finditer(joined))


def lease_id_of(token: str) -> str:
    """The name readers see for a lease: a SHA-256 prefix of its token. The store compares the token
    itself on complete, fail and heartbeat, so the id cannot stand in for it, while the holder (who
    has the token) and readers can still tell which attempt the live lease is."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass
class Lease:
    """Who works on the build now, and until when (extended by heartbeats)."""

    token: str
    owner: str
    state: int
    attempt: int
    seconds: int
    acquired_at: str
    expires_at: str
    heartbeat_at: str


@dataclass
class Attempt:
    """One try at one milestone; the list of attempts is append-only history."""

    state: int
    attempt: int
    status: str
    owner: str
    lease_id: str
    started_at: str
    finished_at: str | None = None
    error: str | None = None
    # "run"; "replay" when a milestone is re-applied on a relaunched host; "skip" (a person's);
    # "reused" when a new build took an earlier build's result whose fingerprint chain matched (#32)
    kind: str = "run"
    # Why this attempt happened, when a person said so: the note of the Airflow clear that
    # started it ("flaky mirror, retrying"), with who cleared.
    reason: str | None = None
    # What the attempt used, for pricing (build/cost.py): USAGE_KEYS, written when it ends.
    usage: dict[str, Any] | None = None
    # What a completed run was made from (build/fingerprint.py): the SHA-256 fingerprint chained on
    # the previous milestone's, and each input's display digest by name (what ``build diff`` compares).
    fingerprint: str | None = None
    inputs: dict[str, str] | None = None
    # A reused attempt's source: {"build_id": the earlier build, "state": its milestone} (build/reuse.py)
    reused_from: dict[str, Any] | None = None


@dataclass
class MilestoneResult:
    """A milestone that is done: when, by which attempt, and what it produced. A skipped one
    (``skip_reason`` set) is done for the plan's order but produced nothing."""

    state: int
    attempt: int
    owner: str
    started_at: str
    completed_at: str
    duration_s: float
    outputs: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


@dataclass
class Event:
    """Things that happen to a build besides attempts: create, reset, takeover, metadata."""

    at: str
    kind: str
    detail: str
    actor: str = ""
    state: int | None = None


@dataclass
class BuildRecord:
    build_id: str
    pipeline: str
    cloud: str
    image_type: str
    os: str
    plan: list[int]
    metadata: dict[str, str]
    created_at: str
    updated_at: str
    version: int = 0
    current_state: int = 0
    status: str = COMPLETED
    delivered_at: str | None = None
    milestones: dict[int, MilestoneResult] = field(default_factory=dict)
    lease: Lease | None = None
    attempts: list[Attempt] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # How much old history was dropped to keep the record within its size limit.
    trimmed: dict[str, int] = field(default_factory=dict)
    # Milestones nobody may skip (registration, seal, publish, and what the spec marks so).
    unskippable: list[int] = field(default_factory=list)
    # The pipeline's own milestone titles, where the catalog's do not apply (custom codes).
    titles: dict[int, str] = field(default_factory=dict)
    # Attempts per milestone across runs before ``begin`` is refused (the spec's max_attempts,
    # ``build create --max-attempts``; a milestone not named: DEFAULT_MAX_ATTEMPTS), and the attempt
    # number up to which each milestone may now begin where a reset or ``build allow`` moved it.
    max_attempts: dict[int, int] = field(default_factory=dict)
    attempt_limits: dict[int, int] = field(default_factory=dict)
    # When a person (or the watchdog) gave the build up for good: no milestone begins again.
    abandoned_at: str | None = None
    # What an abandon deleted (or found gone) of what the build held: ids no longer held.
    released: list[str] = field(default_factory=list)

    # -- derived views -------------------------------------------------------------------------
    @property
    def identity(self) -> BuildIdentity:
        return BuildIdentity(
            self.pipeline,
            self.cloud,
            self.image_type,
            self.os,
            tuple(self.plan),
            dict(self.metadata),
            titles=dict(self.titles),
        )

    def title(self, code: int) -> str:
        """The milestone's title as its pipeline names it (``License check`` for a custom 42)."""
        return title_of(code, self.titles)

    def label(self, code: int) -> str:
        """``42 · License check``: how every reader names a milestone of this build."""
        return milestone_label(code, self.titles)

    @property
    def skipped(self) -> list[int]:
        """Milestones stepped over on purpose (done for the plan's order, nothing produced)."""
        return [c for c in self.plan if c in self.milestones and self.milestones[c].skipped]

    def reached(self, code: int) -> bool:
        """Whether milestone ``code`` was really reached (completed, not skipped)."""
        done = self.milestones.get(code)
        return done is not None and not done.skipped

    @property
    def completed(self) -> list[int]:
        return [c for c in self.plan if c in self.milestones]

    @property
    def next_state(self) -> int | None:
        """The first milestone of the plan not completed yet (None once delivered)."""
        for code in self.plan:
            if code not in self.milestones:
                return code
        return None

    @property
    def delivered(self) -> bool:
        return self.plan[-1] in self.milestones

    @property
    def abandoned(self) -> bool:
        """Given up for good (``imagebuild build abandon``, the watchdog's abandon_after)."""
        return self.abandoned_at is not None

    def attempt_cap(self, code: int) -> int:
        """How many attempts milestone ``code`` gets across runs (before a reset or a grant)."""
        return self.max_attempts.get(code, DEFAULT_MAX_ATTEMPTS)

    def attempt_limit(self, code: int) -> int:
        """The highest attempt number milestone ``code`` may begin now (its cap, or what a reset or
        ``build allow`` granted since)."""
        return self.attempt_limits.get(code, self.attempt_cap(code))

    def outputs(self) -> dict[int, dict[str, Any]]:
        return {c: dict(self.milestones[c].outputs) for c in self.completed}

    def merged_outputs(self) -> dict[str, Any]:
        """All outputs of completed milestones, later milestones winning on equal keys."""
        merged: dict[str, Any] = {}
        for code in self.completed:
            merged.update(self.milestones[code].outputs)
        return merged

    def attempts_at(self, state: int) -> list[Attempt]:
        return [a for a in self.attempts if a.state == state]

    def completed_attempt(self, code: int) -> Attempt | None:
        """The attempt whose result milestone ``code`` holds (None: not reached, skipped, or its
        attempt trimmed from the history)."""
        done = self.milestones.get(code)
        if done is None or done.skipped:
            return None
        return next(
            (a for a in self.attempts if a.state == code and a.attempt == done.attempt and a.status == COMPLETED),
            None,
        )

    def fingerprint_of(self, code: int) -> str | None:
        """The fingerprint milestone ``code`` was reached with (None: unknown; nothing matches it)."""
        attempt = self.completed_attempt(code)
        return attempt.fingerprint if attempt is not None else None

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_doc(self) -> dict[str, Any]:
        """The stored document (JSON-safe: integer keys become strings).

        Built by hand rather than with ``dataclasses.asdict``, whose deep copies were the largest
        cost of a store write; the document is serialised right away, so shallow copies suffice.
        """
        return {
            "schema": SCHEMA_VERSION,
            "build_id": self.build_id,
            "pipeline": self.pipeline,
            "cloud": self.cloud,
            "image_type": self.image_type,
            "os": self.os,
            "plan": list(self.plan),
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
            "current_state": self.current_state,
            "status": self.status,
            "delivered_at": self.delivered_at,
            "milestones": {str(k): dict(vars(v)) for k, v in self.milestones.items()},
            "lease": dict(vars(self.lease)) if self.lease else None,
            "attempts": [dict(vars(a)) for a in self.attempts],
            "events": [dict(vars(e)) for e in self.events],
            "trimmed": dict(self.trimmed),
            "unskippable": list(self.unskippable),
            "titles": {str(k): v for k, v in self.titles.items()},
            "max_attempts": {str(k): v for k, v in self.max_attempts.items()},
            "attempt_limits": {str(k): v for k, v in self.attempt_limits.items()},
            "abandoned_at": self.abandoned_at,
            "released": list(self.released),
        }

    def to_public(self) -> dict[str, Any]:
        """The record as every reader sees it (``imagebuild build show --json``, the plugin's API and
        pages, ``build history``, the Concourse resource's ``in``), plus convenient views.

        The live lease's token is what completes, fails and heartbeats a milestone, and a run
        attempt's ``lease_id`` is that same token: readers get :func:`lease_id_of` both instead, so
        that only the holder (``build begin``, the milestone's own task) ever has the token.
        ``status`` is the current milestone's; ``build_status`` the whole build's
        (:mod:`.status`)."""
        doc = self.to_doc()
        doc.pop("schema")
        if self.lease is not None:
            public_lease = {k: v for k, v in doc["lease"].items() if k != "token"}
            doc["lease"] = {"lease_id": lease_id_of(self.lease.token), **public_lease}
        doc["attempts"] = [{**a, "lease_id": lease_id_of(a["lease_id"])} for a in doc["attempts"]]
        doc["completed"] = self.completed
        doc["delivered"] = self.delivered
        doc["build_status"] = build_status(self)
        doc["next_state"] = self.next_state
        doc["milestone_titles"] = {str(c): self.title(c) for c in self.plan}
        doc["outputs"] = {str(k): v for k, v in self.outputs().items()}
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], build_id: str | None = None) -> BuildRecord:
        """The record a stored document holds; ``build_id``: the id it was stored under, which it
        must carry (a file renamed or copied is not served under another build's id)."""

        try:
            schema = doc.get("schema", SCHEMA_VERSION)
            if schema != SCHEMA_VERSION:
                raise CorruptRecord(f"build record has unknown schema version {schema!r}")
            stored_id = check_build_id(doc["build_id"], "build_id")
            if build_id is not None and stored_id != build_id:
                raise CorruptRecord(f"the record stored for build {build_id} names build {stored_id!r}")
            lease = doc.get("lease")
            plan = list(validate_plan(doc["plan"]))
            rec = cls(
                build_id=stored_id,
                pipeline=doc["pipeline"],
                cloud=doc["cloud"],
                image_type=doc["image_type"],
                os=doc.get("os", ""),
                plan=plan,
                metadata=dict(doc.get("metadata") or {}),
                created_at=doc["created_at"],
                updated_at=doc["updated_at"],
                version=doc["version"],
                current_state=int(doc["current_state"]),
                status=doc["status"],
                delivered_at=doc.get("delivered_at"),
                milestones={int(k): MilestoneResult(**v) for k, v in (doc.get("milestones") or {}).items()},
                lease=Lease(**lease) if lease else None,
                attempts=[Attempt(**a) for a in doc.get("attempts") or []],
                events=[Event(**e) for e in doc.get("events") or []],
                trimmed={str(k): int(v) for k, v in (doc.get("trimmed") or {}).items()},
                unskippable=[int(c) for c in doc["unskippable"]]
                if doc.get("unskippable") is not None
                else [c for c in plan if c in DEFAULT_UNSKIPPABLE or c == plan[0]],
                titles=check_titles(doc.get("titles"), plan),
                max_attempts=_attempt_counts(doc.get("max_attempts"), plan, "max_attempts"),
                attempt_limits=_attempt_counts(doc.get("attempt_limits"), plan, "attempt_limits"),
                abandoned_at=doc.get("abandoned_at"),
                released=[str(r) for r in doc.get("released") or []],
            )
            if rec.status not in BUILD_STATUSES:
                raise CorruptRecord(f"build record {stored_id} has unknown status {rec.status!r}")
            strays = [c for c in [rec.current_state, *rec.milestones] if c not in plan]
            if strays:
                raise CorruptRecord(f"build record {stored_id} names milestones outside its plan: {strays}")
            _check_stored(rec, doc["version"])
            return rec
        except CorruptRecord:
            raise
        except InvalidInput as exc:
            raise CorruptRecord(f"build record is malformed ({exc})") from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CorruptRecord(f"build record is malformed ({type(exc).__name__}: {exc})") from exc


def build_status(rec: BuildRecord, now: datetime | None = None) -> str:
    """The build's status word at ``now`` (default: the current time). Derived here, beside the
    record it reads, so that :meth:`BuildRecord.to_public` shows it; :mod:`.status` says what
    each word means and checks the words people type."""
    if rec.abandoned:
        return ABANDONED_BUILD
    if rec.delivered:
        return DELIVERED
    moment = now or datetime.now(timezone.utc)
    lease = rec.lease
    if lease is not None and parse_ts(lease.expires_at) > moment:
        return RUNNING
    if rec.status in (FAILED, IN_PROGRESS):  # in progress without a live lease: its worker is gone
        return BUILD_FAILED
    if rec.current_state == rec.plan[0]:
        return REGISTERED
    return WAITING


def _attempt_counts(raw: object, plan: list[int], field: str) -> dict[int, int]:
    """A stored ``{code: attempts}`` (caps or limits): whole numbers; a code no longer in the plan
    (a record written before its plan changed) is left out rather than making the record unreadable."""
    found: dict[int, int] = {}
    for key, value in dict(raw or {}).items():  # type: ignore[call-overload]  # checked below
        code = int(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"{field}.{key}", "must be a whole number of attempts")
        if code in plan:
            found[code] = value
    return found


_NAME_RULE = "must be 1-128 ASCII letters, digits, '.', '_' or '-' without '..', as the store writes it"


def _check_stored(rec: BuildRecord, version: object) -> None:
    """What the store writes, checked again when a record is read: a record edited by hand, by an
    older release or by anyone who can write the store must not become a path (an archive's
    folder is ``<pipeline>/<build id>``), a key, or a timestamp that crashes a reader (the
    watchdog compares lease expiry times). :class:`InvalidInput` names the field, never the
    value: the caller reports the record as corrupt, and a value may be anything."""
    for name, value in (("pipeline", rec.pipeline), ("image_type", rec.image_type), ("os", rec.os)):
        if name == "os" and value == "":
            continue
        try:
            check_name(value, name)
        except InvalidInput:
            raise InvalidInput(name, _NAME_RULE) from None
    try:
        check_cloud(rec.cloud)
    except InvalidInput:
        raise InvalidInput("cloud", f"must be one of {', '.join(CLOUDS)}") from None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidInput("version", "must be a non-negative integer")
    for i, attempt in enumerate(rec.attempts):
        if attempt.fingerprint is not None:
            check_fingerprint(attempt.fingerprint, f"attempts[{i}].fingerprint")
        if attempt.inputs is not None:
            attempt.inputs = check_inputs(attempt.inputs, f"attempts[{i}].inputs")
        if attempt.reused_from is not None:
            attempt.reused_from = check_reused_from(attempt.reused_from, f"attempts[{i}].reused_from")
    for code, done in rec.milestones.items():
        duration = done.duration_s
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration):
            raise InvalidInput(f"milestones.{code}.duration_s", "must be a number of seconds")
    if not all_ts([value for _, value in _timestamps(rec)]):
        for field_name, stamp in _timestamps(rec, named=True):  # the slow way, only to name the field
            check_ts(stamp, field_name)
    for i, attempt in enumerate(rec.attempts):
        if attempt.usage is not None:
            check_usage(attempt.usage, f"attempts[{i}].usage")


def _timestamps(rec: BuildRecord, named: bool = False) -> Iterator[tuple[str, object]]:
    """Every timestamp of the record, with its field's name when ``named`` (only for an error:
    naming every attempt's fields would cost more than checking their times)."""
    yield "created_at", rec.created_at
    yield "updated_at", rec.updated_at
    if rec.delivered_at is not None:
        yield "delivered_at", rec.delivered_at
    if rec.abandoned_at is not None:
        yield "abandoned_at", rec.abandoned_at
    if rec.lease is not None:
        yield "lease.acquired_at", rec.lease.acquired_at
        yield "lease.expires_at", rec.lease.expires_at
        yield "lease.heartbeat_at", rec.lease.heartbeat_at
    for code, done in rec.milestones.items():
        yield (f"milestones.{code}.started_at" if named else ""), done.started_at
        yield (f"milestones.{code}.completed_at" if named else ""), done.completed_at
    for i, attempt in enumerate(rec.attempts):
        yield (f"attempts[{i}].started_at" if named else ""), attempt.started_at
        if attempt.finished_at is not None:
            yield (f"attempts[{i}].finished_at" if named else ""), attempt.finished_at
    for i, event in enumerate(rec.events):
        yield (f"events[{i}].at" if named else ""), event.at
