"""``imagebuild build diff A B``: what differs between two builds, milestone by milestone.

The records keep each file's git blob id, not its content; where both versions of a changed file
are objects of the git repository the command runs in (``--repo``, default: the current folder's),
the diff reads them back (``git cat-file``) and says how many lines were added and removed. Else it
says the two ids: what changed is still named, only not measured.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from airflow_provider_imagebuild.build.changes import MilestoneDiff, describe
from airflow_provider_imagebuild.build.fingerprint import InputChange

_BLOB_RE = re.compile(r"[0-9a-f]{40}")
MAX_BLOB_BYTES = 4 * 1024 * 1024  # a playbook is kilobytes; a diff of a binary blob says nothing


MAX_ROWS = 40  # changes shown per milestone in the table
MAX_LOOKUPS = 200  # git reads per diff: a role of hundreds of changed files is named, not measured, past it
_lookups = [0]


def _blob(repo: Path, blob_id: str) -> bytes | None:
    """A blob of ``repo``'s git objects, or None (no repository, no such object, too large, or
    :data:`MAX_LOOKUPS` reads made already)."""
    if not _BLOB_RE.fullmatch(blob_id) or _lookups[0] >= MAX_LOOKUPS:
        return None
    _lookups[0] += 1
    try:
        size = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "-s", blob_id], capture_output=True, text=True, timeout=30, check=False
        )
        if size.returncode != 0 or int(size.stdout.strip() or "0") > MAX_BLOB_BYTES:
            return None
        found = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "blob", blob_id], capture_output=True, timeout=30, check=False
        )
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    return found.stdout if found.returncode == 0 else None


def line_summary(before: bytes, after: bytes) -> str:
    """``+3 -1 lines``: what a unified diff of the two texts adds and removes."""
    old = before.decode("utf-8", "replace").splitlines()
    new = after.decode("utf-8", "replace").splitlines()
    added = removed = 0
    for line in difflib.unified_diff(old, new, lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return f"+{added} -{removed} lines"


def file_summary(change: InputChange, repo: Path | None) -> str | None:
    """A changed file's line counts when both of its versions are in ``repo``'s git objects."""
    if repo is None or change.kind != "file" or change.before is None or change.after is None:
        return None
    before, after = _blob(repo, change.before), _blob(repo, change.after)
    if before is None or after is None:
        return None
    return line_summary(before, after)


def diff_public(before: str, after: str, diffs: list[MilestoneDiff], repo: Path | None) -> dict[str, Any]:
    """``--json``: per milestone, its fingerprints and each changed input (with a file's line
    counts where both versions were found)."""
    milestones = []
    for diff in diffs:
        shown = diff.to_public()
        for change, public in zip(diff.changes, shown["changes"], strict=True):
            public["summary"] = file_summary(change, repo)
            public["description"] = describe(change)
        milestones.append(shown)
    return {"before": before, "after": after, "milestones": milestones}


def diff_table(before: str, after: str, diffs: list[MilestoneDiff], repo: Path | None) -> Table:
    table = Table(title=f"what changed from build {before} to build {after}", title_justify="left")
    for column in ("milestone", "inputs", "what changed"):
        table.add_column(column)
    for diff in diffs:
        if not diff.known:
            table.add_row(
                Text(diff.label), "unknown", "not recorded on both builds (not reached, or run before fingerprints)"
            )
            continue
        own = diff.own_changes
        if diff.same and not own and diff.reused:  # equal because one build copied the other's result
            table.add_row(Text(diff.label), "reused", "; ".join(r.text() for r in diff.reused))
            continue
        if diff.same and not own:  # equal fingerprints, yet the packages may differ (a mirror moved on)
            table.add_row(Text(diff.label), "same", "")
            continue
        if not own:
            table.add_row(Text(diff.label), "changed", "an earlier milestone changed")
            continue
        lines = []
        for change in own:
            summary = file_summary(change, repo)
            text = describe(change)
            if summary:
                text = f"{text} ({summary})"
            elif change.kind in ("file", "folder") and change.before and change.after:
                text = f"{text} ({change.before[:12]} -> {change.after[:12]})"
            lines.append(text)
        if len(lines) > MAX_ROWS:  # a release upgrade changes hundreds of packages: --json lists them all
            lines = [*lines[: MAX_ROWS - 1], f"... and {len(lines) - MAX_ROWS + 1} more (--json lists them all)"]
        table.add_row(Text(diff.label), "changed", Text("\n".join(lines)))
    return table
