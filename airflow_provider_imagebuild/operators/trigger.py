"""What a run's trigger form asks of its build: ``build_id``, ``redo_from`` and ``reason``.

The generated DAG's params (:func:`..dag_factory.trigger_params`) make Airflow's "Trigger DAG"
form; what the form, a hand-typed conf, the API's redo or a DAG that embeds the pipeline as a
TaskGroup (no params of ours there) put in the run's conf is read here, the same way, by every
task. The registration task checks it all before it writes anything, so that a bad value fails
the run at once with one line naming the param, not a milestone an hour later.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_imagebuild.build.catalog import check_code, parse_code
from airflow_provider_imagebuild.build.ids import check_build_id
from airflow_provider_imagebuild.build.values import MAX_REASON, check_text
from airflow_provider_imagebuild.errors import InvalidInput

TRIGGER_PARAMS = ("build_id", "redo_from", "reason")
# Who a redo is recorded as when the run does not say who triggered it (a scheduled run, an old
# Airflow): the form, not a task's try.
FORM_ACTOR = "trigger form"


@dataclass(frozen=True)
class TriggerRequest:
    """A run's ask: resume ``build_id`` (None: a new build, its id derived from the run), first
    resetting it to ``redo_from`` when given, recorded with ``reason``."""

    build_id: str | None
    redo_from: int | None
    reason: str


def conf_of(context: Any) -> Mapping[str, Any]:
    conf = getattr(context["dag_run"], "conf", None) or {}
    return conf if isinstance(conf, Mapping) else {}


def given_build_id(conf: Mapping[str, Any]) -> str | None:
    """The build id the run names, or None. The form sends an empty field as ``null`` or ``""``:
    both mean a new build; a pasted id loses surrounding blanks."""
    value = conf.get("build_id")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return check_build_id(value.strip() if isinstance(value, str) else value, "build_id")


def _redo_from(value: object, plan: Sequence[int]) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    code = parse_code(value, "redo_from") if isinstance(value, str) else check_code(value, "redo_from")
    if code not in plan[1:]:
        raise InvalidInput("redo_from", f"milestone {code} is not one of this pipeline's {list(plan[1:])}")
    return code


def _near_misses(conf: Mapping[str, Any]) -> None:
    """A misspelt param (``redo_form``, ``build-id``) would be ignored, and the run would quietly
    resume or start a build nobody asked for. Keys far from ours are left alone: a DAG that
    embeds the pipeline has params of its own."""
    for key in conf:
        if not isinstance(key, str) or key in TRIGGER_PARAMS:
            continue
        near = difflib.get_close_matches(key.lower().replace("-", "_"), TRIGGER_PARAMS, n=1, cutoff=0.75)
        if near:
            raise InvalidInput(key, f"is not a param of this DAG; did you mean {near[0]!r}?")


def trigger_request(conf: Mapping[str, Any], plan: Sequence[int]) -> TriggerRequest:
    """The run's conf checked whole (:class:`InvalidInput` naming the param)."""
    _near_misses(conf)
    build_id = given_build_id(conf)
    redo_from = _redo_from(conf.get("redo_from"), plan)
    raw_reason = conf.get("reason")
    reason = "" if raw_reason is None else check_text(raw_reason, "reason", MAX_REASON, required=False).strip()
    if redo_from is not None and build_id is None:
        raise InvalidInput("redo_from", "needs build_id: the build to redo (a new build has nothing to redo)")
    return TriggerRequest(build_id, redo_from, reason)


def form_actor(context: Any) -> str:
    """Who asked, for the build's history: the run's triggering user, else the form itself."""
    user = getattr(context["dag_run"], "triggering_user_name", None)
    return user.strip() if isinstance(user, str) and user.strip() else FORM_ACTOR


def resume_advice(build_id: str) -> str:
    """How to resume a build from the trigger form (the failed task's log and the DAG's docs)."""
    return f'Trigger DAG w/ config: build_id={build_id} (or the conf {{"build_id": "{build_id}"}})'
