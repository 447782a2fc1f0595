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

One more rule looks at the pipeline's other records, so it is ``store prune``'s, not the store's
(:func:`kept_for_reuse`): the newest delivered build that built (did not deliver an earlier build's
image again, #32) keeps its record while it holds checkpoint images. With ``reuse:
{keep_checkpoints: true}`` the seal keeps them for the pipeline's next build to start from, and
only the next delivered build that builds deletes them (:mod:`..build.reuse` finds them through
this record alone: pruned, they would be found by ``imagebuild gc`` only, as leaks of a build
unknown to the store). Its ``target.keep_checkpoints`` ones are kept for a redo, which the record
also needs. An older delivered build's are not waited for: the newer delivery deleted those kept
for reuse, and what it could not delete gc finds once the record is gone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from airflow_provider_imagebuild.build.holdings import Holding, holdings
from airflow_provider_imagebuild.build.record import FAILED, IN_PROGRESS, BuildRecord
from airflow_provider_imagebuild.build.reuse import delivered_unchanged


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


def kept_for_reuse(records: Iterable[BuildRecord]) -> dict[str, Verdict]:
    """The delivered builds whose records ``store prune`` keeps for the checkpoint images they hold
    (see the module's docstring): per pipeline and cloud, the newest delivered build that built,
    when it holds any. A build delivering an earlier one's image again (nothing changed) deletes
    nothing and holds none of its own: the one it follows keeps its checkpoints, and its record."""
    newest: dict[tuple[str, str], BuildRecord] = {}
    for rec in records:
        if not rec.delivered or not rec.delivered_at or delivered_unchanged(rec) is not None:
            continue
        key = (rec.pipeline, rec.cloud)
        known = newest.get(key)
        if known is None or (known.delivered_at or "", known.build_id) < (rec.delivered_at, rec.build_id):
            newest[key] = rec
    kept: dict[str, Verdict] = {}
    for rec in newest.values():
        held = tuple(h for h in holdings(rec) if h.kind == "checkpoint")
        if held:
            shown = ", ".join(map(str, held))
            why = (
                f"delivered, the newest to build, and still holds {shown}: the pipeline's next build may start "
                "from them (reuse) or a redo from them; the next delivered build that builds deletes those kept "
                "for reuse"
            )
            kept[rec.build_id] = Verdict(False, why, held)
    return kept
