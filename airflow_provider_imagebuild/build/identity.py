"""What a build is: its pipeline, cloud, image type, OS, plan and initial metadata.

One value, made once from a spec by the DAG factory (or from the CLI's options) and handed to
the operators, the store and the record: registering a build id again must repeat it, and
resuming a build checks it, so it is spelled out in one place only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_imagebuild.build.catalog import MAX_TITLE, STANDARD_PLAN, check_code, own_titles, validate_plan
from airflow_provider_imagebuild.build.ids import check_cloud, check_name
from airflow_provider_imagebuild.build.values import check_metadata, check_text
from airflow_provider_imagebuild.errors import InvalidInput

# Milestones nobody may skip unless a spec says otherwise: registration, seal and publish (a
# build "delivered" without an image is not delivered).
DEFAULT_UNSKIPPABLE = (0, 95, 100)


@dataclass(frozen=True)
class BuildIdentity:
    pipeline: str
    cloud: str
    image_type: str
    os: str = ""
    plan: tuple[int, ...] = STANDARD_PLAN
    metadata: Mapping[str, str] = field(default_factory=dict)
    # The plan's milestones that cannot be skipped (``None``: the default ones in the plan).
    unskippable: tuple[int, ...] | None = None
    # The pipeline's own milestone titles (custom codes, renamed standard ones), kept in the record
    # so that the CLI, errors and the UI read "42 · License check" without the spec.
    titles: Mapping[int, str] = field(default_factory=dict)
    # Attempts per milestone across runs before the store refuses another (the spec's
    # ``max_attempts``; a milestone not named gets the store's default). Kept in the record at
    # registration; not part of what makes two builds different (a spec may change it).
    max_attempts: Mapping[int, int] = field(default_factory=dict)

    @property
    def not_skippable(self) -> tuple[int, ...]:
        codes = DEFAULT_UNSKIPPABLE if self.unskippable is None else self.unskippable
        return tuple(c for c in self.plan if c in codes or c == self.plan[0])

    @classmethod
    def checked(
        cls,
        pipeline: object,
        cloud: object,
        image_type: object,
        os: object = "",
        plan: Iterable[object] | None = None,
        metadata: Mapping[str, object] | None = None,
        titles: Mapping[Any, object] | None = None,
    ) -> BuildIdentity:
        """An identity from untrusted input, each field validated (the field named on error)."""
        if os and not isinstance(os, str):
            raise InvalidInput("os", "must be a string")
        if os:
            check_name(os, "os")
        codes: Any = STANDARD_PLAN if plan is None else plan
        if isinstance(codes, (str, bytes)) or not hasattr(codes, "__iter__"):
            raise InvalidInput("plan", "must be a list of milestone codes")
        checked_plan = validate_plan(codes)
        return cls(
            pipeline=check_name(pipeline, "pipeline"),
            cloud=check_cloud(cloud),
            image_type=check_name(image_type, "image_type"),
            os=str(os or ""),
            plan=checked_plan,
            metadata=check_metadata(metadata),
            titles=check_titles(titles, checked_plan),
        )

    def differences(self, other: BuildIdentity) -> list[str]:
        """The fields in which ``other`` describes another build (plan and metadata aside)."""
        names = ("pipeline", "cloud", "image_type", "os")
        return [name for name in names if getattr(self, name) != getattr(other, name)]


def check_titles(titles: Mapping[Any, object] | None, plan: Iterable[int], field: str = "titles") -> dict[int, str]:
    """Milestone titles for codes of ``plan``: text without control characters, at most
    :data:`MAX_TITLE` characters (longer ones are cut: a title is a label, never a reason to
    refuse a build). Only those the catalog does not already give are kept."""
    codes = set(plan)
    checked: dict[int, str] = {}
    for key, title in (titles or {}).items():
        code = check_code(int(key) if isinstance(key, str) and key.isdigit() else key, f"{field}[{key!r}]")
        if code not in codes:
            raise InvalidInput(f"{field}[{code}]", f"milestone {code} is not in the plan {sorted(codes)}")
        checked[code] = check_text(title, f"{field}[{code}]", MAX_TITLE).strip()
    return own_titles(checked)
