"""What the Image builds pages show, as plain data: a page of the builds list, and one build as a
timeline with its attempts, host, checkpoints, replays and events, each attempt linked to the
Airflow task instance that made it, and the moves a person can make next (:mod:`..build.moves`).
Kept apart from the routes so that it is tested without a server, and the JSON API and the HTML
pages show the same thing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from airflow_provider_imagebuild.build.catalog import title_of
from airflow_provider_imagebuild.build.changes import what_changed
from airflow_provider_imagebuild.build.cost import build_cost, money
from airflow_provider_imagebuild.build.moves import (
    Titles,
    abandon_move,
    allow_move,
    clear_does,
    failing_attempt,
    live_holder,
    refused_resets,
    reset_moves,
    skip_move,
)
from airflow_provider_imagebuild.build.prices import Prices, example_prices
from airflow_provider_imagebuild.build.provenance import Taken, reuse_of, reused_milestones
from airflow_provider_imagebuild.build.record import (
    ABANDONED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    Attempt,
    BuildRecord,
    format_ts,
    parse_ts,
)
from airflow_provider_imagebuild.build.stats import eta, milestone_medians, summary
from airflow_provider_imagebuild.build.status import REGISTERED, RUNNING, WAITING, build_status
from airflow_provider_imagebuild.links import TaskRef, dag_id_of, runs_of
from airflow_provider_imagebuild.sbom import changes as _packages  # noqa: F401 - adds the package changes
from airflow_provider_imagebuild.sbom.stored import sbom_summary
from airflow_provider_imagebuild.targets.base import CHECKPOINT_OUTPUT, IMAGE_OUTPUT, Host, checkpoint_images
from airflow_provider_imagebuild.targets.links import image_links

PENDING = "pending"
# Outputs that name an image: shown as the image (with its link), not as a key=value pair.
IMAGE_KEYS = (IMAGE_OUTPUT, CHECKPOINT_OUTPUT, "catalog_image", "published_images", "gallery_image_version_id",
              "image_self_link")  # fmt: skip
SHORT_TEXT = 48
# Airflow's run ids end in the run's logical date or trigger time: manual__2026-11-27T07:00:00+00:00.
RUN_DATE_RE = re.compile(r"^(?P<kind>[a-z_]+?)__(?P<at>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:[+-][0-9:]+|Z)?)")


PricesOf = Callable[[BuildRecord], Prices]


def by_cloud(rec: BuildRecord) -> Prices:
    """A build's prices when the deployment's specs are not at hand: its cloud's examples."""
    return example_prices(rec.cloud)


def cost_view(
    rec: BuildRecord, prices_of: PricesOf, now: datetime, pipeline_builds: list[BuildRecord] | None = None
) -> dict[str, Any]:
    """What the build cost so far (build/cost.py), with which prices (``example`` or ``spec``);
    ``pipeline_builds`` (the same pipeline's, where at hand) say what reuse saved it."""
    prices = prices_of(rec)
    records = {b.build_id: b for b in pipeline_builds} if pipeline_builds is not None else None
    return {**build_cost(rec, prices, now, records).to_public(), "prices": prices.source}


def builds_page(
    records: list[BuildRecord],
    readable: Callable[[str], bool],
    *,
    state: int | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
    history: list[BuildRecord] | None = None,
    prices_of: PricesOf = by_cloud,
) -> dict[str, Any]:
    """A page of the builds list, newest change first: only builds whose DAG the caller may read
    (``readable(dag_id)``, asked once per DAG); an ETA for running builds from the medians of the
    same pipeline's builds in ``history`` (every build, not only those the filters chose: a list
    of running builds alone has no finished milestone to go by); each build's cost with
    ``prices_of`` it."""
    now = now or datetime.now(timezone.utc)
    if state is not None:
        records = [r for r in records if r.current_state == state]
    allowed: dict[str, bool] = {}
    visible = [r for r in records if allowed.setdefault(dag_id_of(r), readable(dag_id_of(r)))]
    past = visible if history is None else history
    medians: dict[str, dict[int, float]] = {}
    rows = []
    for rec in visible[offset : offset + limit]:
        if rec.pipeline not in medians:
            medians[rec.pipeline] = milestone_medians(r for r in past if r.pipeline == rec.pipeline)
        rows.append(
            {
                **summary(rec, medians[rec.pipeline], now),
                "dag_id": dag_id_of(rec),
                "cost": cost_view(rec, prices_of, now),
            }
        )
    return {"builds": rows, "total": len(visible), "limit": limit, "offset": offset}


