"""Which build records retention may remove: one rule, applied by ``imagebuild store prune`` to
choose and by the store's conditional delete (``BuildStore.prune``) to the record as it is at the
moment of the delete, so no caller can remove more.

A record may be removed when its build is

- delivered: the plan's last milestone (100, publish) is completed. What it still records then
  is the product (published images) or kept on purpose (``keep_checkpoints``);
- or failed (the status of its current milestone), with no lease, and holding nothing
  (:func:`.holdings.holdings`: no build host, no Packer instance, no checkpoint or staged image
  recorded as existing). Removing the record of a failed build that still holds something would
  leave those resources running with nothing pointing at them: it is kept, saying what it holds,
  until a person abandons it (releases what it holds);
- or abandoned (``imagebuild build abandon``, the watchdog's ``abandon_after``), with no lease and
  holding nothing: the abandon deleted what it held. One whose abandon could not delete
  everything (no spec to reach the target, a cloud error) is kept, saying what it still holds,
  until an abandon again (with ``--spec``) releases it.

Never removed: a build with a lease (live, or expired with nobody taking over: the watchdog's
business), one in progress, and one completed up to a milestone before the last (it waits for its
next milestone: a paused DAG, a Concourse job between steps).
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_imagebuild.build.holdings import Holding, holdings
from airflow_provider_imagebuild.build.record import FAILED, IN_PROGRESS, BuildRecord


@dataclass(frozen=True)
class Verdict:
    removable: bool
    reason: str  # "delivered", "abandoned", "failed, holds nothing", "not finished: ...", "still holds ...: abandon it"
    holds: tuple[Holding, ...] = ()


def finished(build: BuildRecord) -> bool:
    """Delivered, abandoned, or failed with nobody working on it: the builds ``--keep-last`` counts."""
    return build.lease is None and (build.delivered or build.abandoned or build.status == FAILED)


def retention_verdict(build: BuildRecord) -> Verdict:
    """Whether ``build``'s record may be removed, and why (see the module's docstring)."""
    if build.abandoned and build.lease is None:
        held = tuple(holdings(build))
        if held:
            shown = ", ".join(map(str, held))
            return Verdict(False, f"abandoned, still holds {shown}: abandon it again with --spec", held)
        return Verdict(True, "abandoned")
    if build.status == IN_PROGRESS:
        return Verdict(False, f"not finished: in progress at milestone {build.current_state}")
    if build.lease is not None:
        return Verdict(False, f"not finished: leased for milestone {build.lease.state}")
    if build.delivered:
        return Verdict(True, "delivered")
    if build.status != FAILED:
        return Verdict(False, f"not finished: completed up to milestone {build.current_state}, not delivered")
    held = tuple(holdings(build))
    if held:
        return Verdict(False, f"still holds {', '.join(map(str, held))}: abandon it first", held)
    return Verdict(True, "failed, holds nothing")
