"""A pipeline as plain data: the ordered steps a spec asks for, before any Airflow object exists.

Like astronomer-cosmos's neutral graph: the factory turns a :class:`PipelinePlan` into tasks, and
everything about order, keys, titles and retry settings is testable without a DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow_provider_imagebuild.build.catalog import CATALOG, FIRST_STATE, LAST_STATE, Phase, milestone_for
from airflow_provider_imagebuild.build.identity import DEFAULT_UNSKIPPABLE, BuildIdentity, check_titles
from airflow_provider_imagebuild.spec.pipeline import MilestoneSpec, PipelineSpec, RetryPolicy


@dataclass(frozen=True)
class Step:
    code: int
    key: str
    title: str
    phase: Phase
    action: str  # "register", "noop", "command", ...
    policy: RetryPolicy
    milestone: MilestoneSpec | None

    @property
    def task_id(self) -> str:
        return f"s{self.code:03d}_{self.key}"


@dataclass(frozen=True)
class PipelinePlan:
    spec: PipelineSpec
    steps: tuple[Step, ...]

    @property
    def dag_id(self) -> str:
        return self.spec.effective_dag_id

    @cached_property
    def codes(self) -> list[int]:
        """The plan's codes (computed once: every task of the DAG asks for them)."""
        return [s.code for s in self.steps]

    @cached_property
    def identity(self) -> BuildIdentity:
        """What every build of this pipeline is (one value, shared by all the DAG's tasks)."""
        spec = self.spec
        return BuildIdentity(
            spec.pipeline,
            spec.cloud,
            spec.image_type,
            spec.os,
            tuple(self.codes),
            unskippable=self.unskippable,
            titles=check_titles({s.code: s.title for s in self.steps}, self.codes),
            max_attempts=self.max_attempts,
        )

    @cached_property
    def max_attempts(self) -> dict[int, int]:
        """The milestones' own attempt caps (``max_attempts``); the others get the store's default."""
        return {s.code: s.milestone.max_attempts for s in self.steps if s.milestone and s.milestone.max_attempts}

    @cached_property
    def unskippable(self) -> tuple[int, ...]:
        """Registration, and what the spec marks ``skippable: false``; seal, the launch test (the
        sealed image's proof that it boots), an approval (a skip would step around the person who
        must decide), publish and the catalog's 95 and 100 unless the spec says ``skippable: true``."""
        found = []
        for step in self.steps:
            ms = step.milestone
            explicit = ms.skippable if ms is not None else None
            default = (
                step.action in ("register", "seal", "launch_test", "approval", "publish")
                or step.code in DEFAULT_UNSKIPPABLE
            )
            if explicit is False or (explicit is None and default) or step.action == "register":
                found.append(step.code)
        return tuple(found)

    def to_public(self) -> dict[str, Any]:
        """The plan as JSON-able data (``imagebuild spec plan --json``)."""
        spec = self.spec
        return {
            "pipeline": spec.pipeline,
            "dag_id": self.dag_id,
            "cloud": spec.cloud,
            "image_type": spec.image_type,
            "os": spec.os,
            "schedule": spec.schedule,
            "steps": [
                {
                    "code": step.code,
                    "task_id": step.task_id,
                    "key": step.key,
                    "title": step.title,
                    "phase": step.phase.value,
                    "action": step.action,
                    **step.policy.model_dump(exclude_none=True),
                }
                for step in self.steps
            ],
        }

    def markdown(self) -> str:
        """The milestone table shown as the DAG's documentation."""
        spec = self.spec
        lines = [
            f"### Image pipeline `{spec.pipeline}`",
            "",
            f"{spec.cloud} · {spec.image_type}"
            + (f" · {spec.os}" if spec.os else "")
            + (f"\n\n{spec.description}" if spec.description else ""),
            "",
            "Clearing a failed task resumes the build at that milestone; completed milestones are skipped. "
            'Trigger with `{"build_id": "..."}` to resume an older build.',
            "",
            "| code | task | milestone | action | retries |",
            "|---:|---|---|---|---:|",
        ]
        for step in self.steps:
            lines.append(
                f"| {step.code} | `{step.task_id}` | {step.title} | {step.action} | "
                f"{step.policy.retries if step.policy.retries is not None else ''} |"
            )
        return "\n".join(lines)


def plan_from_spec(spec: PipelineSpec) -> PipelinePlan:
    codes = set(spec.milestones)
    if spec.include_standard:
        codes |= set(CATALOG)
    codes |= {FIRST_STATE, LAST_STATE}
    steps = []
    for code in sorted(codes):
        ms = spec.milestones.get(code)
        entry = milestone_for(code, ms.key if ms else None, ms.title if ms else None)
        policy = ms.merged(spec.defaults) if ms else spec.defaults
        action = "register" if code == FIRST_STATE else (ms.action if ms else "noop")
        steps.append(Step(code, entry.key, entry.title, entry.phase, action, policy, ms))
    return PipelinePlan(spec, tuple(steps))
