"""The approval milestone: a person approves or rejects on Airflow's own human-in-the-loop page.

Built on the standard provider's :class:`ApprovalOperator`, so the task waits in Airflow's
``awaiting_input`` state (no worker slot, no trigger) and Airflow's UI lists it under Required
actions with its Approve and Reject buttons and a comment field. Airflow's auth manager decides who
may respond: a user with edit rights on the DAG's human-in-the-loop details who is one of the task's
assigned users, here the spec's ``approvers`` (roles expanded to their users when the request is
made: :func:`assigned_users`).

The store keeps the gate like any milestone (:mod:`..build.approval`): the request as
``approval.<code>`` metadata, the decision as the milestone's attempt in the decider's name
(completed when approved; failed when rejected, the comment as the build's reason, and not retried).
No lease is held while a person thinks, so nothing expires and nothing heartbeats for hours.

1. ``execute``: a milestone completed already is skipped as everywhere; else the request is recorded,
   ``awaiting_approval`` announced (``notify:``) and Airflow asked for the decision.
2. ``execute_complete`` (Airflow resumes the task with the response, or the scheduler's timeout
   sweep does): the decision is recorded; a rejection (or ``on_timeout: fail``) fails the task for
   good. A clear runs ``execute`` again: a new request, a new attempt.

Outside Airflow (``imagebuild milestone run`` in a Concourse or shell step) there is no respond page:
the step records the request and polls the store until ``imagebuild build approve|reject`` decides.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.execution_time.hitl import HITLUser

from airflow_provider_imagebuild.approvals import decide, not_waiting_why, record_timeout, request_approval
from airflow_provider_imagebuild.build.approval import (
    NO_REASON,
    REJECTED,
    awaiting_approval,
    clean_comment,
    request_body,
    timeout_error,
)
from airflow_provider_imagebuild.build.record import FAILED, BuildRecord, parse_ts
from airflow_provider_imagebuild.build.rules import HELD, readiness
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput
from airflow_provider_imagebuild.links import build_page, sbom_api
from airflow_provider_imagebuild.operators.base import MilestoneOperator
from airflow_provider_imagebuild.operators.links import airflow_address
from airflow_provider_imagebuild.sbom.stored import sbom_summary
from airflow_provider_imagebuild.spec.approval import Approvers
from airflow_provider_imagebuild.store import BuildStore

COMMENT = "comment"  # the respond form's field: the decision's comment (a rejection's reason)
ASK = object()  # run_task's answer when Airflow must now ask the person


def assigned_users(approvers: Approvers) -> list[HITLUser]:
    """The HITL request's assigned users: the spec's users, and the users of its roles as the
    deployment's auth manager lists them. Airflow's simple auth manager lists its users (name and
    role); an auth manager that does not list users cannot expand a role, and the request is
    refused naming the key (a role left unexpanded would let nobody, or everybody, respond)."""
    users = list(approvers.users)
    if approvers.roles:
        from airflow.api_fastapi.app import get_auth_manager_cls
        from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

        manager = get_auth_manager_cls()
        if not issubclass(manager, SimpleAuthManager):
            raise InvalidInput(
                "approvers",
                f"roles ({', '.join(approvers.roles)}) need an auth manager that lists its users "
                f"(Airflow's simple auth manager); {manager.__name__} does not: name the users instead",
            )
        wanted = {role.lower() for role in approvers.roles}
        users += [u.username for u in manager.get_users() if (u.role or "").lower() in wanted]
    unique = list(dict.fromkeys(users))
    if not unique:
        raise InvalidInput("approvers", f"nobody holds the roles {', '.join(approvers.roles)}: nobody could approve")
    return [HITLUser(id=name, name=name) for name in unique]


POLL_ENV = "IMAGEBUILD_APPROVAL_POLL_SECONDS"  # outside Airflow: how often a waiting step reads the store


def poll_seconds() -> float:
    """``$IMAGEBUILD_APPROVAL_POLL_SECONDS`` (0.1 to 300), else 5: each poll is one read of the store."""
    try:
        return min(max(float(os.environ.get(POLL_ENV, "5")), 0.1), 300.0)
    except ValueError:
        return 5.0


def _waited(seconds: float | None) -> str:
    return str(timedelta(seconds=int(seconds))) if seconds else "no limit"


class ApprovalMilestoneOperator(MilestoneOperator, ApprovalOperator):
    """Waits for a person's decision on the build (``action: approval``)."""

    ui_color = "#fff3c4"

    def __init__(
        self,
        *,
        approvers: list[str],
        timeout: float | None = None,
        on_timeout: str | None = None,
        **kwargs: Any,
    ) -> None:
        reject_on_timeout = on_timeout == "reject"
        # The DAG's own params (the trigger form) arrive here too; the respond form shows the task's.
        kwargs.pop("params", None)
        super().__init__(
            subject="Approve the image build?",  # the build's own words replace it when the task asks
            body=None,
            response_timeout=timedelta(seconds=timeout) if timeout else None,
            # The scheduler's timeout sweep answers with the defaults; without any, it fails the wait.
            defaults=[ApprovalOperator.REJECT] if reject_on_timeout else None,
            params={
                COMMENT: Param(
                    "",
                    type="string",
                    title="Comment",
                    description="Why you approve or reject; a rejection's comment is the build's reason.",
                    maxLength=2000,
                )
            },
            fail_on_reject=True,
            **kwargs,
        )
        self.approvers = list(approvers)
        self.approval_timeout = timeout
        self.on_timeout = on_timeout or "fail"

    # -- asking ------------------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        outputs = self.execute_milestone(context)
        if outputs is not ASK:
            return outputs
        # Outside the milestone wrapper: Airflow's wait is a BaseException it must see as raised.
        return ApprovalOperator.execute(self, context)

    def run_task(self, context: Any) -> Any:
        build_id = self.resolve_build_id(context)
        store = self.open_store()
        context["ti"].xcom_push(key="build_id", value=build_id)
        rec = self.read_build(store, build_id, context)
        done = self._done(rec, context)
        if done is not None:
            return done
        verdict, why = readiness(rec, self.state, datetime.now(timezone.utc))
        if verdict == HELD:
            raise AirflowFailException(f"cannot ask for the approval: {why}")
        who = Approvers.of(self.approvers)
        assigned = assigned_users(who)
        rec = request_approval(store, build_id, self.state, actor=self.owner_for(context))
        page = build_page(build_id, airflow_address())
        until = (
            f"It waits {_waited(self.approval_timeout)}, then {'rejects' if self.on_timeout == 'reject' else 'fails'}."
            if self.approval_timeout
            else "It waits until somebody decides."
        )
        self.subject = f"Approve build {build_id} at {rec.label(self.state)}?"
        changed = self._what_changed(store, rec)  # since the pipeline's last delivered build (fingerprints)
        # The seal's bill of materials from the record alone (its file may be on another worker).
        sbom, sbom_link = sbom_summary(rec), sbom_api(build_id, airflow_address())
        self.body = request_body(rec, self.state, page, who.describe(), until, changed, sbom, sbom_link)
        self.assigned_users = assigned
        asked = awaiting_approval(rec, self.state) or ""
        self.log.info("%s of build %s asks %s for an approval (%s)", rec.label(self.state), build_id,
                      ", ".join(u["name"] for u in assigned), page)  # fmt: skip
        self._announce(store, rec, "awaiting_approval", f"{self.state}:{asked}", None,
                       detail=f"who may respond: {who.describe()}. {until}")  # fmt: skip
        from airflow_provider_imagebuild.rerun import outside_airflow

        if outside_airflow():
            return self._wait_in_store(store, build_id)
        return ASK

    def _done(self, rec: BuildRecord, context: Any) -> dict[str, Any] | None:
        done = rec.milestones.get(self.state)
        if done is None:
            return None
        self.log.info(
            "milestone %s of build %s is skipped: decided at %s by %s",
            rec.label(self.state),
            rec.build_id,
            done.completed_at,
            done.owner,
        )
        context["ti"].xcom_push(key="outputs", value=done.outputs)
        self._outputs = dict(done.outputs)
        return dict(done.outputs)

    # -- the decision ------------------------------------------------------------------------------
    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Airflow resumes the task: with the person's response, or the timeout sweep's."""
        build_id = self.resolve_build_id(context)
        store = self.open_store()
        rec = store.get(build_id)
        done = self._done(rec, context)
        if done is not None:  # decided outside Airflow (imagebuild build approve) meanwhile
            return done
        if awaiting_approval(rec, self.state) is None:
            last = rec.attempts_at(self.state)[-1:] or None
            if last and last[0].status == FAILED:  # rejected outside Airflow meanwhile
                raise AirflowFailException(last[0].error or not_waiting_why(rec, self.state))
            raise AirflowFailException(not_waiting_why(rec, self.state))
        if "error" in event:  # the wait ended without a response and without defaults
            error = timeout_error(_waited(self.approval_timeout))
            self._settle(store, rec, lambda: record_timeout(store, build_id, self.state, error), error)
            raise AirflowFailException(error)
        chosen = list(event.get("chosen_options") or [])
        self.validate_chosen_options(chosen)
        responder = event.get("responded_by_user") or None
        comment = str((event.get("params_input") or {}).get(COMMENT) or "")
        approve = chosen[:1] == [ApprovalOperator.APPROVE]
        if responder is None:  # the timeout's default (on_timeout: reject)
            decided_by = "timeout (on_timeout: reject)"
            comment = comment or f"no decision within {_waited(self.approval_timeout)}"
        else:
            # The auth manager's name for the user, kept to what the record takes as an owner.
            name = clean_comment(responder.get("name") or responder.get("id"))[:200] or "unknown user"
            decided_by = f"{name} (airflow)"
        rec = self._settle(
            store,
            rec,
            lambda: decide(
                store, build_id, self.state, approve=approve, decided_by=decided_by, comment=self.redactor(comment)
            ),
            None,
        )
        if not approve:
            error = rec.attempts_at(self.state)[-1].error or f"{REJECTED} by {decided_by}: {comment or NO_REASON}"
            self.log.error("milestone %s of build %s: %s", rec.label(self.state), build_id, error)
            self._log_resume_hint(rec)
            self._announce_failure(store, build_id, context, AirflowFailException(error))
            raise AirflowFailException(error)
        outputs = dict(rec.milestones[self.state].outputs)
        self.log.info("milestone %s of build %s approved by %s", rec.label(self.state), build_id, decided_by)
        context["ti"].xcom_push(key="outputs", value=outputs)
        self._outputs = outputs
        return outputs

    def _settle(self, store: BuildStore, rec: BuildRecord, write: Any, error: str | None) -> BuildRecord:
        """Record the decision (``write``); the store's refusal (decided meanwhile, abandoned) fails
        the task with its reason instead of a traceback."""
        try:
            written: BuildRecord = write()
        except ImageBuildError as exc:  # decided or reset meanwhile, abandoned, the store down
            raise AirflowFailException(f"the decision could not be recorded: {exc}") from exc
        if error is not None:
            self._log_resume_hint(written)
        return written

    # -- outside Airflow -----------------------------------------------------------------------------
    def _wait_in_store(self, store: BuildStore, build_id: str) -> dict[str, Any]:
        """A Concourse or shell step: wait for ``imagebuild build approve|reject`` (or the timeout)."""
        rec = store.get(build_id)
        asked = awaiting_approval(rec, self.state)
        self.log.info(
            "waiting for imagebuild build approve|reject %s %s --reason TEXT (asked at %s)",
            build_id,
            self.state,
            asked,
        )
        deadline = parse_ts(asked).timestamp() + self.approval_timeout if asked and self.approval_timeout else None
        while True:
            rec = store.get(build_id)
            done = rec.milestones.get(self.state)
            if done is not None:
                return dict(done.outputs)
            if awaiting_approval(rec, self.state) is None:
                last = rec.attempts_at(self.state)[-1:]
                raise AirflowFailException(
                    last[0].error if last and last[0].error else not_waiting_why(rec, self.state)
                )
            if deadline is not None and time.time() >= deadline:
                if self.on_timeout == "reject":
                    comment = f"no decision within {_waited(self.approval_timeout)}"
                    rec = decide(store, build_id, self.state, approve=False,
                                 decided_by="timeout (on_timeout: reject)", comment=comment)  # fmt: skip
                    raise AirflowFailException(rec.attempts_at(self.state)[-1].error or comment)
                error = timeout_error(_waited(self.approval_timeout))
                record_timeout(store, build_id, self.state, error)
                raise AirflowFailException(error)
            time.sleep(poll_seconds())


__all__ = ["ApprovalMilestoneOperator", "assigned_users"]
