"""The operators' base: what every task of a pipeline shares, and the resume logic of a milestone.

:class:`BuildOperator` is the plumbing every task has: the build's identity, its store, the build
id of the run, the owner name of a try, and redacted tool output in the task log. What a task
raises is redacted too (:meth:`BuildOperator.redacted`): an error quotes a tool's last lines, a
cloud's answer or an HTTP body, and Airflow prints it, causes and all, into the task log.

:class:`MilestoneOperator` is the resume logic, and nothing else: ``execute`` of a milestone task

1. resolves the build id (the trigger form's ``build_id``, else derived from pipeline and run);
2. reads the build; a completed milestone is **skipped** in milliseconds with a log line saying
   when and by which attempt it was reached, and its recorded outputs are returned;
3. otherwise takes the **lease** (owner = dag/run/task/try) and opens a milestone session that
   heartbeats it from a thread;
4. **runs** the action (:meth:`MilestoneOperator.run_milestone`);
5. **records** outputs and completes, or records the redacted error and re-raises it (redacted)
   so that Airflow's retry policy applies. Bad input raises ``AirflowFailException`` (no retries).

Registration (milestone 0) is its own operator (:mod:`.register`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_imagebuild.build.catalog import title_of
from airflow_provider_imagebuild.build.checkpoints import CHECKPOINT_OUTPUT
from airflow_provider_imagebuild.build.fingerprint import MilestoneFingerprint
from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.ids import derive_build_id
from airflow_provider_imagebuild.build.record import BuildRecord, Lease, lease_id_of, parse_ts
from airflow_provider_imagebuild.build.values import DEFAULT_LEASE_SECONDS
from airflow_provider_imagebuild.clouds.connections import missing_connection
from airflow_provider_imagebuild.errors import (
    Conflict,
    ImageBuildError,
    InvalidInput,
    StoreUnavailable,
    TargetError,
    first_line,
)
from airflow_provider_imagebuild.failures import classify
from airflow_provider_imagebuild.links import build_page
from airflow_provider_imagebuild.operators.links import BuildPageLink, ImageLink, airflow_address, airflow_root
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.redact.patterns import redact_exception
from airflow_provider_imagebuild.spec.notify import NotifySpec
from airflow_provider_imagebuild.store import BuildStore

if TYPE_CHECKING:
    from airflow_provider_imagebuild.fingerprints import FingerprintSource

FAIL_AT_ENV = "IMAGEBUILD_FAIL_AT"


def injected_failure(state: int, attempt: int) -> bool:
    """True when ``$IMAGEBUILD_FAIL_AT`` names ``state``: a switch for drills and demos that makes a
    milestone fail after taking its lease, without editing any code. Comma-separated codes; ``85``
    fails every attempt at 85, ``85@1`` only its first (a flaky failure that a clear gets past)."""
    for item in os.environ.get(FAIL_AT_ENV, "").split(","):
        code, _, only = item.strip().partition("@")
        if code == str(state) and (not only or only == str(attempt)):
            return True
    return False


class BuildOperator(BaseOperator):
    """A task of a pipeline: one milestone (``state``) of the build described by ``identity``."""

    # Run-time state, set only while a task runs: class-level defaults keep them out of
    # BaseOperator.__setattr__ at parse time, where every task of every pipeline is created.
    _redactor: Callable[[str], str] | None = None
    _in_key: bool = False
    _last_line: str = ""  # the latest tool output line logged, for progress lines
    _build_id: str | None = None  # the build this task worked on, and (milestones) what it
    _outputs: dict[str, Any] | None = None  # produced: read by the extra links when it ends
    progress_seconds: float = 30.0

    def __init__(
        self,
        *,
        identity: BuildIdentity,
        state: int,
        store: str | None = None,
        store_conn_id: str | None = None,
        lease_seconds: int | None = None,
        notify: NotifySpec | None = None,
        made_from: FingerprintSource | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.notify = notify
        self.made_from = made_from  # the spec and its folder, for the milestone's fingerprint
        self.identity = identity
        self.state = state
        self.store_url = store
        self.store_conn_id = store_conn_id
        self.lease_seconds = lease_seconds or DEFAULT_LEASE_SECONDS

    # The identity's parts, as the actions read them.
    @property
    def pipeline(self) -> str:
        return self.identity.pipeline

    @property
    def cloud(self) -> str:
        return self.identity.cloud

    @property
    def image_type(self) -> str:
        return self.identity.image_type

    @property
    def os_name(self) -> str:
        return self.identity.os

    @property
    def plan(self) -> list[int]:
        return list(self.identity.plan)

    def open_store(self) -> BuildStore:
        from airflow_provider_imagebuild.hooks.store_choice import store_for

        return store_for(self.store_url, self.store_conn_id)

    def resolve_build_id(self, context: Any) -> str:
        """The trigger form's ``build_id`` (an empty field: none), else one derived from the run."""
        from airflow_provider_imagebuild.operators.trigger import conf_of, given_build_id

        given = given_build_id(conf_of(context))
        self._build_id = given or derive_build_id(self.pipeline, context["dag_run"].run_id)
        return self._build_id

    def owner_for(self, context: Any) -> str:
        ti = context["ti"]
        return f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/try-{ti.try_number}"

    @property
    def redactor(self) -> Callable[[str], str]:
        """The patterns plus every value Airflow masks (for text a tool prints)."""
        if self._redactor is None:
            from airflow_provider_imagebuild.hooks.build_state import airflow_redactor

            self._redactor = airflow_redactor()
        return self._redactor

    def log_output(self, line: str) -> None:
        """A line of a tool's output, into the task log with secrets redacted: Airflow masks only
        the secrets it knows; a tool may print an AWS key, a password= or a private key. A key
        printed over several lines is hidden from its BEGIN line to its END line."""
        if self._in_key:
            self._in_key = "-----END " not in line
            return
        if "PRIVATE KEY-----" in line and "-----BEGIN " in line and "-----END " not in line:
            self._in_key = True
            self.log.info("%s", "-----BEGIN PRIVATE KEY-----***(redacted)")
            return
        shown = self.redactor(line)
        self.log.info("%s", shown)
        if shown.strip():
            self._last_line = shown.strip()[:200]

    def execute(self, context: Any) -> dict[str, Any]:
        return self.execute_milestone(context)

    def execute_milestone(self, context: Any) -> dict[str, Any]:
        """What :meth:`execute` does. Airflow wraps every operator's ``execute`` in a guard that
        warns when it is called outside its Task Runner; ``imagebuild milestone run`` (Concourse,
        a shell job) runs the task without one, so it calls this, the same work, instead."""
        try:
            try:
                return self.run_task(context)
            except InvalidInput as exc:  # names the field and the reason: its traceback adds nothing
                raise AirflowFailException(f"invalid input: {exc}") from None
            except StoreUnavailable as exc:
                raise AirflowException(f"store unreachable: {exc}") from exc
        except Exception as raised:
            # Every failure of every task leaves here: Airflow (or the CLI) prints it with its causes,
            # and its text quotes tool output, cloud answers and HTTP bodies.
            safe = self.redacted(raised)
            if safe is raised:
                raise
            raise safe from safe.__cause__

    def redacted(self, exc: BaseException) -> BaseException:
        """``exc`` with the secrets in its text (and its causes') hidden, to raise in its place."""
        return redact_exception(exc, self.redactor)

    def run_task(self, context: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


LEASE_FILE_ENV = "IMAGEBUILD_LEASE_FILE"  # where a step writes its lease token (for Concourse's hooks)


def write_lease_file(token: str) -> None:
    """Leave the lease token where ``$IMAGEBUILD_LEASE_FILE`` says (mode 0600), for a Concourse
    hook that records an interruption the step itself could not."""
    target = os.environ.get(LEASE_FILE_ENV)
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")


class MilestoneOperator(BuildOperator):
    """Reaches one milestone of a build, or skips it when the store says it was reached already.

    Subclasses implement :meth:`run_milestone`; this class is itself the no-op milestone (a
    standard milestone the spec lists without an action).
    """

    ui_color = "#e8f1fb"
    operator_extra_links = (BuildPageLink(), ImageLink())

    # -- hooks for subclasses ------------------------------------------------------------------
    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        """Do the milestone's work; return its outputs. The default does nothing."""
        return {}

    def stop_action(self, reason: str) -> None:
        """Stop the running action (child process); called on kill and on a lost lease."""

    def source_image_resolver(self) -> Callable[[], str | None] | None:
        """The target's verb for a watch ``image: source`` (None: this milestone has no target)."""
        return None

    def fingerprint_now(self, rec: BuildRecord) -> MilestoneFingerprint | None:
        """This milestone's fingerprint as it starts (build/fingerprint.py), chained on the previous
        milestone's recorded one; an unknown previous one (skipped, trimmed, recorded before
        fingerprints) is unique to this attempt, so nothing is reused across it. None without a spec
        (a task made outside the DAG factory) or when it cannot be computed: the milestone runs
        anyway and simply records no fingerprint."""
        if self.made_from is None:
            return None
        try:
            plan = list(rec.plan)
            before = plan[plan.index(self.state) - 1] if self.state in plan and plan.index(self.state) > 0 else None
            previous = None if before is None or before == plan[0] else rec.fingerprint_of(before)
            if before is not None and before != plan[0] and previous is None:
                previous = f"unknown:{uuid.uuid4().hex}"
            found = self.made_from.fingerprint(self.state, previous, self.source_image_resolver(), self.log.info)
        except Exception as exc:  # a fingerprint must never fail a milestone
            self.log.warning("no fingerprint for milestone %s: %s", self.state, first_line(exc))
            return None
        self.log.info("fingerprint of milestone %s: %s (%d inputs)", self.state, found.fingerprint, len(found.inputs))
        return found

    def reuse_earlier_work(self, store: BuildStore, rec: BuildRecord, session: MilestoneSession) -> BuildRecord | None:
        """A new build's first milestone: take an earlier build's matching work (:mod:`.reuse`)
        instead of running; the record after it, or None to run. Never fails the milestone: what
        goes wrong before anything is recorded makes a cold build, said in the log."""
        from airflow_provider_imagebuild.operators.reuse import reuse_earlier_work

        if self.made_from is None or self.made_from.spec.reuse is None:
            return None
        try:
            return reuse_earlier_work(self, store, rec, session)
        except (ImageBuildError, OSError, ValueError) as exc:
            if session.lost or session.stopped:  # the reuse was (or may have been) recorded: not a cold run
                raise
            self.log.warning("reuse: %s; this build runs every milestone", first_line(exc))
            return None

    def after_delivery(self, store: BuildStore, rec: BuildRecord) -> None:
        """What the milestone that delivered the build does after recording it (the target
        milestones delete what earlier builds kept for reuse); nothing here."""

    def _reused(self, store: BuildStore, rec: BuildRecord, context: Any) -> dict[str, Any]:
        """What a milestone whose work was taken from an earlier build returns, as if it had run."""
        outputs = dict(rec.milestones[self.state].outputs)
        if rec.delivered:
            from airflow_provider_imagebuild.build.reuse import delivered_unchanged

            source = delivered_unchanged(rec)
            detail = f"nothing changed since build {source}: its image is delivered again" if source else None
            self._announce(store, rec, "delivered", str(rec.delivered_at), None, detail)
        context["ti"].xcom_push(key="outputs", value=outputs)
        self._outputs = outputs
        return outputs

    # -- skip / lease / run / record -------------------------------------------------------------
    def run_task(self, context: Any) -> dict[str, Any]:
        build_id = self.resolve_build_id(context)
        store = self.open_store()
        name = f"milestone {self.state} ({title_of(self.state, self.identity.titles)})"
        context["ti"].xcom_push(key="build_id", value=build_id)
        rec = self.read_build(store, build_id, context)
        done = rec.milestones.get(self.state)
        if done is not None and done.skipped:
            self.log.info(
                "%s of build %s was skipped on purpose by %s at %s: %s",
                name,
                build_id,
                done.owner,
                done.completed_at,
                done.skip_reason,
            )
        elif done is not None:
            self.log.info(
                "%s of build %s is skipped: achieved at %s by attempt %d (%s)",
                name,
                build_id,
                done.completed_at,
                done.attempt,
                done.owner,
            )
        if done is not None:
            context["ti"].xcom_push(key="outputs", value=done.outputs)
            self._outputs = dict(done.outputs)
            return dict(done.outputs)
        lease = self._take_lease(store, build_id, context, name)
        write_lease_file(lease.token)  # only where a Concourse step asked for it
        self.log.info(
            "%s of build %s: attempt %d started (lease %s, %ss)",
            name,
            build_id,
            lease.attempt,
            lease_id_of(lease.token),  # the task log is for DAG readers: the lease id, not the token
            self.lease_seconds,
        )
        session = MilestoneSession(store, build_id, lease, self.stop_action)
        made_from: MilestoneFingerprint | None = None
        reused: BuildRecord | None = None
        try:
            with session, self.progress(name, build_id):
                if injected_failure(self.state, lease.attempt):
                    # Not retried: the drill stops where it was asked to, like a persistent error.
                    raise AirflowFailException(f"failure injected at milestone {self.state} ({FAIL_AT_ENV})")
                reused = self.reuse_earlier_work(store, rec, session)  # a new build: an earlier one's work
                if reused is None:
                    made_from = self.fingerprint_now(rec)  # what it starts from, before it runs
                    outputs = self.run_milestone(context, rec, session)
            if reused is not None:
                return self._reused(store, reused, context)
            if session.lost:
                raise AirflowFailException(f"lease lost while running {name}: {session.lost}")
            # Outputs the store would refuse (a secret-looking key, a NUL, too large) fail the
            # attempt here, recorded and not retried, instead of leaving it in progress.
            outputs = session.checked_outputs(outputs)
        except BaseException as raised:
            exc = self.redacted(raised)  # before its text is matched, logged, recorded or announced
            missing = missing_connection(exc)  # a connection to create: one line, not retried
            stopped = AirflowFailException(missing) if missing else self._persistent(exc)
            if isinstance(exc, Exception) and self.fails_for_good(context, stopped or exc):
                self.failed_for_good(session)  # under the lease still: the failure is not recorded yet
            self._record_failure(session, stopped or exc, self.attempt_usage(store, rec, lease, None), made_from)
            cause = (str(stopped or exc).strip() or type(exc).__name__).splitlines()[0][:500]
            self.log.error("%s of build %s failed: %s", name, build_id, cause)  # the cause first, then the advice
            self._log_resume_hint(rec)
            if isinstance(exc, Exception):
                self._announce_failure(store, build_id, context, stopped or exc)
            if stopped is not None:
                raise stopped from (None if missing else exc)
            if exc is raised:
                raise
            raise exc from exc.__cause__
        try:
            rec = session.complete(outputs, self.attempt_usage(store, rec, lease, outputs), made_from)
        except InvalidInput as exc:  # the record would outgrow its size limit
            self._record_failure(session, exc, None, made_from)
            self._log_resume_hint(rec)
            raise
        self.log.info("%s of build %s completed%s", name, build_id, " - build delivered" if rec.delivered else "")
        if rec.delivered:
            self._announce(store, rec, "delivered", str(rec.delivered_at), None)
            self.after_delivery(store, rec)
        context["ti"].xcom_push(key="outputs", value=outputs)
        self._outputs = dict(outputs)
        return outputs

    @contextlib.contextmanager
    def progress(self, name: str, build_id: str) -> Iterator[None]:
        """While the action runs, a line every :attr:`progress_seconds` with the time spent and the
        tool's latest line (its play and task, a percentage where it prints one), so that a person
        watching a long Packer wait or a quiet mkfs knows the build is alive."""
        stop = threading.Event()
        started = time.monotonic()

        def tick() -> None:
            while not stop.wait(self.progress_seconds):
                elapsed = int(time.monotonic() - started)
                latest = f"; latest: {self._last_line}" if self._last_line else ""
                self.log.info("%s of build %s still running (%dm%02ds)%s", name, build_id, *divmod(elapsed, 60), latest)

        ticker = threading.Thread(target=tick, name=f"progress-{build_id}-{self.state}", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join(5)

    def read_build(self, store: BuildStore, build_id: str, context: Any) -> BuildRecord:
        """The build; if this run's spec has another plan (a milestone added or removed since the
        build started, then the failed task cleared), the store takes it first when it changes
        only milestones not reached yet."""
        rec = store.get(build_id)
        if tuple(rec.plan) != self.identity.plan:
            try:
                rec = store.register(build_id, self.identity, owner=self.owner_for(context), plan_changes=True)
            except Conflict as exc:
                raise AirflowFailException(str(exc)) from exc
        return rec

    def _take_lease(self, store: BuildStore, build_id: str, context: Any, name: str) -> Lease:
        """Begin the milestone. An earlier try of this very task that died (SIGKILL, lost worker)
        still holds the lease until it expires: Airflow starts a new try only once the old one is
        over, so wait for that expiry and take over. Any other holder is another run working on the
        build (a double trigger): fail at once, naming it."""
        owner = self.owner_for(context)
        same_task = owner.rsplit("/", 1)[0] + "/"
        deadline = time.monotonic() + self.lease_seconds + 30
        while True:
            try:
                return store.begin(build_id, self.state, owner=owner, lease_seconds=self.lease_seconds)
            except Conflict as exc:
                earlier_try = exc.holder is not None and exc.holder.startswith(same_task) and exc.holder != owner
                if not earlier_try or time.monotonic() > deadline:
                    raise AirflowFailException(f"cannot start {name} of build {build_id}: {exc}") from exc
                self.log.warning(
                    "%s is still leased by an earlier try (%s); waiting for its lease to expire", name, exc.holder
                )
                time.sleep(min(2.0, max(self.lease_seconds / 10, 0.2)))

    # -- failing for good ----------------------------------------------------------------------
    def fails_for_good(self, context: Any, exc: BaseException) -> bool:
        """Whether Airflow will not try this milestone again: a failure it does not retry (bad
        input, a persistent class), or the last try (``try_number`` past the task's ``retries``)."""
        try_number = int(getattr(context["ti"], "try_number", 1) or 1)
        return isinstance(exc, AirflowFailException) or try_number > (self.retries or 0)

    def failed_for_good(self, session: MilestoneSession) -> None:
        """What a milestone does when it failed for good, before the failure is recorded (the
        target milestones park the build host); nothing here."""

    # -- usage, for pricing (build/cost.py) ------------------------------------------------------
    builds_on_a_host = False  # Packer's milestones: its own build VM runs whatever the record says

    def host_size(self) -> str | None:
        """The build host's size as the target settings name it (the cloud's own word for it)."""
        settings = getattr(self, "target_settings", None)
        for key in ("instance_type", "vm_size", "machine_type", "flavor"):
            value = getattr(settings, key, None)
            if isinstance(value, str) and value:
                return value
        return None

    def attempt_usage(
        self, store: BuildStore, before: BuildRecord, lease: Lease, outputs: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """What this attempt used, recorded on it when it ends: the host's size and the hours of the
        attempt (begin..now) when the build had a host at its start or has one now (the launch's own
        attempt counts whole), less the replays it recorded with their own host time, and the size of
        the checkpoint it captured where known (a target's ``checkpoint_gb`` output; the local
        target's archive file), and the GB a publish copied to other regions (its ``transfer_gb``
        output, else the sealed image's ``final_gb`` for each copy in ``published_images`` beyond
        the first). Never fails the
        attempt: a usage that cannot be read is left out (the report counts the attempt as
        unmetered)."""
        try:
            now = store.find(before.build_id)
            hosted = self.builds_on_a_host or bool(before.metadata.get("host_id"))
            hosted = hosted or bool(now is not None and now.metadata.get("host_id"))
            hours = (datetime.now(timezone.utc) - parse_ts(lease.acquired_at)).total_seconds() / 3600 if hosted else 0.0
            # Replays this attempt did on a relaunched host carry their own host time: not counted twice.
            mine = [a for a in (now.attempts if now else []) if a.kind == "replay" and a.lease_id == lease.token]
            replays = [a.usage for a in mine]
            hours -= sum(float(u.get("host_hours") or 0) for u in replays if u)
            usage: dict[str, Any] = {"host_size": self.host_size(), "host_hours": round(max(hours, 0.0), 6)}
            checkpoint = (outputs or {}).get(CHECKPOINT_OUTPUT)
            if isinstance((outputs or {}).get("checkpoint_gb"), (int, float)):
                usage["checkpoint_gb"] = (outputs or {})["checkpoint_gb"]
            elif checkpoint and before.cloud == "local" and Path(str(checkpoint)).is_file():
                usage["checkpoint_gb"] = round(Path(str(checkpoint)).stat().st_size / 1e9, 6)
            copies = (outputs or {}).get("published_images")  # region -> image, the source region's included
            final_gb = now.merged_outputs().get("final_gb") if now is not None else None
            transfer = (outputs or {}).get("transfer_gb")  # a target's own count (Azure's replicas, GCP's copies)
            if isinstance(transfer, (int, float)) and not isinstance(transfer, bool):
                usage["transfer_gb"] = float(transfer)
            elif isinstance(copies, dict) and isinstance(final_gb, (int, float)) and len(copies) > 1:
                usage["transfer_gb"] = float(final_gb) * (len(copies) - 1)  # each copy to another region
            return usage
        except Exception as exc:  # pricing must never fail a milestone
            self.log.warning("could not measure what attempt %d used: %s", lease.attempt, exc)
            return None

    # -- notifications -------------------------------------------------------------------------
    def _announce_failure(self, store: BuildStore, build_id: str, context: Any, exc: BaseException) -> None:
        """``failed`` once per milestone and DAG run (not per retry), and ``retries_exhausted`` when
        Airflow will not try again (the last try, or a failure of a persistent class)."""
        if self.notify is None:
            return
        try:
            rec = store.get(build_id)
        except ImageBuildError as problem:
            self.log.warning("no notification: the store cannot be read: %s", problem)
            return
        key = f"{self.state}:{context['dag_run'].run_id}"
        self._announce(store, rec, "failed", key, exc)
        if self.fails_for_good(context, exc):
            self._announce(store, rec, "retries_exhausted", key, exc)

    def _announce(
        self,
        store: BuildStore,
        rec: BuildRecord,
        event: str,
        key: str,
        exc: BaseException | None,
        detail: str | None = None,
    ) -> None:
        from airflow_provider_imagebuild.notify import MARK, Notice, already_sent, send

        spec = self.notify
        if spec is None or event not in spec.on or already_sent(rec.metadata, event, key):
            return
        attempts = rec.attempts_at(self.state)
        notice = Notice(
            event=event,
            build_id=rec.build_id,
            pipeline=rec.pipeline,
            cloud=rec.cloud,
            image_type=rec.image_type,
            milestone=None if event == "delivered" else self.state,
            milestone_name="" if event == "delivered" else title_of(self.state, self.identity.titles),
            status=rec.status,
            attempt=attempts[-1].attempt if attempts and event not in ("delivered", "awaiting_approval") else None,
            error=self.redactor(str(exc))[:1000] if exc is not None else None,
            build_page=build_page(rec.build_id, airflow_address()),
            at=rec.updated_at,
            detail=detail,
            changed=self._what_changed(store, rec)
            if event in ("failed", "retries_exhausted", "awaiting_approval")
            else (),
        )
        sent = send(spec, notice, warn=self.log.warning)
        self.log.info("notified %s of %s (build %s): %s", event, key, rec.build_id, ", ".join(sent) or "nobody")
        try:
            store.set_metadata(rec.build_id, {f"{MARK}{event}": key}, actor=f"milestone {self.state}")
        except ImageBuildError as problem:  # the notice went out; a repeat is the worst case
            self.log.warning("could not record the %s notification: %s", event, problem)

    def _what_changed(self, store: BuildStore, rec: BuildRecord) -> tuple[str, ...]:
        """What changed at and before this milestone since the pipeline's last delivered build, for
        a failure notice (build/changes.py); nothing when it cannot be said (never fails the notice)."""
        from airflow_provider_imagebuild.build.changes import what_changed
        from airflow_provider_imagebuild.sbom import changes as _packages  # noqa: F401 - adds the package changes
        from airflow_provider_imagebuild.store import ListFilter

        try:
            builds, _ = store.scan_builds(ListFilter(pipeline=rec.pipeline, status="completed"))
            found = what_changed(rec, builds, self.state)
        except Exception as exc:  # a notice goes out without it
            self.log.warning("what changed since the last delivered build is unknown: %s", exc)
            return ()
        return tuple(found.text_lines()) if found is not None else ()

    def _persistent(self, exc: BaseException) -> AirflowFailException | None:
        """A failure of a persistent class (:mod:`..failures`: refused credentials, an invalid
        template, an exhausted quota...) as one Airflow does not retry, naming the class and why;
        None for the others, which keep Airflow's retries."""
        if isinstance(exc, AirflowFailException) or not isinstance(exc, (AirflowException, TargetError)):
            return None
        failure = classify(str(exc))
        if failure is None:
            return None
        self.log.error("%s (matched: %s)", failure.describe(), failure.line)
        if not failure.persistent:
            return None
        return AirflowFailException(f"{failure.describe()}\n{exc}")

    def _log_resume_hint(self, rec: BuildRecord) -> None:
        """The last lines of a failed milestone's log: what clearing the task will do."""
        done = [c for c in rec.completed if c < self.state]
        kept = f"milestones {done[0]}..{done[-1]} stay done" if done else "nothing else is redone"
        from airflow_provider_imagebuild.operators.trigger import resume_advice
        from airflow_provider_imagebuild.rerun import outside_airflow, rerun_advice

        if outside_airflow():  # a Concourse or shell step: there is no Airflow task to clear
            self.log.error(
                "to resume build %s at milestone %s (%s; nothing already achieved is redone), %s; "
                "history: imagebuild build show %s",
                rec.build_id,
                self.state,
                kept,
                rerun_advice(),
                rec.build_id,
            )
            return

        self.log.error(
            "clear this task to resume build %s at milestone %s (%s; nothing already achieved is redone), "
            "or resume it in a new run from the trigger form: %s. "
            "Build page: %s (a note written in the Clear dialog is recorded as the next attempt's reason); "
            "history: imagebuild build show %s",
            rec.build_id,
            self.state,
            kept,
            resume_advice(rec.build_id),
            build_page(rec.build_id, airflow_root()),
            rec.build_id,
        )

    def _record_failure(
        self,
        session: MilestoneSession,
        exc: BaseException,
        usage: dict[str, Any] | None = None,
        made_from: MilestoneFingerprint | None = None,
    ) -> None:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if not isinstance(exc, (AirflowException, ImageBuildError)):
            message += "\n" + "".join(traceback.format_exception(exc, limit=-3))
        try:
            session.fail(message, usage, made_from)
        except ImageBuildError as store_exc:  # the lease is gone or the store is down: report, keep exc
            self.log.error("could not record the failure of milestone %s: %s", self.state, store_exc)

    def on_kill(self) -> None:
        self.stop_action("task killed")
