"""The approval milestone's keys: ``action: approval`` with ``approvers``, ``timeout`` and ``on_timeout``.

A person approves or rejects on Airflow's own human-in-the-loop page (the task waits in Airflow's
``awaiting_input`` state); who may respond is the spec's ``approvers``: user names (``alice``, or
``user:alice``) and roles (``role:Op``). Airflow's auth manager decides: it lets a user respond only
when the user may edit the DAG's human-in-the-loop details and is one of the task's assigned users.
A role is expanded to its users when the approval is requested, from the auth manager's own list
of users (Airflow's simple auth manager lists them; an auth manager that cannot says so, and the
spec names users instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator

# A user name as auth managers spell them (an email, a LDAP uid, "admin"), or ``role:NAME``.
_APPROVER_RE = re.compile(r"(?:(?P<kind>user|role):)?(?P<name>[A-Za-z0-9_.@+-]{1,128})", re.ASCII)
MAX_APPROVERS = 100

OnTimeout = Literal["fail", "reject"]


def _approver(value: str) -> str:
    if not _APPROVER_RE.fullmatch(value):
        raise ValueError(
            f"{value[:60]!r} is not an approver: give a user name (alice, user:alice) or a role (role:Op); "
            "letters, digits and . _ @ + - only"
        )
    return value


Approver = Annotated[str, AfterValidator(_approver)]


@dataclass(frozen=True)
class Approvers:
    """The spec's approvers, split into the users it names and the roles whose users may respond."""

    users: tuple[str, ...]
    roles: tuple[str, ...]

    @classmethod
    def of(cls, entries: list[str]) -> Approvers:
        users: list[str] = []
        roles: list[str] = []
        for entry in entries:
            found = _APPROVER_RE.fullmatch(entry)
            if found is None:  # validated by the spec already
                raise ValueError(f"{entry!r} is not an approver")
            chosen = roles if found["kind"] == "role" else users
            if found["name"] not in chosen:
                chosen.append(found["name"])
        return cls(tuple(users), tuple(roles))

    def describe(self) -> str:
        """``alice, bob, role Op``: who may respond, as a person reads it."""
        return ", ".join([*self.users, *(f"role {r}" for r in self.roles)])


def approval_problems(action: str, approvers: list[str], timeout: float | None, on_timeout: str | None) -> list[str]:
    """What is wrong with a milestone's approval keys (one reason each); none for a good one."""
    if action != "approval":
        given = [name for name, value in (("approvers", approvers), ("timeout", timeout), ("on_timeout", on_timeout))
                 if value]  # fmt: skip
        return [f"'{name}' needs action: approval" for name in given]
    problems = []
    if not approvers:
        problems.append("action 'approval' needs 'approvers' (users, or role:NAME): who may approve")
    if len(approvers) > MAX_APPROVERS:
        problems.append(f"'approvers' lists {len(approvers)}; at most {MAX_APPROVERS} (name a role instead)")
    if on_timeout is not None and timeout is None:
        problems.append("'on_timeout' needs 'timeout' (how long to wait for a decision)")
    return problems
