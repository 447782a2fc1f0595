"""Spec -> plan -> Airflow: one DAG per pipeline, one task per milestone.

Two entry points that read the same way: :func:`build_dag` (the whole pipeline as a DAG) and
:func:`build_task_group` (the pipeline inside a DAG somebody else owns). :func:`load_pipelines`
fills a DAG file's ``globals()`` from a folder of specs; a broken spec becomes an import error
naming the spec file and key, and the other pipelines still load.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup

from airflow_provider_imagebuild.build.catalog import Phase
from airflow_provider_imagebuild.fingerprints import FingerprintSource
from airflow_provider_imagebuild.plan import PipelinePlan, Step, plan_from_spec
from airflow_provider_imagebuild.spec.pipeline import (
    PIPELINES_ENV,
    MilestoneSpec,
    PipelineSpec,
    SpecError,
    load_specs,
    pipelines_folder,
    spec_files,
)

log = logging.getLogger(__name__)

POLICY_MILESTONE = 90  # final validation checks the spec's policy: (spec/policy.py)

__all__ = ["PIPELINES_ENV", "build_dag", "build_task_group", "load_pipelines", "trigger_params"]


def _task_kwargs(step: Step) -> dict[str, Any]:
    policy = step.policy
    kwargs: dict[str, Any] = {}
    if policy.retries is not None:
        kwargs["retries"] = policy.retries
    if policy.retry_delay is not None:
        kwargs["retry_delay"] = timedelta(seconds=policy.retry_delay)
    if policy.retry_exponential_backoff:
        kwargs["retry_exponential_backoff"] = 2.0
    if policy.max_retry_delay is not None:
        kwargs["max_retry_delay"] = timedelta(seconds=policy.max_retry_delay)
    if policy.execution_timeout is not None:
        kwargs["execution_timeout"] = timedelta(seconds=policy.execution_timeout)
    return kwargs


def _make_task(plan: PipelinePlan, step: Step, spec_dir: Path | None) -> Any:
    from airflow_provider_imagebuild.operators import CommandMilestoneOperator, MilestoneOperator
    from airflow_provider_imagebuild.operators.register import RegisterBuildOperator

    spec = plan.spec
    base = spec_dir or Path.cwd()
    common: dict[str, Any] = dict(
        task_id=step.task_id,
        task_display_name=f"{step.code} · {step.title}",
        identity=plan.identity,
        state=step.code,
        store=spec.store,
        store_conn_id=spec.store_conn_id,
        lease_seconds=step.policy.lease_seconds,
        notify=spec.notify,
        made_from=FingerprintSource(spec, str(base)),  # the milestone fingerprints itself when it starts
        doc_md=f"Milestone **{step.code}**: {step.title} ({step.action})",
        **_task_kwargs(step),
        **(step.milestone.placement() if step.milestone is not None else {}),
    )
    ms = step.milestone
    if step.action == "register":
        return RegisterBuildOperator(**common)
    if ms is None or step.action == "noop":
        return MilestoneOperator(**common)
    if step.action == "command" and ms.command is not None:
        cwd = str(base / (ms.cwd or "."))
        return CommandMilestoneOperator(command=ms.command, env=ms.env, cwd=cwd, state_key=step.key, **common)
    if step.action == "approval":
        from airflow_provider_imagebuild.operators.approval import ApprovalMilestoneOperator

        # A person's wait is the spec's timeout, not an execution timeout that would kill it.
        common.pop("execution_timeout", None)
        return ApprovalMilestoneOperator(approvers=ms.approvers, timeout=ms.timeout, on_timeout=ms.on_timeout, **common)
    return _make_target_task(plan, step, ms, base, common)


def _make_target_task(plan: PipelinePlan, step: Step, ms: MilestoneSpec, base: Path, common: dict[str, Any]) -> Any:
    """Packer, Ansible, seal, launch test and publish milestones: they share the target and the build host."""
    from airflow_provider_imagebuild.operators.target import AnsibleStep

    spec = plan.spec
    common.update(
        target=spec.target,
        checkpoints=spec.checkpoints,
        launch_test=next((s.code for s in plan.steps if s.action == "launch_test"), None),
        park=getattr(getattr(spec, "on_failure", None), "park", None),  # None: the target's default
        ansible_steps=[
            AnsibleStep(s.code, s.key, str(base / s.milestone.playbook), s.milestone.extravars)
            for s in plan.steps
            if s.action == "ansible" and s.milestone is not None and s.milestone.playbook
        ],
    )
    if step.action == "packer" and ms.template:
        from airflow_provider_imagebuild.operators.packer import PackerMilestoneOperator

        return PackerMilestoneOperator(
            template=str(base / ms.template),
            var_files=[str(base / f) for f in ms.var_files],
            variables=ms.vars,
            only=ms.only,
            on_error=ms.on_error,
            manifest=ms.manifest,
            **common,
        )
    if step.action == "bootstrap":
        from airflow_provider_imagebuild.operators.bootstrap import BootstrapMilestoneOperator

        return BootstrapMilestoneOperator(**common)
    if step.action == "ansible" and ms.playbook:
        from airflow_provider_imagebuild.operators.ansible import AnsibleMilestoneOperator

        gate = spec.policy if step.code == POLICY_MILESTONE else None  # the policy gate (spec/policy)
        return AnsibleMilestoneOperator(
            playbook=str(base / ms.playbook), extravars=ms.extravars, policy=gate, policy_base=str(base), **common
        )
    if step.action == "launch_test":
        from airflow_provider_imagebuild.operators.launch import LaunchTestMilestoneOperator

        return LaunchTestMilestoneOperator(extravars=ms.extravars, **common)
    from airflow_provider_imagebuild.operators.image import PublishMilestoneOperator, SealMilestoneOperator, image_alias

    if step.action == "seal":
        return SealMilestoneOperator(
            playbook=str(base / ms.playbook) if ms.playbook else None,
            extravars=ms.extravars,
            keep_checkpoints=spec.target.keep_checkpoints,
            policy=spec.policy,
            policy_base=str(base),
            **common,
        )
    return PublishMilestoneOperator(
        outlets=[image_alias(spec.cloud, spec.pipeline)], destinations=spec.publish, **common
    )


def _add_tasks(plan: PipelinePlan, spec_dir: Path | None, group: TaskGroup | None = None) -> list[Any]:
    """Create the tasks, grouped by phase, chained in plan order."""
    groups: dict[Phase, TaskGroup] = {}
    tasks = []
    for step in plan.steps:
        if step.phase not in groups:
            # prefix_group_id=False keeps task ids as s045_storage, whatever the grouping.
            groups[step.phase] = TaskGroup(
                group_id=step.phase.value,
                parent_group=group,
                prefix_group_id=False,
                tooltip=f"{step.phase.value} milestones",
            )
        with groups[step.phase]:
            tasks.append(_make_task(plan, step, spec_dir))
    for upstream, downstream in pairwise(tasks):
        upstream >> downstream
    return tasks


def trigger_params(plan: PipelinePlan) -> dict[str, Param]:
    """The "Trigger DAG" form: resume a build by its id, redo it from a milestone, say why.

    Every param is optional (a schedule needs valid defaults): an empty form starts a new build.
    ``redo_from`` offers only this plan's milestones, each shown with its title; what the form
    cannot check (does the build exist, is it this pipeline's) the registration task checks
    before anything is written (:mod:`.operators.trigger`)."""
    codes = [step.code for step in plan.steps[1:]]
    return {
        "build_id": Param(
            None,
            type=["null", "string"],
            title="Build id",
            description="Leave empty for a new build. Give a failed build's id (its failed task's log shows it) "
            "to resume that build: what it achieved already is skipped.",
            maxLength=128,
        ),
        "redo_from": Param(
            None,
            type=["null", "integer"],
            title="Redo from milestone",
            description="Only with a build id: reset that build to this milestone first, so that it and every "
            "later milestone run again (as the build page's Redo). Empty: resume where the build stands.",
            enum=[None, *codes],
            values_display={"null": "(resume where the build stands)"}
            | {str(step.code): f"{step.code} · {step.title}" for step in plan.steps[1:]},
        ),
        "reason": Param(
            None,
            type=["null", "string"],
            title="Reason",
            description="Why you redo it: recorded in the build's history with your name.",
            maxLength=2000,
        ),
    }


def _dag_docs(plan: PipelinePlan) -> str:
    example = f"{plan.spec.pipeline}.manual__2026-11-27T05-37-02-00-00.3c1f0e9a2b"
    return (
        plan.markdown()
        + "\n\n#### Resume or redo from the trigger form\n\n"
        + "**Trigger DAG** opens a form. Leave it empty for a new build. To resume a failed build in a new run, "
        + f"give its id (the failed task's last log line names it, like `{example}`): `build_id=<id>`, "
        + 'or the conf `{"build_id": "<id>"}`. Completed milestones are skipped. To run milestones that passed '
        + "again, also choose **Redo from milestone** and give a **Reason**: the build is reset to it first and "
        + "the reset is recorded with your name. Clearing the failed task of the run itself resumes the same way."
    )


def _shared_store(spec: PipelineSpec) -> None:
    """Refuse, while parsing, a pipeline that would record its builds in each worker's own SQLite
    file while a distributed executor runs its tasks on several machines (hooks/store_choice.py)."""
    from airflow_provider_imagebuild.hooks.store_choice import worker_local_refusal

    refusal = worker_local_refusal(spec.store, spec.store_conn_id)
    if refusal:
        raise SpecError(f"pipeline {spec.pipeline}", "store", refusal)


def _airflow_settings(spec: PipelineSpec) -> dict[str, Any]:
    """The spec's ``default_args`` and ``access_control`` as DAG arguments. A milestone's own
    settings (retries, pool, queue...) are passed to its operator, so they win over default_args."""
    settings: dict[str, Any] = {}
    if spec.default_args is not None:
        settings["default_args"] = spec.default_args.airflow_default_args()
    if spec.access_control is not None:
        settings["access_control"] = {
            role: {resource: set(actions) for resource, actions in perms.items()}
            for role, perms in spec.access_control.items()
        }
    return settings


def build_dag(spec: PipelineSpec, spec_dir: Path | None = None, **dag_kwargs: Any) -> DAG:
    """The whole pipeline as a DAG: one task per milestone, grouped by phase, with a trigger form."""
    plan = plan_from_spec(spec)
    _shared_store(spec)
    params: dict[str, Any] = dict(
        dag_id=plan.dag_id,
        schedule=spec.schedule,
        start_date=spec.start_date,
        catchup=spec.catchup,
        max_active_runs=spec.max_active_runs,
        tags=sorted({"imagebuild", spec.cloud, spec.image_type, *spec.tags}),
        doc_md=_dag_docs(plan),
        description=spec.description or f"{spec.cloud} {spec.image_type} image pipeline {spec.pipeline}",
        params=trigger_params(plan),
        **_airflow_settings(spec),
    )
    params.update(dag_kwargs)
    with DAG(**params) as dag:
        _add_tasks(plan, spec_dir)
    return dag


def build_task_group(spec: PipelineSpec, group_id: str | None = None, spec_dir: Path | None = None) -> TaskGroup:
    """The pipeline as a TaskGroup inside the DAG being defined (use within ``with DAG(...)``)."""
    plan = plan_from_spec(spec)
    _shared_store(spec)
    # the spec's default_args, over the enclosing DAG's, for the pipeline's tasks only
    defaults: dict[str, Any] = {"default_args": spec.default_args.airflow_default_args()} if spec.default_args else {}
    with TaskGroup(group_id=group_id or spec.pipeline.replace("-", "_"), tooltip=spec.pipeline, **defaults) as group:
        _add_tasks(plan, spec_dir, group)
    return group


class BrokenPipelines(DAG):
    """Carries spec errors to Airflow: bagging it fails, so the DAG file shows an import error
    naming each broken spec file and key, while the good pipelines of the folder still load."""

    def __init__(self, errors: list[str], **kwargs: Any) -> None:
        super().__init__(dag_id="imagebuild_broken_specs", schedule=None, **kwargs)
        self.spec_errors = errors

    def validate(self) -> None:
        raise SpecError("; ".join(self.spec_errors), "", "invalid pipeline spec(s)")


WATCHDOG_DAG_ID = "imagebuild_watchdog"


def build_watchdog_dag(specs: list[PipelineSpec]) -> DAG:
    """The deployment's watchdog over the pipelines that have a ``notify`` block (stuck builds), an
    ``on_failure.abandon_after`` (failed builds nobody resumed, abandoned) or an ``on_failure.gc``
    (the leak collector on a schedule), every 10 minutes; it reads the pipelines' stores, and
    reaches a target only to delete what an abandon deletes, or to look for and delete leaks."""
    from airflow_provider_imagebuild.operators.watchdog import WatchdogOperator, Watched

    watched = [
        Watched(s.pipeline, s.store, s.store_conn_id, s.notify, s)
        for s in specs
        if s.notify is not None
        or s.on_failure.abandon_after is not None
        or s.on_failure.gc is not None
        or (s.retention is not None and s.retention.every is not None)
    ]
    with DAG(
        dag_id=WATCHDOG_DAG_ID,
        schedule="*/10 * * * *",
        start_date=datetime(2026, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["imagebuild"],
        description="Finds image builds nobody works on, or stuck in a milestone, and tells the pipelines' notify",
    ) as dag:
        WatchdogOperator(task_id="find_stuck_builds", watched=watched, retries=0)
    return dag


def load_pipelines(
    folder: str | Path | None = None, namespace: MutableMapping[str, Any] | None = None, strict: bool = False
) -> dict[str, DAG]:
    """Build one DAG per ``*.yaml``/``*.yml`` spec under ``folder`` and register them in ``namespace``.

    ``folder`` defaults to ``$IMAGEBUILD_PIPELINES_DIR`` or ``dags/pipelines``. With ``strict``,
    the first broken spec raises.
    """
    specs, spec_errors = load_specs(spec_files(pipelines_folder(folder)))
    if strict and spec_errors:
        raise spec_errors[0]
    dags: dict[str, DAG] = {}
    for path, spec in specs:
        try:
            dags[spec.effective_dag_id] = build_dag(spec, path.parent)
        except SpecError as exc:  # refused as a whole (no shared store): named by its file, the others load
            refused = SpecError(str(path), exc.path, exc.reason)
            if strict:
                raise refused from None
            spec_errors.append(refused)
    specs = [(path, spec) for path, spec in specs if spec.effective_dag_id in dags]
    watched = [
        spec
        for _, spec in specs
        if spec.notify is not None
        or spec.on_failure.abandon_after is not None
        or spec.on_failure.gc is not None
        or (spec.retention is not None and spec.retention.every is not None)
    ]
    if watched:
        dags[WATCHDOG_DAG_ID] = build_watchdog_dag(watched)
    errors = [str(exc) for exc in spec_errors]
    for error in errors:
        log.error("%s", error)
    if namespace is not None:
        namespace.update(dags)
        if errors:
            namespace["imagebuild_broken_specs"] = BrokenPipelines(errors)
    return dags
