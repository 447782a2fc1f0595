"""How to run a milestone again, in the words of whoever runs it.

A milestone runs as an Airflow task, where a person resumes a build by clearing the failed task,
or as a step of Concourse or a shell job (``imagebuild milestone run``), where no Airflow task
exists to clear: the step is run again. Every piece of advice that ends in "then ..." (the failed
milestone's last log line, a target's refusal of a leftover it cannot prove is the build's) asks
:func:`rerun_advice` instead of saying "clear the task", so the advice a shell user reads is one
they can follow. ``imagebuild milestone run`` sets the words for its process with
:func:`run_outside_airflow`; a process-wide value (not a context variable), because targets act
from worker threads the operator starts.
"""

from __future__ import annotations

IN_AIRFLOW = "clear the task"
_outside: str | None = None


def run_outside_airflow(command: str) -> None:
    """This process runs milestones outside Airflow; ``command`` runs this one again."""
    global _outside
    _outside = command


def outside_airflow() -> bool:
    return _outside is not None


def rerun_advice() -> str:
    """``clear the task`` in Airflow; ``run the step again (<command>)`` outside it."""
    return IN_AIRFLOW if _outside is None else f"run the step again ({_outside})"
