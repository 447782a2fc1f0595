"""Milestone 0: the build is registered in the store (or found registered) for this run.

A run triggered with ``{"build_id": ..., "redo_from": N}`` redoes a build from milestone N even
if it passed N already (say, its integration tests): the build is reset to N first, recorded with
the reason "redo from N by <user> (run <run id>)", once per run.

Its own operator, so that the milestone logic of every other task reads as skip / lease / run /
record and nothing else. A run of a pipeline whose spec was edited since the build started (a
milestone added or removed after a failure) resumes the same build: the store takes the new plan
when it changes only milestones not reached yet, records the change as an event, and refuses
(naming each milestone) a change to what is already done.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_imagebuild.build.catalog import check_code, parse_code
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import Conflict, InvalidInput
from airflow_provider_imagebuild.operators.base import BuildOperator
from airflow_provider_imagebuild.operators.links import BuildPageLink
from airflow_provider_imagebuild.store import BuildStore
from airflow_provider_imagebuild.targets.base import resume_problem


class RegisterBuildOperator(BuildOperator):
    ui_color = "#e8f1fb"
    operator_extra_links = (BuildPageLink(),)

    def run_task(self, context: Any) -> dict[str, Any]:
        build_id = self.resolve_build_id(context)
        store = self.open_store()
        context["ti"].xcom_push(key="build_id", value=build_id)
        try:
            rec = store.register(build_id, self.identity, owner=self.owner_for(context), plan_changes=True)
            dag_id = context["ti"].dag_id
            if rec.metadata.get("dag_id") != dag_id:  # the UI authorizes actions on a build by its DAG
                rec = store.set_metadata(build_id, {"dag_id": dag_id}, actor=self.owner_for(context))
            redo = self.redo_from(context)
            if redo is not None:
                problem = resume_problem(rec, redo)
                if problem:
                    raise Conflict(problem)
                rec = self.redo(store, rec, redo, context)
        except Conflict as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("build %s registered in %s; next milestone %s", build_id, store.describe(), rec.next_state)
        return {}

    def redo_from(self, context: Any) -> int | None:
        conf = getattr(context["dag_run"], "conf", None) or {}
        value = conf.get("redo_from")
        if value is None:
            return None
        code = parse_code(value, "dag_run.conf.redo_from") if isinstance(value, str) else value
        code = check_code(code, "dag_run.conf.redo_from")
        if code not in self.identity.plan[1:]:
            raise InvalidInput(
                "dag_run.conf.redo_from", f"milestone {code} is not in the plan {list(self.identity.plan)}"
            )
        return code

    def redo(self, store: BuildStore, rec: BuildRecord, code: int, context: Any) -> BuildRecord:
        dag_run = context["dag_run"]
        user = getattr(dag_run, "triggering_user_name", None) or "unknown user"
        reason = f"redo from {code} by {user} (run {dag_run.run_id})"
        if any(e.kind == "reset" and reason in e.detail for e in rec.events):
            return rec  # this run already did it (its registration task was retried)
        self.log.info("build %s: %s", rec.build_id, reason)
        return store.reset(rec.build_id, to=code, reason=reason, actor=self.owner_for(context))
