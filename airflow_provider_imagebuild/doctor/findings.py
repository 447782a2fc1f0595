"""One answer of the doctor: what was checked, whether it is there, and how to get it if not.

A thing no spec needs is still examined and shown (a worker is often set up before its first
spec arrives) but never fails the run: only a ``missing`` finding that some spec needs does, and
it names who needs it and the command that installs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

OK = "ok"
MISSING = "missing"  # needed and not there: the doctor exits 1
WARN = "warn"  # works, but not as one would want (a fallback, a download at first use)
ABSENT = "absent"  # not there, and no spec needs it
SKIPPED = "skipped"  # not examined, as asked (--no-store-probe)


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked: "packer", "python azure", "connection azure_default"...
    status: str  # OK, MISSING, WARN or ABSENT
    detail: str  # what was found, or what is wrong (never a secret)
    fix: str = ""  # how to get it: a command or a setting
    needed_by: tuple[str, ...] = field(default=())  # the spec files (and their fields) that need it

    def to_public(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "needed_by": list(self.needed_by),
        }


def judged(check: str, present: bool, detail: str, fix: str, needed_by: Iterable[str]) -> Finding:
    """A finding whose verdict depends on whether anything needs it."""
    who = tuple(needed_by)
    if present:
        return Finding(check, OK, detail, "", who)
    return Finding(check, MISSING if who else ABSENT, detail, fix, who)
