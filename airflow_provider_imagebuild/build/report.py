"""``imagebuild report``: what a nightly image-build service is judged on, from the build records.

Pure functions of records (no store): the success rate, deliveries per day, each milestone's
p50/p90 duration, the milestones that fail most with their commonest error lines, the retries
spent, and the time resumes saved.

- ``build_status``: how many builds have each build status (``registered``, ``running``, ...).
- ``success_rate``: delivered / (delivered + failed); builds still in progress are left out.
- ``retries_spent``: run attempts that ended failed or abandoned (each was tried again, or will be).
- ``time_saved_by_resumes_s``: for every failed attempt that a later attempt of the same build
  followed (a resume), the recorded time of the milestones completed before the failure: what a
  monolithic rerun would have done again and the resume did not.
- ``cost``: the builds' cost (:mod:`.cost`, priced with each build's pipeline's prices,
  :mod:`.prices`): ``total``, per build ``p50``/``p90`` and ``per_build``, which prices were used
  (``example`` or ``spec``) and how many attempts recorded no usage (``unmetered_attempts``, not
  priced); each milestone's ``cost_p50``/``cost_p90`` over the builds that ran it.
- ``cost_of_failures``: the cost of the attempts that failed; ``cost_saved_by_resumes``: what
  monolithic reruns would have repeated minus what the resumes cost (defined in :mod:`.cost`).
- ``cost_saved_by_reuse``: what the milestones builds took from earlier builds (#32, attempts of
  kind ``reused``, counted in ``cost.reused_milestones``) cost the builds that ran them, over the
  builds whose sources' records the store still has (``cost.reuse_saving_unknown`` counts the
  others). A reused milestone ran nothing: it has no duration or cost among the milestones'
  p50/p90, which are over the builds that ran it.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_imagebuild.build.catalog import title_of
from airflow_provider_imagebuild.build.cost import BuildCost, build_cost
from airflow_provider_imagebuild.build.prices import Prices, example_prices
from airflow_provider_imagebuild.build.provenance import reused_milestones
from airflow_provider_imagebuild.build.record import ABANDONED, FAILED, IN_PROGRESS, BuildRecord, parse_ts
from airflow_provider_imagebuild.build.status import BUILD_STATUS_WORDS, build_status
from airflow_provider_imagebuild.errors import InvalidInput

SINCE_RE = re.compile(r"([0-9]{1,5})([dh])")


def parse_since(text: str, now: datetime) -> datetime:
    """``30d`` or ``12h`` before ``now``."""
    found = SINCE_RE.fullmatch(text.strip())
    if not found:
        raise InvalidInput("--since", f"must be a number of days or hours such as 30d or 12h, got {text!r}")
    amount = int(found[1])
    return now - (timedelta(days=amount) if found[2] == "d" else timedelta(hours=amount))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[round(fraction * 100) - 1]


def _first_line(error: str | None) -> str:
    return (error or "").strip().splitlines()[0][:200] if (error or "").strip() else "(no message)"


def time_saved(rec: BuildRecord) -> float:
    """Seconds of milestones a monolithic rerun would have redone at each of this build's resumes."""
    saved = 0.0
    runs = [a for a in rec.attempts if a.kind == "run"]
    for i, attempt in enumerate(runs):
        if attempt.status != FAILED or not any(later.started_at >= attempt.started_at for later in runs[i + 1 :]):
            continue
        failed_at = parse_ts(attempt.started_at)
        saved += sum(
            done.duration_s
            for code, done in rec.milestones.items()
            if not done.skipped and code != rec.plan[0] and parse_ts(done.completed_at) <= failed_at
        )
    return round(saved, 3)


def _percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return round(percentile(values, 0.5), 6), round(percentile(values, 0.9), 6)


