"""Milestone 0: the build is registered in the store (or found registered) for this run.

The run's trigger form (:mod:`.trigger`) is checked whole first, before anything is written:
``build_id`` names a build to resume (one of another pipeline is refused), ``redo_from`` resets it
to a milestone it passed already (say, its integration tests) the way the UI's Redo does, recorded
with the form's ``reason`` and the triggering user, once per run.

Its own operator, so that the milestone logic of every other task reads as skip / lease / run /
record and nothing else. A run of a pipeline whose spec was edited since the build started (a
milestone added or removed after a failure) resumes the same build: the store takes the new plan
when it changes only milestones not reached yet, records the change as an event, and refuses
(naming each milestone) a change to what is already done.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import Conflict, InvalidInput, NotFound
from airflow_provider_imagebuild.operators.base import BuildOperator
from airflow_provider_imagebuild.operators.links import BuildPageLink
from airflow_provider_imagebuild.operators.trigger import TriggerRequest, conf_of, form_actor, trigger_request
from airflow_provider_imagebuild.store import BuildStore
from airflow_provider_imagebuild.targets.base import resume_problem


class RegisterBuildOperator(BuildOperator):
    ui_color = "#e8f1fb"
    operator_extra_links = (BuildPageLink(),)

    def run_task(self, context: Any) -> dict[str, Any]:
        request = trigger_request(conf_of(context), self.identity.plan)
        build_id = self.resolve_build_id(context)
        store = self.open_store()
        existing = self.named_build(store, request) if request.build_id is not None else None
        context["ti"].xcom_push(key="build_id", value=build_id)
        try:
            if existing is not None and request.redo_from is not None:
                problem = resume_problem(existing, request.redo_from)
                if problem:
                    raise Conflict(problem)
            rec = store.register(build_id, self.identity, owner=self.owner_for(context), plan_changes=True)
            dag_id = context["ti"].dag_id
            if rec.metadata.get("dag_id") != dag_id:  # the UI authorizes actions on a build by its DAG
                rec = store.set_metadata(build_id, {"dag_id": dag_id}, actor=self.owner_for(context))
            if request.redo_from is not None:
                rec = self.redo(store, rec, request, context)
        except Conflict as exc:
            raise AirflowFailException(str(exc)) from exc
        if request.reason and request.redo_from is None:
            self.log.info("the trigger form's reason is recorded with a redo only (no redo_from given): not recorded")
        if rec.delivered and request.redo_from is None:
            self.log.info(
                "build %s was delivered at %s: this run redoes nothing (choose redo_from in the trigger form "
                "to run milestones again)",
                build_id,
                rec.delivered_at,
            )
        self.log.info("build %s registered in %s; next milestone %s", build_id, store.describe(), rec.next_state)
        return {}

    def named_build(self, store: BuildStore, request: TriggerRequest) -> BuildRecord | None:
        """The build the form names, if it exists; refused (nothing written) when it belongs to
        another pipeline, or is missing while the run asks to redo it. A name not used yet starts
        a new build under that name (a Makefile's or a Concourse job's chosen id)."""
        build_id = request.build_id
        assert build_id is not None
        try:
            rec = store.get(build_id)
        except NotFound:
            if request.redo_from is not None:
                raise InvalidInput(
                    "build_id", f"no build {build_id} in {store.describe()}: there is nothing to redo"
                ) from None
            self.log.info(
                "build %s is not in %s yet: a new build starts under that name (to resume a build, give the id "
                "its failed task's log shows)",
                build_id,
                store.describe(),
            )
            return None
        if rec.pipeline != self.identity.pipeline:
            dag = rec.metadata.get("dag_id")
            raise InvalidInput(
                "build_id",
                f"build {build_id} belongs to pipeline {rec.pipeline}"
                + (f" (DAG {dag})" if dag else "")
                + f", not {self.identity.pipeline}: trigger its own DAG, or leave build_id empty for a new build",
            )
        return rec

    def redo(self, store: BuildStore, rec: BuildRecord, request: TriggerRequest, context: Any) -> BuildRecord:
        """Reset to ``redo_from`` as the UI's Redo does ("redo from N: <reason>", by the user who
        triggered the run), once per run: a retried registration finds its own reset event."""
        code = request.redo_from
        assert code is not None
        run_id = context["dag_run"].run_id
        marker = f"redo from {code} (run {run_id})"  # first: a long reason is truncated at its end
        reason = f"{marker}: {request.reason or 'no reason given'}"
        if any(e.kind == "reset" and marker in e.detail for e in rec.events):
            return rec  # this run already did it (its registration task was retried)
        actor = form_actor(context)
        self.log.info("build %s: %s, by %s", rec.build_id, reason, actor)
        return store.reset(rec.build_id, to=code, reason=reason, actor=actor)
