"""Airflow's own settings in a spec: ``default_args``, ``access_control`` and a milestone's
``pool``, ``queue``, ``priority_weight`` and ``pool_slots``.

Spelt as Airflow spells them (as dag-factory does), so that a DAG author copies them from Airflow's
documentation, but validated here, at parse time and without importing Airflow (``imagebuild spec
check`` runs in a merge-request job): a typo such as ``retires`` would otherwise be dropped by
Airflow or fail a task hours into a build. What the provider itself decides (a milestone runs after
the one before it succeeds; the outputs go to XCom) is not settable, and says so.
"""

from __future__ import annotations

import difflib
import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError, field_validator

from airflow_provider_imagebuild.build.ids import control_character
from airflow_provider_imagebuild.spec.fields import parse_duration

# Names Airflow accepts in default_args that a spec may not set, and why.
NOT_SETTABLE = {
    "trigger_rule": "the milestones run in plan order, each once the one before it succeeded",
    "start_date": "give the spec's top-level start_date",
    "end_date": "a pipeline has no end date; pause its DAG instead",
    "do_xcom_push": "every milestone pushes its build id and outputs; the extra links read them",
    "params": "the DAG's params are its trigger form (build_id, redo_from, reason)",
    "on_failure_callback": "use the spec's notify: block",
    "on_retry_callback": "use the spec's notify: block",
    "on_success_callback": "use the spec's notify: block",
    "sla": "Airflow 3 has no SLAs; the spec's notify: block reports stuck builds",
}

# Airflow's DAG permissions (airflow.security.permissions.RESOURCE_DETAILS_MAP; a test keeps the two
# equal): per resource, the actions a role may be given on one DAG.
DAG_PERMISSIONS: dict[str, frozenset[str]] = {
    "DAGs": frozenset({"can_read", "can_edit", "can_delete"}),
    "DAG Runs": frozenset({"can_read", "can_create", "can_delete", "menu_access"}),
}

_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]  # spec/fields: one grammar for every duration


def _name(value: str, what: str) -> str:
    if not value.strip() or value != value.strip():
        raise ValueError(f"must be a {what} name, not empty and without surrounding blanks")
    bad = control_character(value)
    if bad:
        raise ValueError(f"must not contain control characters (found {bad})")
    return value


