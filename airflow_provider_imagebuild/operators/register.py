"""Milestone 0: the build is registered in the store (or found registered) for this run.

Its own operator, so that the milestone logic of every other task reads as skip / lease / run /
record and nothing else. A run of a pipeline whose spec was edited since the build started (a
milestone added or removed after a failure) resumes the same build: the store takes the new plan
when it changes only milestones not reached yet, records the change as an event, and refuses
(naming each milestone) a change to what is already done.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_imagebuild.errors import Conflict
from airflow_provider_imagebuild.operators.base import BuildOperator


class RegisterBuildOperator(BuildOperator):
    ui_color = "#e8f1fb"

    def run_task(self, context: Any) -> dict[str, Any]:
        build_id = self.resolve_build_id(context)
        store = self.open_store()
        context["ti"].xcom_push(key="build_id", value=build_id)
        try:
            rec = store.register(build_id, self.identity, owner=self.owner_for(context), plan_changes=True)
        except Conflict as exc:
            raise AirflowFailException(str(exc)) from exc
        self.log.info("build %s registered in %s; next milestone %s", build_id, store.describe(), rec.next_state)
        return {}