def _seconds(start: str, end: str | None, now: datetime) -> float:
    finish = parse_ts(end) if end else now
    return max(0.0, (finish - parse_ts(start)).total_seconds())


def attempt_row(attempt: Attempt, now: datetime, titles: Titles = title_of) -> dict[str, Any]:
    ref = TaskRef.parse(attempt.owner)
    return {
        "state": attempt.state,
        "title": titles(attempt.state),
        "attempt": attempt.attempt,
        "kind": attempt.kind,
        "status": attempt.status,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "duration_s": round(_seconds(attempt.started_at, attempt.finished_at, now), 1),
        "owner": attempt.owner,
        "airflow": ref.log_path() if ref else None,
        "try_number": ref.try_number if ref else None,
        "reason": attempt.reason,
        "error": attempt.error if attempt.kind != "skip" else None,
        "reused_from": dict(attempt.reused_from) if attempt.reused_from else None,
    }


def _milestone_status(rec: BuildRecord, code: int, attempts: list[Attempt]) -> str:
    done = rec.milestones.get(code)
    if done is not None:
        return "skipped" if done.skipped else COMPLETED
    runs = [a for a in attempts if a.kind == "run"]
    if not runs:
        return PENDING
    last = runs[-1].status
    return last if last in (IN_PROGRESS, FAILED, ABANDONED) else PENDING


def short_text(value: str, limit: int = SHORT_TEXT) -> str:
    """A long value as a person scans it: a path by its last parts (``…/catalog/x.qcow2``), other
    text cut at ``limit``. The full value goes in the element's title (shown on hover)."""
    if len(value) <= limit:
        return value
    if "/" in value.rstrip("/"):
        parts = value.rstrip("/").split("/")
        tail = parts[-1]
        if len(parts) > 2 and len(parts[-2]) + len(tail) + 3 <= limit:
            tail = f"{parts[-2]}/{tail}"
        if len(tail) + 2 <= limit:
            return f"…/{tail}"
    return value[: limit - 1] + "…"


def plain(value: Any) -> str:
    """An output as text: lists joined with commas, mappings as ``key: value``, never a repr."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else str(value)


def output_items(cloud: str, outputs: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the images, the other outputs) of a milestone, readable: each image called out as the image
    (or the checkpoint) with its link where the cloud has a page for it; every value as ``text``
    (shortened) and ``full`` (for the hover)."""
    images: list[dict[str, Any]] = []
    for key in IMAGE_KEYS:
        if key not in outputs:
            continue
        role = "checkpoint" if key == CHECKPOINT_OUTPUT else "image"
        only = {key: outputs[key], "image_region": outputs.get("image_region")}
        links = image_links(cloud, only)
        shown = {str(i["full"]) for i in images}
        for label, url in links.items():
            if label not in shown:
                images.append({"role": role, "text": short_text(label), "full": label, "url": url})
        if not links and plain(outputs[key]) not in shown:
            images.append(
                {"role": role, "text": short_text(plain(outputs[key])), "full": plain(outputs[key]), "url": None}
            )
    others = [
        {"key": k, "text": short_text(plain(v)), "full": plain(v)} for k, v in outputs.items() if k not in IMAGE_KEYS
    ]
    return images, others


