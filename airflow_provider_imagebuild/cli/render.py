"""Human-readable tables for the CLI (rich); ``--json`` output bypasses all of this."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from airflow_provider_imagebuild.build.cost import money
from airflow_provider_imagebuild.build.provenance import Taken, reuse_headline, reused_milestones
from airflow_provider_imagebuild.build.record import REUSED, BuildRecord, parse_ts
from airflow_provider_imagebuild.build.status import build_status
from airflow_provider_imagebuild.cli.times import shown_time
from airflow_provider_imagebuild.plan import PipelinePlan

STATUS_STYLE = {
    "completed": "green",
    "in_progress": "yellow",
    "failed": "red",
    "abandoned": "magenta",
    "skipped": "cyan",
    "reused": "cyan",
    # build statuses (build/status.py); "failed" and "abandoned" as above
    "registered": "blue",
    "running": "yellow",
    "waiting": "cyan",
    "delivered": "green",
}


def console(stderr: bool = False) -> Console:
    """A console that does not squeeze tables to 80 columns when output goes to a pipe or file, and
    writes no escape sequence at all (no colour, no bold or italic) when ``NO_COLOR`` is set."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", "140"))
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(file=stream, width=width, highlight=False, soft_wrap=False, color_system=None if plain else "auto")


def _plain(cell: object) -> str:
    """A cell's text without markup, on one line (a tab or newline would split a TSV row)."""
    text = Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)
    return " ".join(text.split("\t")).replace("\r", " ").replace("\n", " ")