class TaskPlacement(BaseModel):
    """Where a milestone's task runs and how the scheduler ranks it: Airflow's ``pool``,
    ``pool_slots``, ``queue`` and ``priority_weight`` (per milestone, or for all in default_args)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str | None = Field(
        default=None, max_length=256, description="the Airflow pool the milestone's task takes slots of"
    )
    pool_slots: StrictInt | None = Field(default=None, ge=1, description="how many slots of the pool the task takes")
    queue: str | None = Field(
        default=None,
        max_length=256,
        description="the executor queue the task goes to (Celery: the workers listening on it)",
    )
    priority_weight: StrictInt | None = Field(
        default=None,
        ge=-(2**31),
        le=2**31 - 1,
        description="how the scheduler ranks the task against others waiting for a slot",
    )

    @field_validator("pool", "queue")
    @classmethod
    def _names(cls, value: str | None, info: Any) -> str | None:
        return None if value is None else _name(value, str(info.field_name))

    def placement(self) -> dict[str, Any]:
        """The settings given, as operator keyword arguments."""
        return {name: getattr(self, name) for name in TaskPlacement.model_fields if getattr(self, name) is not None}


class DefaultArgs(TaskPlacement):
    """The spec's ``default_args:``: passed to the DAG (or the TaskGroup), so every task carries
    them unless a milestone says otherwise."""

    owner: str | None = Field(default=None, max_length=256, description="the tasks' owner, as Airflow's UI shows it")
    email: str | list[str] | None = Field(
        default=None, description="address (or list) Airflow mails on a task's failure or retry"
    )
    email_on_failure: bool | None = Field(default=None, description="whether Airflow mails email when a task fails")
    email_on_retry: bool | None = Field(default=None, description="whether Airflow mails email when a task is retried")
    retries: StrictInt | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Airflow's retries of every task (the spec's defaults.retries is the same)",
    )
    retry_delay: Duration | None = Field(
        default=None, description="the wait before a retry: seconds, or a duration like 5m"
    )
    # true is Airflow's classic doubling (2.0), a number is Airflow 3's multiplier, 0 or false none
    retry_exponential_backoff: bool | float | None = Field(
        default=None, ge=0, description="true: Airflow's doubling (2.0); a number: the multiplier; 0 or false: none"
    )
    max_retry_delay: Duration | None = Field(
        default=None, description="the longest wait between retries: seconds, or a duration like 1h"
    )
    execution_timeout: Duration | None = Field(
        default=None, description="how long a task may run before Airflow fails it: seconds, or like 1h30m"
    )
    depends_on_past: bool | None = Field(
        default=None, description="Airflow's depends_on_past: a task waits for its previous run's success"
    )
    wait_for_downstream: bool | None = Field(
        default=None, description="Airflow's wait_for_downstream (implies depends_on_past)"
    )
    weight_rule: Literal["downstream", "upstream", "absolute"] | None = Field(
        default=None, description="how priority_weight adds up along the DAG: downstream, upstream or absolute"
    )
    max_active_tis_per_dag: StrictInt | None = Field(
        default=None, ge=1, description="how many runs of the same task may run at once"
    )
    run_as_user: str | None = Field(default=None, description="the Unix user the worker runs the task as (sudo)")

    @field_validator("owner", "run_as_user")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        return None if value is None else _name(value, "user")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | list[str] | None) -> str | list[str] | None:
        for address in [value] if isinstance(value, str) else value or []:
            if not _EMAIL_RE.fullmatch(address):
                raise ValueError(f"{address[:60]!r} is not an e-mail address")
        return value

    @field_validator("retry_delay", "max_retry_delay", "execution_timeout")
    @classmethod
    def _positive(cls, value: timedelta | None, info: Any) -> timedelta | None:
        if value is not None and (value < timedelta(0) or (info.field_name != "retry_delay" and not value)):
            raise ValueError(
                "must be a positive duration" if info.field_name != "retry_delay" else "must not be negative"
            )
        return value

    def airflow_default_args(self) -> dict[str, Any]:
        """As Airflow's ``default_args``: only what the spec gives, durations as timedelta."""
        given = {name: getattr(self, name) for name in self.model_fields_set if getattr(self, name) is not None}
        backoff = given.get("retry_exponential_backoff")
        if isinstance(backoff, bool):
            given["retry_exponential_backoff"] = 2.0 if backoff else 0.0
        return given