def cost_report(
    chosen: list[BuildRecord],
    prices_of: Callable[[BuildRecord], Prices],
    now: datetime | None,
    records: Mapping[str, BuildRecord] | None = None,
) -> tuple[dict[str, Any], dict[int, tuple[float | None, float | None]]]:
    """The report's cost fields, and each milestone's cost p50/p90 over the builds that ran it;
    ``records``: every build read by id (a reused milestone's source may predate ``chosen``)."""
    costs: dict[str, BuildCost] = {}
    sources: dict[str, str] = {}
    currencies = set()
    known = records if records is not None else {r.build_id: r for r in chosen}
    for rec in chosen:
        prices = prices_of(rec)
        costs[rec.build_id] = build_cost(rec, prices, now, known)
        sources[rec.pipeline] = prices.source
        currencies.add(prices.currency)
    per_milestone: dict[int, list[float]] = {}
    for one in costs.values():
        for code, value in one.milestones.items():
            per_milestone.setdefault(code, []).append(value)
    p50, p90 = _percentiles([c.total for c in costs.values()])
    fields = {
        "cost": {
            "currency": currencies.pop() if len(currencies) == 1 else ("mixed" if currencies else "USD"),
            "total": round(sum(c.total for c in costs.values()), 6),
            "p50": p50,
            "p90": p90,
            "per_build": {build_id: c.total for build_id, c in costs.items()},
            "prices": dict(sorted(sources.items())),
            "unmetered_attempts": sum(c.unmetered_attempts for c in costs.values()),
            "reused_milestones": sum(len(c.reused_milestones) for c in costs.values()),
            "reuse_saving_unknown": sum(1 for c in costs.values() if c.saved_by_reuse is None),
        },
        "cost_of_failures": round(sum(c.failures for c in costs.values()), 6),
        "cost_saved_by_resumes": round(sum(c.saved_by_resumes for c in costs.values()), 6),
        "cost_saved_by_reuse": round(sum(c.saved_by_reuse or 0.0 for c in costs.values()), 6),
    }
    return fields, {code: _percentiles(values) for code, values in per_milestone.items()}


def build_report(
    records: Iterable[BuildRecord],
    since: datetime | None = None,
    now: datetime | None = None,
    prices_of: Callable[[BuildRecord], Prices] | None = None,
) -> dict[str, Any]:
    """The report over the builds created since ``since``; ``build_status`` counts them by their
    build status at ``now`` (:mod:`.status`); costs with ``prices_of`` a build (default: its
    cloud's example prices)."""
    everything = list(records)
    chosen = [r for r in everything if since is None or parse_ts(r.created_at) >= since]
    by_id = {r.build_id: r for r in everything}
    costs, milestone_costs = cost_report(chosen, prices_of or (lambda rec: example_prices(rec.cloud)), now, by_id)
    delivered = [r for r in chosen if r.delivered]
    failed = [r for r in chosen if not r.delivered and r.status == FAILED]
    durations: dict[int, list[float]] = {}
    failures: Counter[int] = Counter()
    errors: dict[int, Counter[str]] = {}
    retries = 0
    for rec in chosen:
        taken = set(reused_milestones(rec))  # ran nothing: no duration to count
        for code, done in rec.milestones.items():
            if not done.skipped and code != rec.plan[0] and code not in taken:
                durations.setdefault(code, []).append(done.duration_s)
        for attempt in rec.attempts:
            if attempt.kind != "run":
                continue
            if attempt.status in (FAILED, ABANDONED):
                retries += 1
            if attempt.status == FAILED:
                failures[attempt.state] += 1
                errors.setdefault(attempt.state, Counter())[_first_line(attempt.error)] += 1
    titles: dict[int, str] = {}  # the pipelines' own names of custom milestones, newest build's first
    for rec in sorted(chosen, key=lambda r: r.updated_at):
        titles.update(rec.titles)
    per_day = Counter(str(r.delivered_at)[:10] for r in delivered if r.delivered_at)
    finished = len(delivered) + len(failed)
    milestones = [
        {
            "code": code,
            "title": title_of(code, titles),
            "runs": len(durations.get(code, [])),
            "p50_s": round(percentile(durations[code], 0.5), 3) if durations.get(code) else None,
            "p90_s": round(percentile(durations[code], 0.9), 3) if durations.get(code) else None,
            "failures": failures.get(code, 0),
            "top_errors": [{"error": e, "count": n} for e, n in errors.get(code, Counter()).most_common(3)],
            "cost_p50": milestone_costs.get(code, (None, None))[0],
            "cost_p90": milestone_costs.get(code, (None, None))[1],
        }
        for code in sorted(set(durations) | set(failures))
    ]
    words = Counter(build_status(r, now) for r in chosen)
    return {
        "builds": len(chosen),
        "build_status": {word: words.get(word, 0) for word in BUILD_STATUS_WORDS},
        "delivered": len(delivered),
        "failed": len(failed),
        "in_progress": sum(1 for r in chosen if not r.delivered and r.status == IN_PROGRESS),
        "success_rate": round(len(delivered) / finished, 4) if finished else None,
        "delivered_per_day": dict(sorted(per_day.items())),
        "milestones": milestones,
        "most_failing": [code for code, _ in failures.most_common(5)],
        "retries_spent": retries,
        "time_saved_by_resumes_s": round(sum(time_saved(r) for r in chosen), 3),
        **costs,
    }