def as_tsv(table: Table) -> str:
    """A table for a pipe or a file: the column names, then one tab-separated line per row (no
    box drawing, no markup); the title and the caption, when there are, on lines starting ``# ``."""
    lines = [f"# {_plain(table.title)}"] if table.title else []
    lines.append("\t".join(_plain(column.header) for column in table.columns))
    rows = zip(*(list(column.cells) for column in table.columns), strict=True)
    lines.extend("\t".join(_plain(cell) for cell in row) for row in rows)
    if table.caption:
        lines.append(f"# {_plain(table.caption)}")
    return "\n".join(lines) + "\n"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_table(rec: BuildRecord) -> Table:
    """One row per milestone of the plan: status, attempts, duration and outputs."""
    word = build_status(rec)
    state_line = (
        f"build status [bold {STATUS_STYLE.get(word, '')}]{word}[/] · milestone {rec.current_state} "
        f"({rec.title(rec.current_state)}) {rec.status}"
    )
    if rec.metadata.get("host_parked") and rec.metadata.get("host_id"):  # targets/base.py HOST_PARKED
        meta = rec.metadata
        state_line += f" · build host {meta['host_id']} parked ({meta['host_parked']}) since "
        state_line += shown_time(meta.get("host_parked_at", ""))
    taken = reused_milestones(rec)
    headline = reuse_headline(rec, taken)
    if headline:
        state_line += f" · {headline}"
    table = Table(
        title=f"build {rec.build_id} · {rec.pipeline} · {rec.cloud}/{rec.image_type}"
        + (f"/{rec.os}" if rec.os else ""),
        caption=state_line,
        title_justify="left",
        caption_justify="left",
    )
    for column, justify in (
        ("code", "right"),
        ("milestone", "left"),
        ("status", "left"),
        ("attempts", "right"),
        ("duration", "right"),
        ("finished", "left"),
        ("outputs / error", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for code in rec.plan:
        attempts = rec.attempts_at(code)
        runs = [a for a in attempts if a.kind == "run"]
        done = rec.milestones.get(code)
        last = runs[-1] if runs else None
        if done is not None and done.skipped:
            status, finished, detail, duration = "skipped", done.completed_at, _short(done.skip_reason or "", 80), ""
        elif done is not None and code in taken:  # no work done here: say whose result it holds
            status, finished, duration = "reused", done.completed_at, ""
            detail = "; ".join([taken[code].text(), *(f"{k}={_short(v, 40)}" for k, v in done.outputs.items())])
        elif done is not None:
            status, finished, detail = (
                "completed",
                done.completed_at,
                ", ".join(f"{k}={_short(v, 40)}" for k, v in done.outputs.items()),
            )
            duration = _duration(done.duration_s)
        elif last is not None:
            status, finished, detail = last.status, last.finished_at or "", _short(last.error or "", 80)
            duration = ""
            if last.finished_at:
                duration = _duration((parse_ts(last.finished_at) - parse_ts(last.started_at)).total_seconds())
        else:
            status, finished, detail, duration = "pending", "", "", ""
        replays = len(attempts) - len(runs)
        count = f"{len(runs)}" + (f"+{replays}r" if replays else "")
        style = STATUS_STYLE.get(status, "dim")
        table.add_row(
            str(code),
            rec.title(code),
            f"[{style}]{status}[/]",
            count if runs else "",
            duration,
            shown_time(finished),
            detail,
        )
    return table


def history_table(build_id: str, rows: list[dict[str, Any]], headline: str | None = None) -> Table:
    """Every attempt and event; ``headline`` (the caption): what the build reused, if anything."""
    table = Table(title=f"history of build {build_id}", title_justify="left", caption=headline, caption_justify="left")
    for column in ("at", "what", "milestone", "attempt", "status", "owner/actor", "detail"):
        table.add_column(column)
    for row in rows:
        if row["type"] == "attempt":
            what = "attempt" if row["kind"] == "run" else row["kind"]
            style = STATUS_STYLE.get(row["status"], "")
            origin = row.get("reused_from")
            detail = row.get("error") or ""
            if row["kind"] == REUSED and origin:  # validated on read: a build id and a milestone code
                detail = Taken(row["state"], origin["build_id"], origin["state"]).text()
            table.add_row(
                shown_time(row["at"]),
                what,
                str(row["state"]),
                str(row["attempt"]),
                f"[{style}]{row['status']}[/]",
                row["owner"],
                _short(detail, 80),
            )
        else:
            table.add_row(
                shown_time(row["at"]),
                row["kind"],
                "" if row["state"] is None else str(row["state"]),
                "",
                "",
                row["actor"],
                _short(row["detail"], 80),
            )
    return table


def list_table(records: list[BuildRecord]) -> Table:
    table = Table(title=f"{len(records)} build(s)", title_justify="left")
    for column in ("build", "pipeline", "cloud", "image type", "status", "milestone", "updated"):
        table.add_column(column)
    for rec in records:
        word = build_status(rec)
        table.add_row(
            rec.build_id,
            rec.pipeline,
            rec.cloud,
            rec.image_type,
            f"[{STATUS_STYLE.get(word, '')}]{word}[/]",
            f"{rec.label(rec.current_state)} ({rec.status})",
            shown_time(rec.updated_at),
        )
    return table


def plan_table(plan: PipelinePlan) -> Table:
    """One row per task the pipeline's DAG will have, with the retry policy it will get."""
    spec = plan.spec
    table = Table(
        title=f"{plan.dag_id} · {spec.cloud}/{spec.image_type}" + (f"/{spec.os}" if spec.os else ""),
        caption=f"schedule {spec.schedule or 'manual only'} · {len(plan.steps)} milestones",
        title_justify="left",
        caption_justify="left",
    )
    for column, justify in (
        ("code", "right"),
        ("task", "left"),
        ("milestone", "left"),
        ("phase", "left"),
        ("action", "left"),
        ("retries", "right"),
        ("retry delay", "right"),
        ("timeout", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for step in plan.steps:
        policy = step.policy
        table.add_row(
            str(step.code),
            step.task_id,
            step.title,
            step.phase.value,
            step.action,
            "" if policy.retries is None else str(policy.retries),
            _duration(policy.retry_delay) + (" exp" if policy.retry_exponential_backoff else ""),
            _duration(policy.execution_timeout),
        )
    return table


def report_table(report: dict[str, Any]) -> Table:
    rate = report["success_rate"]
    title = (
        f"{report['builds']} build(s): {report['delivered']} delivered, {report['failed']} failed, "
        f"{report['in_progress']} in progress; success rate {'-' if rate is None else f'{rate:.0%}'}; "
        f"{report['retries_spent']} retries spent; resumes saved {_duration(report['time_saved_by_resumes_s'])}"
    )
    cost = report.get("cost")
    if cost:
        unit = cost["currency"]
        saved = money(report["cost_saved_by_resumes"], unit)
        title += (
            f"\ncost {money(cost['total'], unit)} (p50 {money(cost['p50'], unit)} a build); failures cost "
            f"{money(report['cost_of_failures'], unit)}; resumes saved {saved}"
        )
        if cost.get("reused_milestones"):  # #32: milestones taken from earlier builds ran nothing
            title += f"; reuse saved {money(report['cost_saved_by_reuse'], unit)} ({cost['reused_milestones']} reused)"
    table = Table(title=title, title_justify="left")
    numeric = ("runs", "p50", "p90", "failures", "cost p50", "cost p90")
    for column in ("milestone", "runs", "p50", "p90", "failures", "cost p50", "cost p90", "top error"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for row in report["milestones"]:
        top = row["top_errors"][0] if row["top_errors"] else None
        table.add_row(
            f"{row['code']} {row['title']}",
            str(row["runs"]),
            _duration(row["p50_s"]),
            _duration(row["p90_s"]),
            str(row["failures"]),
            money(row.get("cost_p50")),
            money(row.get("cost_p90")),
            _short(f"{top['count']}x {top['error']}") if top else "",
        )
    return table
