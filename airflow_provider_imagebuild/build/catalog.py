"""The milestone catalog and plan validation.

The milestone code is a build's *state*; the catalog gives each standard code a key, a title,
a phase and the tool that usually reaches it. Plans may drop standard codes and add custom
codes in the gaps (say 42) without renumbering anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from airflow_provider_imagebuild.errors import InvalidInput

FIRST_STATE = 0
LAST_STATE = 100


class Phase(str, Enum):
    """Groups of milestones; the DAG factory renders one TaskGroup per phase."""

    SETUP = "setup"
    IMAGE = "image"
    CONFIGURE = "configure"
    APPLICATION = "application"
    VERIFY = "verify"
    RELEASE = "release"


@dataclass(frozen=True)
class Milestone:
    """One entry of the catalog: what reaching ``code`` means."""

    code: int
    key: str
    title: str
    phase: Phase
    tool: str


_CATALOG: tuple[Milestone, ...] = (
    Milestone(0, "initialize", "Build registered", Phase.SETUP, "orchestrator"),
    Milestone(5, "kickstart", "OS installation started", Phase.IMAGE, "packer"),
    Milestone(10, "green_image", "Minimal bootable image", Phase.IMAGE, "packer"),
    Milestone(15, "base_config", "Base configuration", Phase.CONFIGURE, "ansible"),
    Milestone(20, "cloud_setup", "Cloud CLI and agents", Phase.CONFIGURE, "ansible"),
    Milestone(25, "security_baseline", "Security baseline", Phase.CONFIGURE, "ansible"),
    Milestone(30, "monitoring", "Monitoring and logging", Phase.CONFIGURE, "ansible"),
    Milestone(35, "runtimes", "Language runtimes", Phase.CONFIGURE, "ansible"),
    Milestone(40, "network", "Network configuration", Phase.CONFIGURE, "ansible"),
    Milestone(45, "storage", "Storage layout", Phase.CONFIGURE, "ansible"),
    Milestone(50, "users", "Users and access", Phase.CONFIGURE, "ansible"),
    Milestone(55, "services", "Services installed", Phase.APPLICATION, "ansible"),
    Milestone(60, "app_deploy", "Applications deployed", Phase.APPLICATION, "ansible"),
    Milestone(65, "config_mgmt", "Environment configuration", Phase.APPLICATION, "ansible"),
    Milestone(70, "integration_tests", "Integration tests", Phase.VERIFY, "ansible"),
    Milestone(75, "performance", "Performance tuning", Phase.VERIFY, "ansible"),
    Milestone(80, "backup", "Backup configuration", Phase.VERIFY, "ansible"),
    Milestone(85, "metadata", "Image metadata", Phase.VERIFY, "ansible"),
    Milestone(90, "final_validation", "Final validation", Phase.VERIFY, "scripts"),
    Milestone(95, "seal", "Image sealed and captured", Phase.RELEASE, "packer"),
    Milestone(100, "delivered", "Image delivered", Phase.RELEASE, "cloud"),
)

CATALOG: dict[int, Milestone] = {m.code: m for m in _CATALOG}
STANDARD_PLAN: tuple[int, ...] = tuple(CATALOG)


def phase_of(code: int) -> Phase:
    """The phase a (possibly custom) code falls in: that of the nearest standard code below it."""
    below = max(c for c in STANDARD_PLAN if c <= code)
    return CATALOG[below].phase


def milestone_for(code: int, key: str | None = None, title: str | None = None) -> Milestone:
    """The catalog entry for ``code``, or a custom one (``key`` required for custom codes)."""
    std = CATALOG.get(code)
    if std is not None:
        return Milestone(code, key or std.key, title or std.title, std.phase, std.tool)
    if not key:
        raise InvalidInput(f"milestones.{code}.key", "a custom milestone code needs a key")
    return Milestone(code, key, title or key.replace("_", " ").capitalize(), phase_of(code), "custom")


def check_code(value: object, field: str = "state") -> int:
    """Return ``value`` as a milestone code, refusing bools, non-integers and codes outside 0..100."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer milestone code, got {value!r}")
    if not FIRST_STATE <= value <= LAST_STATE:
        raise InvalidInput(field, f"must be between {FIRST_STATE} and {LAST_STATE}, got {value}")
    return value


def parse_code(text: str, field: str = "state") -> int:
    """Parse a milestone code typed by a person (CLI argument, env var)."""
    stripped = text.strip(" ")
    if not re.fullmatch(r"-?[0-9]{1,6}", stripped):  # ASCII digits only: int() also reads other scripts' digits
        raise InvalidInput(field, f"must be an integer milestone code, got {text[:20]!r}")
    return check_code(int(stripped), field)


def validate_plan(codes: Iterable[object], field: str = "plan") -> tuple[int, ...]:
    """Validate an ordered plan: unique integer codes, ascending, from 0 to 100."""
    plan = tuple(check_code(c, f"{field}[{i}]") for i, c in enumerate(codes))
    if not plan:
        raise InvalidInput(field, "must not be empty")
    for i in range(1, len(plan)):
        if plan[i] == plan[i - 1]:
            raise InvalidInput(field, f"duplicate milestone code {plan[i]}")
        if plan[i] < plan[i - 1]:
            raise InvalidInput(field, f"codes must be ascending: {plan[i]} comes after {plan[i - 1]}")
    if plan[0] != FIRST_STATE:
        raise InvalidInput(field, f"must start at {FIRST_STATE}, starts at {plan[0]}")
    if plan[-1] != LAST_STATE:
        raise InvalidInput(field, f"must end at {LAST_STATE}, ends at {plan[-1]}")
    return plan


def parse_plan(text: str, field: str = "states") -> tuple[int, ...]:
    """Parse ``"0,5,10,...,100"`` as typed on a command line."""
    return validate_plan((parse_code(p, f"{field}[{i}]") for i, p in enumerate(text.split(","))), field)


MAX_TITLE = 120  # characters of a milestone title a record keeps


def title_of(code: int, titles: Mapping[int, str] | None = None) -> str:
    """A display name for ``code``: the pipeline's own title when ``titles`` (a build record's, a
    plan's) has one, else the catalog's, else ``milestone <code>`` (a custom code nobody named)."""
    named = titles.get(code) if titles else None
    if named:
        return named
    std = CATALOG.get(code)
    return std.title if std else f"milestone {code}"


def milestone_label(code: int, titles: Mapping[int, str] | None = None) -> str:
    """How a person reads a milestone everywhere (CLI, errors, the UI, task names):
    ``42 · License check``."""
    return f"{code} · {title_of(code, titles)}"


def own_titles(titles: Mapping[int, str]) -> dict[int, str]:
    """The titles a pipeline gives that the catalog does not (custom codes, renamed standard ones):
    what a build record keeps, so that every reader shows them without the spec."""
    return {code: title for code, title in titles.items() if title and title != title_of(code)}


def key_of(code: int) -> str:
    """The catalog key of a standard code, ``custom_<code>`` for others."""
    std = CATALOG.get(code)
    return std.key if std else f"custom_{code}"


def previous_in(plan: Sequence[int], code: int) -> int | None:
    """The code before ``code`` in ``plan`` (None for the first)."""
    i = plan.index(code)
    return plan[i - 1] if i > 0 else None