class SettingErrors(ValueError):
    """Every problem of ``default_args:`` or ``access_control:`` (``key.path: reason`` each), so that
    spec check reports them all; its message is the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(problems[0])


def checked_default_args(raw: Any) -> DefaultArgs:
    """The ``default_args:`` mapping validated; an unknown name is refused with the nearest one
    (``retires`` -> ``retries``), a name Airflow knows but the provider decides with why."""
    if not isinstance(raw, dict):
        raise ValueError("default_args: must be a mapping of Airflow task settings (owner, retries, pool, ...)")
    problems: list[str] = []
    for name in raw:
        if name in NOT_SETTABLE:
            problems.append(f"default_args.{name}: cannot be set in a spec: {NOT_SETTABLE[name]}")
        elif name not in DefaultArgs.model_fields:
            near = difflib.get_close_matches(str(name), [*DefaultArgs.model_fields, *NOT_SETTABLE], n=1, cutoff=0.6)
            hint = (
                f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(sorted(DefaultArgs.model_fields))})"
            )
            problems.append(f"default_args.{name}: unknown Airflow setting{hint}")
    known = {name: value for name, value in raw.items() if name in DefaultArgs.model_fields}
    try:
        checked = DefaultArgs.model_validate(known)
    except ValidationError as exc:
        for error in exc.errors():
            path = ".".join(["default_args", *(str(p) for p in error["loc"])])
            problems.append(f"{path}: {error['msg'].removeprefix('Value error, ')}")
    if problems:
        raise SettingErrors(problems)
    return checked


AccessControl = dict[str, dict[str, frozenset[str]]]


def checked_access_control(raw: Any) -> AccessControl:
    """``access_control:``: role -> the actions on this DAG (``[can_read, can_edit]``), or role ->
    resource -> actions (``{DAGs: [can_read], DAG Runs: [can_create]}``), as Airflow takes it; a
    resource or action Airflow does not know is refused with the nearest one. Every problem is
    reported, each at its key path (``access_control.Op.DAGs: ...``), as spec check reports the
    rest of a spec: a team fixing its roles sees all of them at once."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError("access_control: must map role names to permissions, like {Op: [can_read, can_edit]}")
    checked: AccessControl = {}
    problems: list[str] = []
    bad_roles = [repr(role) for role in raw if not _role_name(role)]
    if bad_roles:  # one problem: they share the key path, and a role's own text may not be printable
        problems.append(
            "access_control: role names must be non-empty strings without surrounding blanks or control "
            f"characters, got {', '.join(bad_roles)}"
        )
    for role, perms in raw.items():
        if not _role_name(role):
            continue
        where = f"access_control.{role}"
        resources = {"DAGs": perms} if isinstance(perms, list) else perms
        if not isinstance(resources, dict) or not resources:
            problems.append(f"{where}: must be a list of actions or a mapping of resource to actions")
            continue
        checked[role] = {}
        for resource, actions in resources.items():
            found = _resource_problems(str(resource), actions)
            if not _one_line(str(resource)):  # its key path would not print on one line
                problems += [f"{where}: resource {str(resource)!r}: {reason}" for reason in found]
            else:
                problems += [f"{where}.{resource}: {reason}" for reason in found]
            if not found:
                checked[role][resource] = frozenset(actions)
    if problems:
        raise SettingErrors(problems)
    return checked


def _role_name(role: object) -> bool:
    """Whether ``role`` can be an Airflow role name here (and be printed in a key path on one line)."""
    try:
        return isinstance(role, str) and _name(role, "role") == role and _one_line(role)
    except ValueError:
        return False


def _one_line(text: str) -> bool:
    """Whether ``text`` prints on one line as it is (no control character, newline or tab)."""
    return not control_character(text) and "\n" not in text and "\t" not in text


def _resource_problems(resource: str, actions: Any) -> list[str]:
    """What is wrong with one resource's actions of a role (nothing: they are Airflow's): one
    problem, naming every unknown action (spec check shows one problem per key path)."""
    allowed = DAG_PERMISSIONS.get(resource)
    if allowed is None:
        near = difflib.get_close_matches(resource, list(DAG_PERMISSIONS), n=1, cutoff=0.5)
        return [f"not a DAG resource (DAGs or DAG Runs){f'; did you mean {near[0]!r}?' if near else ''}"]
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        return [f"must be a list of actions ({', '.join(sorted(allowed))})"]
    unknown = []
    for action in actions:
        if action not in allowed:
            near = difflib.get_close_matches(action, sorted(allowed), n=1, cutoff=0.5)
            unknown.append(f"{action!r} (did you mean {near[0]!r}?)" if near else repr(action))
    if not unknown:
        return []
    verb = "is not a" if len(unknown) == 1 else "are not"
    noun = f"{resource} permission" + ("" if len(unknown) == 1 else "s")
    return [f"{', '.join(unknown)} {verb} {noun} ({', '.join(sorted(allowed))})"]


__all__ = [
    "DAG_PERMISSIONS",
    "NOT_SETTABLE",
    "AccessControl",
    "DefaultArgs",
    "TaskPlacement",
    "checked_access_control",
    "checked_default_args",
]
