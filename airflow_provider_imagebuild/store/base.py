"""The store contract, implemented once on top of a small per-backend primitive.

A backend provides ``_apply(build_id, fn)``: read the build's document, call ``fn`` with it, and
write what ``fn`` returns atomically with respect to concurrent writers (compare-and-swap on the
record version, or a lock held across read and write). Everything else, validation, redaction and
the rules, lives here, so that all backends behave identically.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar

from airflow_provider_imagebuild.build import rules
from airflow_provider_imagebuild.build.fingerprint import check_fingerprint, check_inputs
from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.ids import (
    check_build_id,
    check_cloud,
    check_name,
    check_owner,
    check_token,
    without_controls,
)
from airflow_provider_imagebuild.build.record import BuildRecord, Lease, check_usage, format_ts, parse_ts
from airflow_provider_imagebuild.build.retention import retention_verdict
from airflow_provider_imagebuild.build.values import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    MAX_ERROR,
    MAX_REASON,
    check_attempts,
    check_lease_seconds,
    check_metadata,
    check_outputs,
    check_text,
    truncated,
)
from airflow_provider_imagebuild.errors import Conflict, CorruptRecord, InvalidInput, NotFound, StoreUnavailable
from airflow_provider_imagebuild.redact.patterns import Redactor, redact_value, redactor_for
from airflow_provider_imagebuild.store import codec

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]
ClientFactory = Callable[[str], Any]  # service -> cloud SDK client (clouds.aws.AwsClients is one)
Doc = dict[str, Any]
# fn(current document or None) -> (document to write or None for "no write", result)
Mutation = Callable[[Doc | None], tuple[Doc | None, T]]

CAS_ATTEMPTS = 64
# The most a stored record may take as JSON, on every backend: a DynamoDB item holds 400 KB with
# its other attributes. History is compacted to stay below (rules.compact); what still does not
# fit (outputs and metadata) is refused, naming the field.
MAX_RECORD_BYTES = 350_000


class CasFailed(Exception):
    """Internal: another writer changed the record between read and write; read again."""


def _made_from(fingerprint: str | None, inputs: Mapping[str, str] | None) -> tuple[str, dict[str, str]] | None:
    """What an attempt was made from (``build.fingerprint``), checked: both given, or neither."""
    if fingerprint is None and inputs is None:
        return None
    return check_fingerprint(fingerprint, "fingerprint"), check_inputs(inputs, "inputs")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class ListFilter:
    """Filters of ``list_builds``; every backend applies all of them."""

    status: str | None = None
    cloud: str | None = None
    pipeline: str | None = None
    updated_before: str | None = None
    updated_after: str | None = None

    @classmethod
    def checked(
        cls,
        *,
        status: str | None = None,
        cloud: str | None = None,
        pipeline: str | None = None,
        updated_before: datetime | str | None = None,
        updated_after: datetime | str | None = None,
    ) -> ListFilter:
        """A filter from user input, each value validated (the field named on error)."""
        return cls(
            status=rules.check_status(status) if status else None,
            cloud=check_cloud(cloud) if cloud else None,
            pipeline=check_name(pipeline, "pipeline") if pipeline else None,
            updated_before=_ts_filter(updated_before, "updated_before"),
            updated_after=_ts_filter(updated_after, "updated_after"),
        )

    def matches(self, doc: Mapping[str, Any]) -> bool:
        if self.status and doc.get("status") != self.status:
            return False
        if self.cloud and doc.get("cloud") != self.cloud:
            return False
        if self.pipeline and doc.get("pipeline") != self.pipeline:
            return False
        updated = str(doc.get("updated_at", ""))
        if self.updated_before and not updated < self.updated_before:
            return False
        return not (self.updated_after and not updated > self.updated_after)


# What a mutation returns to delete the record it read (only if it is still that version).
DELETE: Doc = {"__delete__": True}
# The record :meth:`BuildStore.probe` writes and deletes again.
PROBE_BUILD_ID = "imagebuild-doctor-probe"
PROBE_PIPELINE = "imagebuild-doctor"
PROBE_IMAGE_TYPE = "probe"


class BuildStore(ABC):
    """One durable record per build; the rules every backend keeps are on the documentation site's
    Architecture page (``docs/concepts/architecture.md``, "The state store and its rules")."""

    #: The URL this store was opened from (secrets never appear in store URLs).
    url: str = ""

    def __init__(self, *, redactor: Redactor | None = None, clock: Clock | None = None) -> None:
        # Free text (errors, reasons, notes) gets ``redactor``: the patterns plus, in a task, every
        # value Airflow masks. Identifiers the build depends on (owners, host metadata, outputs
        # such as image ids and checkpoint paths) get the patterns only: Airflow masks any
        # registered value of 5 characters or more wherever it occurs, and a connection password
        # that is also a word of a path or a DAG id ("local", "airflow") would otherwise turn
        # ``/work/local-1/rootfs`` into ``/work/***-1/rootfs`` and break the build for good.
        # Text a user's command prints as outputs is masked by its operator before it gets here.
        self._redact = redactor or redactor_for()
        self._redact_ids = redactor_for()
        self._clock = clock or utcnow

    # -- backend primitives --------------------------------------------------------------------
    @abstractmethod
    def init(self) -> str:
        """Prepare the backend (schema, directory, table, bucket); idempotent. Says what it did."""

    @abstractmethod
    def _read(self, build_id: str) -> tuple[Doc, Any] | None:
        """The build's document and a version tag for ``_write``, or None."""

    @abstractmethod
    def _write(self, build_id: str, doc: Doc, expected: Any | None) -> None:
        """Write ``doc`` only if the stored version tag is still ``expected`` (None: must not exist)."""

    def _delete(self, build_id: str, expected: Any) -> None:
        """Delete the record only if its version tag is still ``expected`` (else :class:`CasFailed`)."""
        raise StoreUnavailable(f"{self.describe()} cannot delete records")

    @abstractmethod
    def _scan(self, flt: ListFilter) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        """``(build id, document)`` of every build (a backend may pre-filter; ``flt`` is applied
        again after); a record that cannot be read is yielded as its error, not raised, so that
        one bad record does not hide the others."""

    def _read_each(self, build_ids: Iterable[str]) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        """``_scan`` for backends that list names and read each object (S3, Blob): a record that
        cannot be read is yielded as its error, one that vanished since the listing is skipped."""
        for build_id in build_ids:
            try:
                got = self._read(build_id)
            except CorruptRecord as exc:
                yield build_id, exc
                continue
            if got is not None:
                yield build_id, got[0]

    def _apply(self, build_id: str, fn: Mutation[T]) -> T:
        """Optimistic read-modify-write with bounded, jittered retries on a lost race."""
        for attempt in range(CAS_ATTEMPTS):
            got = self._read(build_id)
            doc, tag = got if got is not None else (None, None)
            new_doc, result = fn(doc)
            if new_doc is None:
                return result
            try:
                if new_doc is DELETE:
                    self._delete(build_id, tag)
                else:
                    self._write(build_id, new_doc, tag)
                return result
            except CasFailed:
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise StoreUnavailable(f"gave up writing build {build_id} after {CAS_ATTEMPTS} contended attempts")

    def close(self) -> None:  # noqa: B027 - optional for backends holding connections
        """Release connections; the store may be used again afterwards."""

    def describe(self) -> str:
        return self.url

    def probe(self) -> None:
        """Prove the store takes a write (``imagebuild doctor``): a probe record written and then
        deleted through the same compare-and-swap primitive every build write takes, so that what
        refuses a build's write (permissions, a read-only disk, a missing table, a policy) refuses
        this one with the backend's own reason. Nothing stays: the delete is conditional on the
        probe record as read (the JSON file store keeps the empty lock file it keeps for every
        build id). A record of that id that is not a probe's is never written or deleted."""

        def is_probe(doc: Doc) -> bool:
            return doc.get("pipeline") == PROBE_PIPELINE and doc.get("image_type") == PROBE_IMAGE_TYPE

        def write(doc: Doc | None) -> tuple[Doc | None, None]:
            if doc is not None and not is_probe(doc):
                raise Conflict(f"build {PROBE_BUILD_ID} exists and is not a probe record; the store was not probed")
            identity = BuildIdentity.checked(PROBE_PIPELINE, "local", PROBE_IMAGE_TYPE)
            rec = rules.new_record(PROBE_BUILD_ID, identity, "imagebuild doctor", self._clock())
            if doc is not None:  # what a killed probe left: replaced, on its version
                rec.version = int(doc.get("version") or 0) + 1
            return rec.to_doc(), None

        def delete(doc: Doc | None) -> tuple[Doc | None, None]:
            return (DELETE if doc is not None and is_probe(doc) else None), None

        self._apply(PROBE_BUILD_ID, write)
        self._apply(PROBE_BUILD_ID, delete)

    # -- helpers -------------------------------------------------------------------------------
    def _mutate(
        self, build_id: str, change: Callable[[BuildRecord, datetime], tuple[T, bool]], field: str = "record"
    ) -> T:
        check_build_id(build_id)

        def fn(doc: Doc | None) -> tuple[Doc | None, T]:
            if doc is None:
                raise NotFound(f"build {build_id} not found in {self.describe()}")
            rec = BuildRecord.from_doc(doc, build_id)
            now = self._clock()
            result, changed = change(rec, now)
            if not changed:
                return None, result
            rec.version += 1
            rec.updated_at = format_ts(now)
            return self._bounded(rec, field), result

        return self._apply(build_id, fn)

    def _bounded(self, rec: BuildRecord, field: str) -> Doc:
        """The record's document, its history compacted until it fits :data:`MAX_RECORD_BYTES`."""
        size = 0
        for level in range(len(rules.COMPACTION_LEVELS)):
            rules.compact(rec, level)
            doc = rec.to_doc()
            size = len(codec.dumps(doc))
            if size <= MAX_RECORD_BYTES:
                return doc
        raise InvalidInput(
            field,
            f"would make the record of build {rec.build_id} {size} bytes, over the {MAX_RECORD_BYTES} a record "
            "may take (outputs and metadata are kept whole; old history is already trimmed)",
        )

    # -- the contract --------------------------------------------------------------------------
    def create_build(
        self,
        build_id: str,
        *,
        pipeline: str,
        cloud: str,
        image_type: str,
        os: str = "",
        plan: Iterable[int] | None = None,
        metadata: Mapping[str, str] | None = None,
        owner: str = "imagebuild",
        titles: Mapping[int, str] | None = None,
        max_attempts: int | None = None,
    ) -> BuildRecord:
        """Register a build (milestone 0). Idempotent for identical parameters, a conflict otherwise.
        ``titles``: the pipeline's names of its custom milestones, kept for every reader;
        ``max_attempts``: every milestone's attempt cap across runs (default: the store's, 10)."""
        identity = BuildIdentity.checked(pipeline, cloud, image_type, os, plan, metadata, titles)
        if max_attempts is not None:
            cap = check_attempts(max_attempts, "max_attempts")
            identity = replace(identity, max_attempts={code: cap for code in identity.plan[1:]})
        return self.register(build_id, identity, owner=owner)

    def register(
        self, build_id: str, identity: BuildIdentity, *, owner: str = "imagebuild", plan_changes: bool = False
    ) -> BuildRecord:
        """Register a build, or find it registered with the same identity.

        With ``plan_changes`` (a DAG run of a pipeline whose spec was edited since the build
        started), a different plan is taken if it changes only milestones not reached yet, and
        recorded as an event; otherwise any difference is a conflict naming the fields."""
        check_build_id(build_id)
        actor = self._redact_ids(check_owner(owner))

        def fn(doc: Doc | None) -> tuple[Doc | None, BuildRecord]:
            if doc is None:
                rec = rules.new_record(build_id, identity, actor, self._clock())
                return self._bounded(rec, "metadata"), rec
            rec = BuildRecord.from_doc(doc, build_id)
            differ = rules.same_parameters(rec, identity)
            if plan_changes and differ == ["plan"]:
                now = self._clock()
                rules.change_plan(rec, identity, actor, now)
                rec.version += 1
                rec.updated_at = format_ts(now)
                return self._bounded(rec, "plan"), rec
            if differ:
                raise Conflict(
                    f"build {build_id} already exists with different {', '.join(differ)}; use another build id"
                )
            now = self._clock()
            retitled = plan_changes and rules.retitle(rec, identity)  # the spec renamed a milestone
            # The spec's max_attempts changed: the record follows (a DAG run always says its caps). A
            # create without --max-attempts keeps the recorded ones; one with other caps is refused: it
            # would raise the cap without a reason, which ``build allow --reason`` records.
            caps = {code: n for code, n in identity.max_attempts.items() if code in rec.plan}
            if not plan_changes and caps and caps != rec.max_attempts:
                recorded = sorted(set(rec.max_attempts.values())) or [DEFAULT_MAX_ATTEMPTS]
                raise Conflict(
                    f"build {build_id} already exists with max_attempts {'/'.join(map(str, recorded))}; creating it "
                    f"again does not change its attempt caps: grant more with `imagebuild build allow {build_id} "
                    "MILESTONE --attempts N --reason TEXT` (a spec's max_attempts applies at its next DAG run)"
                )
            recapped = plan_changes and rules.recap(rec, identity, actor, now)
            if retitled or recapped:
                rec.version += 1
                rec.updated_at = format_ts(now)
                return self._bounded(rec, "titles"), rec
            return None, rec

        return self._apply(build_id, fn)

    def begin(self, build_id: str, state: int, *, owner: str, lease_seconds: int = DEFAULT_LEASE_SECONDS) -> Lease:
        """Start a milestone: take the build's lease (one live lease per build)."""
        holder = self._redact_ids(check_owner(owner))
        check_lease_seconds(lease_seconds)
        return self._mutate(build_id, lambda rec, now: rules.begin(rec, state, holder, lease_seconds, now))

    def heartbeat(self, build_id: str, state: int, *, token: str) -> Lease:
        """Extend the lease; refused once another owner took it over."""
        check_token(token)
        return self._mutate(build_id, lambda rec, now: rules.heartbeat(rec, state, token, now))

    def complete(
        self,
        build_id: str,
        state: int,
        *,
        token: str,
        outputs: Mapping[str, Any] | None = None,
        usage: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> BuildRecord:
        """Complete the lease's attempt; ``usage``: what it used, for pricing (``build.cost``);
        ``fingerprint`` and ``inputs``: what it was made from (``build.fingerprint``), both or none."""
        check_token(token)
        clean = self.checked_outputs(outputs)
        used = check_usage(usage)
        made_from = _made_from(fingerprint, inputs)
        return self._mutate(
            build_id, lambda rec, now: rules.complete(rec, state, token, clean, now, used, made_from), "outputs"
        )

    def checked_outputs(self, outputs: Mapping[str, Any] | None) -> dict[str, Any]:
        """Outputs as ``complete`` would store them (validated, values redacted), so that a caller
        can refuse bad outputs before it commits to anything."""
        clean = redact_value(check_outputs(outputs), self._redact_ids)
        assert isinstance(clean, dict)
        return clean

    def fail(
        self,
        build_id: str,
        state: int,
        *,
        token: str,
        error: str,
        usage: Mapping[str, Any] | None = None,
        fingerprint: str | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> BuildRecord:
        check_token(token)
        used = check_usage(usage)
        made_from = _made_from(fingerprint, inputs)
        if not isinstance(error, str) or not error.strip():
            raise InvalidInput("error", "must be a non-empty message saying what failed")
        # A tool's error output is never refused (the failure must be recorded): control
        # characters are shown as escapes, secrets redacted, the text bounded.
        message = truncated(self._redact(without_controls(error)), MAX_ERROR)
        return self._mutate(build_id, lambda rec, now: rules.fail(rec, state, token, message, now, used, made_from))

    def reset(self, build_id: str, *, to: int, reason: str, actor: str = "imagebuild") -> BuildRecord:
        """Send the build back to milestone ``to``. :class:`Conflict` (nothing written) when the build
        could not run again from there (``build.checkpoints.resume_problem``): every caller, the CLI,
        the API, a redo, the Concourse resource, gets the same answer from here."""
        text = self._redact(check_text(reason, "reason", MAX_REASON))
        who = self._redact_ids(check_owner(actor, "actor"))
        return self._mutate(build_id, lambda rec, now: rules.reset(rec, to, text, who, now))

    def skip(self, build_id: str, state: int, *, reason: str, actor: str = "imagebuild") -> BuildRecord:
        """Step over the build's next milestone on purpose (a person's decision, with a reason)."""
        text = self._redact(check_text(reason, "reason", MAX_REASON))
        who = self._redact_ids(check_owner(actor, "actor"))
        return self._mutate(build_id, lambda rec, now: rules.skip(rec, state, text, who, now))

    def note_clear(self, build_id: str, state: int, *, note: str, actor: str) -> BuildRecord:
        """Record that a person cleared milestone ``state``'s task, and why (``note`` may be empty):
        the milestone's next attempt carries it as its reason."""
        # A note is Markdown typed in Airflow's dialog: its line breaks are kept as " / ".
        flat = " / ".join(line.strip() for line in note.splitlines() if line.strip())
        text = self._redact(check_text(without_controls(flat), "note", MAX_REASON)) if flat else ""
        who = self._redact_ids(check_owner(actor, "actor"))
        return self._mutate(build_id, lambda rec, now: rules.note_clear(rec, state, text, who, now))

    def allow(self, build_id: str, state: int, *, attempts: int, reason: str, actor: str = "imagebuild") -> BuildRecord:
        """Grant milestone ``state`` ``attempts`` more attempts past its cap (a person's decision,
        with a reason, recorded as an event)."""
        more = check_attempts(attempts, "attempts")
        text = self._redact(check_text(reason, "reason", MAX_REASON))
        who = self._redact_ids(check_owner(actor, "actor"))
        return self._mutate(build_id, lambda rec, now: rules.allow(rec, state, more, text, who, now))

    def abandon(self, build_id: str, *, reason: str, actor: str = "imagebuild") -> tuple[BuildRecord, bool]:
        """Give the build up for good (``rules.abandon``): its build status reads ``abandoned`` and
        every later ``begin`` is refused, on every backend. The record after the change, and
        whether it changed (False: abandoned already). Deleting what it holds is the caller's
        (:mod:`airflow_provider_imagebuild.lifecycle`), after this write, so that no milestone
        begins again while its host and checkpoints go."""
        text = self._redact(check_text(reason, "reason", MAX_REASON))
        who = self._redact_ids(check_owner(actor, "actor"))
        changed: list[bool] = []

        def change(rec: BuildRecord, now: datetime) -> tuple[BuildRecord, bool]:
            result, did = rules.abandon(rec, text, who, now)
            changed.append(did)
            return result, did

        rec = self._mutate(build_id, change)
        return rec, changed[-1]

    def record_release(
        self,
        build_id: str,
        *,
        released: Iterable[str],
        still_held: Iterable[str],
        actor: str = "imagebuild",
        not_found: Iterable[str] = (),
    ) -> BuildRecord:
        """Record what an abandon deleted and found gone (ids, no longer held) and what it could not
        delete (sentences)."""
        ids = [self._redact_ids(check_text(r, "released", MAX_REASON)) for r in released]
        gone = [self._redact_ids(check_text(r, "not_found", MAX_REASON)) for r in not_found]
        held = [self._redact(without_controls(h))[:MAX_REASON] for h in still_held]
        who = self._redact_ids(check_owner(actor, "actor"))
        return self._mutate(build_id, lambda rec, now: rules.record_release(rec, ids, held, who, now, gone))

    def record_retirement(
        self, build_id: str, *, retired: Iterable[str], reason: str, actor: str = "imagebuild"
    ) -> BuildRecord:
        """Record that retention deleted these published images of the build (ids, with where
        they were), and why: an event ``build history`` shows, on any build status."""
        ids = [self._redact_ids(check_text(r, "retired", MAX_REASON)) for r in retired]
        text = self._redact(check_text(reason, "reason", MAX_REASON))
        who = self._redact_ids(check_owner(actor, "actor"))
        return self._mutate(build_id, lambda rec, now: rules.record_retirement(rec, ids, text, who, now))

    def record_replay(
        self,
        build_id: str,
        state: int,
        *,
        token: str,
        replayed: int,
        outputs: Mapping[str, Any] | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> BuildRecord:
        check_token(token)
        clean = self.checked_outputs(outputs)
        used = check_usage(usage)
        return self._mutate(
            build_id, lambda rec, now: rules.record_replay(rec, state, token, replayed, clean, now, used), "outputs"
        )

    def reuse(
        self,
        build_id: str,
        state: int,
        *,
        token: str,
        source: str,
        taken: Iterable[tuple[int, Mapping[str, Any], str, Mapping[str, str]]],
    ) -> BuildRecord:
        """Reach the lease's milestone ``state`` and the ones after it by taking build ``source``'s
        results (``rules.reuse``): ``taken`` is (code, outputs, fingerprint, inputs) per milestone."""
        check_token(token)
        check_build_id(source)
        clean = []
        for code, outputs, fingerprint, inputs in taken:
            made_from = _made_from(fingerprint, inputs)
            assert made_from is not None  # both given: a reused result always has what it was made from
            clean.append((code, self.checked_outputs(outputs), made_from))
        return self._mutate(build_id, lambda rec, now: rules.reuse(rec, state, token, source, clean, now), "outputs")

    def set_metadata(
        self,
        build_id: str,
        items: Mapping[str, str],
        *,
        actor: str = "imagebuild",
        token: str | None = None,
        state: int | None = None,
    ) -> BuildRecord:
        """Add or change build metadata. With ``token`` (and the milestone ``state`` it leases),
        only while that lease holds the build; the keys targets rely on (``host_*``...) need it."""
        if token is not None:
            check_token(token)
        checked = check_metadata(items, reserved=token is not None)
        clean = {k: self._redact_ids(v) for k, v in checked.items()}
        who = self._redact_ids(check_owner(actor, "actor"))
        return self._mutate(
            build_id, lambda rec, now: rules.set_metadata(rec, clean, who, now, token, state), "metadata"
        )

    def prune(self, build_id: str, *, updated_before: str) -> BuildRecord | None:
        """Delete a build's record if retention may remove it (``build.retention``: delivered, or
        failed holding nothing) and it has not changed since ``updated_before`` (a stored time);
        the record deleted, or None if it is gone, not removable, or changed (a concurrent writer
        resumed it). The rule is applied here, to the record as read for the delete, which is
        conditional on that version as every write: no caller can remove more."""
        check_build_id(build_id)

        def fn(doc: Doc | None) -> tuple[Doc | None, BuildRecord | None]:
            if doc is None:
                return None, None
            rec = BuildRecord.from_doc(doc, build_id)
            if not retention_verdict(rec).removable or not rec.updated_at < updated_before:
                return None, None
            return DELETE, rec

        return self._apply(build_id, fn)

    def get(self, build_id: str) -> BuildRecord:
        check_build_id(build_id)
        got = self._read(build_id)
        if got is None:
            raise NotFound(f"build {build_id} not found in {self.describe()}")
        return BuildRecord.from_doc(got[0], build_id)

    def find(self, build_id: str) -> BuildRecord | None:
        try:
            return self.get(build_id)
        except NotFound:
            return None

    def history(self, build_id: str) -> list[dict[str, Any]]:
        """Attempts and events in time order (attempts before events at equal times)."""
        public = self.get(build_id).to_public()  # as readers see it: lease ids, never lease tokens
        rows: list[dict[str, Any]] = []
        for a in public["attempts"]:
            rows.append({"at": a["started_at"], "type": "attempt", **a})
        for e in public["events"]:
            rows.append({"at": e["at"], "type": "event", **e})
        rows.sort(key=lambda r: (r["at"], r["type"] != "attempt"))
        return rows

    def list_builds(
        self,
        *,
        status: str | None = None,
        cloud: str | None = None,
        pipeline: str | None = None,
        updated_before: datetime | str | None = None,
        updated_after: datetime | str | None = None,
    ) -> list[BuildRecord]:
        flt = ListFilter.checked(
            status=status, cloud=cloud, pipeline=pipeline, updated_before=updated_before, updated_after=updated_after
        )
        records, problems = self.scan_builds(flt)
        for problem in problems:
            log.warning("%s", problem)
        return records

    def scan_builds(self, flt: ListFilter | None = None) -> tuple[list[BuildRecord], list[CorruptRecord]]:
        """Builds matching ``flt``, newest change first, and the records that cannot be read
        (each named; they are left untouched for inspection)."""
        flt = flt or ListFilter()
        records: list[BuildRecord] = []
        problems: list[CorruptRecord] = []
        for build_id, doc in self._scan(flt):
            if isinstance(doc, CorruptRecord):
                problems.append(doc)
                continue
            if not flt.matches(doc):
                continue
            try:
                records.append(BuildRecord.from_doc(doc, build_id))
            except CorruptRecord as exc:
                problems.append(CorruptRecord(f"build {build_id}: {exc}"))
        records.sort(key=lambda r: (r.updated_at, r.build_id), reverse=True)
        return records, problems


def _ts_filter(value: datetime | str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return format_ts(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(field, f"must be an ISO 8601 time, got {value[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_ts(moment)


__all__ = ["DEFAULT_LEASE_SECONDS", "BuildStore", "CasFailed", "ListFilter", "parse_ts", "utcnow"]