def run_label(run_id: str) -> dict[str, Any]:
    """An Airflow run id as a person reads it: its kind and its date (``at``, a time the page
    shows in Airflow's selected time zone); ``at`` is None for a run id of another form."""
    found = RUN_DATE_RE.match(run_id)
    if found is None:
        return {"kind": None, "at": None}
    try:
        moment = datetime.fromisoformat(found["at"].replace("Z", "+00:00"))
    except ValueError:
        return {"kind": None, "at": None}
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return {"kind": found["kind"], "at": moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def errors_of(attempts: list[Attempt]) -> list[dict[str, Any]]:
    """Every failed or abandoned run attempt of a milestone with its own error, oldest first."""
    rows = []
    for a in attempts:
        if a.kind == "run" and a.error and a.status in (FAILED, ABANDONED):
            ref = TaskRef.parse(a.owner)
            at = a.finished_at or a.started_at
            link = ref.log_path() if ref else None
            rows.append({"attempt": a.attempt, "status": a.status, "error": a.error, "at": at, "airflow": link})
    return rows


def activity(rec: BuildRecord, now: datetime) -> str:
    """Whether the page should follow the build: ``running`` (a live lease), ``waiting`` (registered,
    or between milestones: a run may take it on any moment), or ``still`` (failed, delivered or
    abandoned: nothing changes until a person acts)."""
    word = build_status(rec, now)
    if word == RUNNING:
        return "running"
    return "waiting" if word in (REGISTERED, WAITING) else "still"


def failure_view(
    rec: BuildRecord, now: datetime, titles: Titles, pipeline_builds: Iterable[BuildRecord] = ()
) -> dict[str, Any] | None:
    """A failed build's first panel: the failing attempt (error, time, Airflow task), what changed
    at and before it since the pipeline's last delivered build (``pipeline_builds``), what clearing
    its task does, and the skip the store would accept."""
    failed = failing_attempt(rec)
    if failed is None:
        return None
    changed = what_changed(rec, pipeline_builds, failed.state)
    ref = TaskRef.parse(failed.owner)
    return {
        "state": failed.state,
        "title": titles(failed.state),
        "attempt": failed.attempt,
        "at": failed.finished_at or failed.started_at,
        "error": failed.error or "(no error text was recorded)",
        "changed": changed.to_public() if changed is not None else None,
        "airflow": ref.log_path() if ref else None,
        "task_id": ref.task_id if ref else None,
        "run": {"run_id": ref.run_id, "path": ref.run_path(), **run_label(ref.run_id)} if ref else None,
        "clear_does": clear_does(rec, titles),
        "skip": skip_move(rec, now, titles),
        "not_skippable": failed.state in rec.unskippable,
    }


def approval_view(rec: BuildRecord, titles: Titles) -> dict[str, Any] | None:
    """A build waiting for a person's approval (#33): at which milestone, since when, and the
    Airflow task whose Required Action tab takes the decision (None outside Airflow)."""
    from airflow_provider_imagebuild.build.approval import requested_by, waiting_at

    waiting = waiting_at(rec)
    if waiting is None:
        return None
    code, since = waiting
    ref = TaskRef.parse(requested_by(rec, code) or "")
    respond = f"{ref.run_path()}/tasks/{quote(ref.task_id, safe='')}/required_actions" if ref else None
    return {"state": code, "title": titles(code), "since": since, "respond": respond}


def moves_view(rec: BuildRecord, now: datetime, titles: Titles = title_of) -> dict[str, Any]:
    """The moves a person may make now, as the store would accept them (the API's ``moves``)."""
    resets = reset_moves(rec, now, titles)
    skip = skip_move(rec, now, titles)
    return {
        "blocked": live_holder(rec, now),
        "reset": [m.to_public() for m in resets],
        "redo": [m.to_public() for m in resets],
        "skip": skip.to_public() if skip else None,
        "refused": {str(c): why for c, why in refused_resets(rec).items()},
        "clear": clear_does(rec, titles),
        "abandon": abandon_move(rec, now),
        "allow": allow.to_public() if (allow := allow_move(rec, now, titles)) else None,
    }


def build_view(
    rec: BuildRecord,
    pipeline_builds: list[BuildRecord],
    now: datetime | None = None,
    titles: Titles = title_of,
    prices_of: PricesOf = by_cloud,
) -> dict[str, Any]:
    """One build for its page: ``pipeline_builds`` (the same pipeline's builds) give the ETA,
    ``prices_of`` the build its prices for what it cost."""
    now = now or datetime.now(timezone.utc)
    cost = cost_view(rec, prices_of, now, pipeline_builds)
    taken = reused_milestones(rec)
    known = {b.build_id for b in pipeline_builds}  # a source pruned since (or forged) is named, not linked
    timeline = []
    for code in rec.plan:
        attempts = rec.attempts_at(code)
        done = rec.milestones.get(code)
        status = _milestone_status(rec, code, attempts)
        last = attempts[-1] if attempts else None
        outputs = dict(done.outputs) if done else {}
        images, others = output_items(rec.cloud, outputs)
        timeline.append(
            {
                "state": code,
                "title": titles(code),
                "status": status,
                "current": code == rec.current_state and not rec.delivered,
                "attempts": len([a for a in attempts if a.kind == "run"]),
                "duration_s": round(done.duration_s, 1) if done else None,
                "finished_at": done.completed_at if done else None,
                "owner": done.owner if done else (last.owner if last else None),
                "airflow": _airflow_of(done.owner if done else (last.owner if last else "")),
                "outputs": outputs,
                "images": images,
                "values": others,
                "errors": errors_of(attempts),
                "error": last.error if last is not None and status in (FAILED, ABANDONED) else None,
                "skip_reason": done.skip_reason if done else None,
                "reused": _reused_cell(taken.get(code), known),
                "skippable": code not in rec.unskippable,
                "cost": cost["milestones"].get(str(code)),
                "cost_text": money(cost["milestones"][str(code)], cost["currency"])
                if str(code) in cost["milestones"]
                else "",
            }
        )
    host = Host.from_metadata(rec.metadata)
    medians = milestone_medians(pipeline_builds)
    expected = eta(rec, medians, now)
    moves = reset_moves(rec, now, titles)
    return {
        "summary": {
            **summary(rec, medians, now),
            "dag_id": dag_id_of(rec),
            "current_title": titles(rec.current_state),
            "cost": cost,
        },
        "record": rec,
        "reuse": reuse_panel(rec, taken, known),
        "timeline": timeline,
        "attempts": [attempt_row(a, now, titles) for a in reversed(rec.attempts)],
        "replays": [attempt_row(a, now, titles) for a in rec.attempts if a.kind == "replay"],
        "host": host,
        "checkpoints": [
            {
                "state": code,
                "title": titles(code),
                "image": image,
                "link": image_links(rec.cloud, {"checkpoint_image": image}),
            }
            for code, image in sorted(checkpoint_images(rec).items())
        ],
        "events": list(reversed(rec.events)),
        "runs": [{"run_id": r.run_id, "path": r.run_path(), **run_label(r.run_id)} for r in runs_of(rec)],
        "sbom": sbom_summary(rec),  # the seal's bill of materials (#33): counts; the page links the document
        "metadata": {k: v for k, v in sorted(rec.metadata.items()) if not k.startswith("host_")},
        "eta": format_ts(expected) if expected is not None else None,
        "eta_missing": eta_missing(rec, medians) if expected is None and activity(rec, now) == "running" else [],
        "activity": activity(rec, now),
        "failure": failure_view(rec, now, titles, pipeline_builds),
        "approval": approval_view(rec, titles),
        "blocked": live_holder(rec, now),
        # What the action forms offer: what the store's reset would accept, the failed or current
        # milestone first; skip only the next milestone, when the store would let it be skipped.
        "reset_moves": moves,
        "skip_move": skip_move(rec, now, titles),
        "abandon_move": abandon_move(rec, now),
        "allow_move": allow_move(rec, now, titles),
    }


def _reused_cell(taken: Taken | None, known: set[str]) -> dict[str, Any] | None:
    """A reused milestone's source, linked on the page while the store holds it."""
    return {**taken.to_public(), "known": taken.build_id in known} if taken is not None else None


def reuse_panel(rec: BuildRecord, taken: dict[int, Taken], known: set[str]) -> dict[str, Any] | None:
    """What the build took from earlier builds (#32), for the page's head: the headline's parts, so
    that each source build is a link to its own page (when the store still holds it)."""
    found = reuse_of(rec, taken)
    if found is None:
        return None
    return {
        **found.to_public(),
        "span": found.span,
        "sources": [{"build_id": b, "known": b in known} for b in found.sources],
        "unchanged": {"build_id": found.unchanged, "known": found.unchanged in known} if found.unchanged else None,
    }


def eta_missing(rec: BuildRecord, medians: Mapping[int, float]) -> list[int]:
    """The milestones still to do that no build of the pipeline has finished yet (why no ETA)."""
    return [c for c in rec.plan if c not in rec.milestones and c not in medians]


def _airflow_of(owner: str) -> str | None:
    ref = TaskRef.parse(owner)
    return ref.log_path() if ref else None
