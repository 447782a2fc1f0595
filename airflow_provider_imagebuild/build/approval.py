"""An approval milestone in the build's record: the request, the decision, and what waits on it.

A gate is a milestone like any other (it has attempts, a status and a reason; a clear asks again),
so nothing new is stored but one metadata key: ``approval.<code>``, the time the approval was last
asked for. The decision is the milestone's attempt: who (its owner), when (its start and end),
approve (completed, with :data:`DECISION_KEYS` as outputs) or reject (failed, the comment in its
error). So the build is **waiting for approval** at a milestone while it was asked for and no
attempt at it began since (:func:`awaiting_approval`); a rejection, a timeout or a reset ends the
wait, and the next request (a clear, a new run, a re-run Concourse job) asks again.

Pure reads and texts (no store, no Airflow): the operator, the CLI, ``should-run`` and the pages
agree on the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord

REQUEST_PREFIX = "approval."  # metadata: approval.<code> = when the approval was last asked for
APPROVED, REJECTED = "approved", "rejected"
DECISION_KEYS = ("approval", "decided_by", "decided_at", "comment")
NO_REASON = "no reason given"
MAX_COMMENT = 2000
# What a rejection's (or a timeout's) error starts with: failures.py classes it persistent.
REJECTED_MARK = "approval rejected by "
TIMED_OUT_MARK = "approval not given within "
_REQUEST_RE = re.compile(r"(?P<at>\S+) after attempt (?P<n>[0-9]{1,9})")


def request_key(code: int) -> str:
    return f"{REQUEST_PREFIX}{code}"


def request_value(rec: BuildRecord, code: int, at: str) -> str:
    """``approval.<code>``'s value: when it was asked for, and the attempt number at ``code`` so far.
    A decision is the next attempt: counting attempts (numbers never go back, even when old history
    is trimmed) tells a decision from an older one without comparing two machines' clocks."""
    attempts = rec.attempts_at(code)
    return f"{at} after attempt {attempts[-1].attempt if attempts else 0}"


def _request(rec: BuildRecord, code: int) -> tuple[str, int] | None:
    found = _REQUEST_RE.fullmatch(rec.metadata.get(request_key(code), ""))
    return (found["at"], int(found["n"])) if found else None


def requested_at(rec: BuildRecord, code: int) -> str | None:
    """When the approval at ``code`` was last asked for (None: never, or a value not written here)."""
    request = _request(rec, code)
    return request[0] if request else None


def awaiting_approval(rec: BuildRecord, code: int) -> str | None:
    """When the approval at ``code`` was asked for, while the build waits for it; else None.

    It waits when the approval was requested, ``code`` is the build's next milestone (not done,
    not abandoned) and no attempt at it began since the request (a decision is an attempt)."""
    request = _request(rec, code)
    if request is None or code in rec.milestones or rec.abandoned or rec.next_state != code:
        return None
    attempts = rec.attempts_at(code)
    if attempts and attempts[-1].attempt > request[1]:
        return None
    return request[0]


def waiting_at(rec: BuildRecord) -> tuple[int, str] | None:
    """The milestone the build waits for an approval at, and since when (None: it does not)."""
    nxt = rec.next_state
    if nxt is None:
        return None
    asked = awaiting_approval(rec, nxt)
    return (nxt, asked) if asked is not None else None


def clean_comment(comment: object) -> str:
    """A decision's comment as recorded: printable text on one line, at most :data:`MAX_COMMENT`
    characters (a form field may hold anything; the record keeps what a person reads)."""
    text = comment if isinstance(comment, str) else "" if comment is None else str(comment)
    text = " ".join(text.split())
    # A control character (a terminal escape pasted into the form) would make the store refuse the
    # decision after its lease was taken: it is dropped here instead.
    return "".join(c for c in text if c.isprintable())[:MAX_COMMENT]


def decision_outputs(decided_by: str, decided_at: str, comment: str) -> dict[str, Any]:
    """The outputs of an approved milestone (the attempt's owner and times say the same)."""
    return {"approval": APPROVED, "decided_by": decided_by, "decided_at": decided_at, "comment": comment}


def rejection_error(decided_by: str, comment: str) -> str:
    """The error a rejection records: who and why, the comment as the build's reason."""
    return f"{REJECTED_MARK}{decided_by}: {comment or NO_REASON}"


def timeout_error(waited: str) -> str:
    return f"{TIMED_OUT_MARK}{waited} (on_timeout: fail); clear the task (or re-run the step) to ask again"


def decision_of(outputs: Mapping[str, Any]) -> str | None:
    """``approved`` for the outputs of an approval milestone, None for any other milestone's."""
    return APPROVED if outputs.get("approval") == APPROVED else None


# -- what the request shows a person -------------------------------------------------------------
MAX_FACT = 200  # characters of one value in the request
MAX_CHANGE_LINE = 600  # one milestone's changes (up to 6 named, packages among them) below the table


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def _short(value: Any, limit: int = MAX_FACT) -> str:
    """A recorded value as the request shows it: one line, cut, and its Markdown characters escaped
    (a milestone's output is text a command printed: it must not become a link or a button-like
    heading on the page where a person decides)."""
    text = "".join(c for c in " ".join(str(value).split()) if c.isprintable())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return _MARKDOWN.sub(r"\\\1", text)


def _prefixed(outputs: Mapping[str, Any], prefixes: tuple[str, ...]) -> list[str]:
    return [f"{k}={_short(v)}" for k, v in sorted(outputs.items()) if k.startswith(prefixes)]


def sbom_fact(sbom: Mapping[str, Any] | None, code: int, link: str) -> str:
    """The SBOM row: the seal's package count, kernel and format, and a link to the document
    (``sbom``: sbom.stored.sbom_summary, written by a milestone before ``code``, else none)."""
    if not sbom or not isinstance(sbom.get("milestone"), int) or sbom["milestone"] >= code:
        return "none before this milestone (the seal, 95, writes it)"
    count = sbom.get("packages")
    kernel = f", kernel {_short(sbom['kernel'], 80)}" if sbom.get("kernel") else ""
    shown = f"{count if isinstance(count, int) else 'an unrecorded number of'} packages{kernel}"
    written = f"{_short(sbom.get('format') or 'CycloneDX', 40)}, milestone {sbom['milestone']}"
    return f"{shown} ({written}): [the document]({link})"


def policy_fact(outputs: Mapping[str, Any]) -> str:
    """The policy row: passed (milestone 90's gate: a violation fails it, so an approval after it
    only ever sees a pass) or no policy (the spec has no ``policy:`` block)."""
    if "policy_passed" not in outputs:
        return "no policy (the spec has no policy: block)"
    if outputs["policy_passed"] is not True:
        return f"not passed (policy_passed={_short(outputs['policy_passed'], 40)})"
    count = outputs.get("policy_packages")
    return f"passed ({count} packages checked)" if isinstance(count, int) and not isinstance(count, bool) else "passed"


def request_facts(
    rec: BuildRecord,
    code: int,
    changed: Sequence[str] = (),
    sbom: Mapping[str, Any] | None = None,
    sbom_link: str = "",
) -> list[tuple[str, str]]:
    """What a person needs to decide, as (label, text) rows, from the build's record only: the image,
    the boot checks and the launch test that ran before ``code``, the SBOM (``sbom``: its summary,
    ``sbom_link``: the document) and the policy result, what changed since the last delivered build
    (``changed``: the lines build/changes.py says, from the fingerprints and the packages: the
    headline here, the lines below the table), and "not recorded" where nothing did, so the gap shows."""
    done = {c: m for c, m in sorted(rec.milestones.items()) if c < code and not m.skipped}
    merged: dict[str, Any] = {}
    for result in done.values():
        merged.update(result.outputs)
    facts: list[tuple[str, str]] = []
    image = merged.get("image_id") or merged.get("image")
    facts.append(("Image", _short(image) if image else "no image recorded before this milestone"))
    boots = [f"{c}: {', '.join(_prefixed(m.outputs, ('boot_',)))}" for c, m in done.items()
             if _prefixed(m.outputs, ("boot_",))]  # fmt: skip
    facts.append(("Boot checks", "; ".join(boots) if boots else "not recorded"))
    launch = [c for c in done if rec.titles.get(c, "").startswith("Launch test")]
    facts.append(
        ("Launch test", "; ".join(f"{c}: passed ({', '.join(_prefixed(done[c].outputs, ('',))[:6])})" for c in launch)
         if launch else "none before this milestone")
    )  # fmt: skip
    facts.append(("SBOM", sbom_fact(sbom, code, sbom_link)))
    facts.append(("Policy", policy_fact(merged)))
    facts.append(("What changed", _short(changed[0]) if changed else "not recorded"))
    return facts


def request_body(
    rec: BuildRecord,
    code: int,
    page: str,
    who: str,
    waits: str,
    changed: Sequence[str] = (),
    sbom: Mapping[str, Any] | None = None,
    sbom_link: str = "",
) -> str:
    """The request's text (Markdown) on Airflow's respond page and in notifications."""
    lines = [
        f"Build **{rec.build_id}** of pipeline `{rec.pipeline}` ({rec.cloud}, {rec.image_type}) waits for an "
        f"approval at milestone {rec.label(code)}.",
        "",
        f"[Build page]({page})",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {label} | {text} |" for label, text in request_facts(rec, code, changed, sbom, sbom_link)]
    lines += ["", *(f"- {_short(line, MAX_CHANGE_LINE)}" for line in changed[1:])] if changed[1:] else []
    lines += [
        "",
        f"Who may respond: {who}. {waits}",
        "Approve continues the build; Reject fails it at this milestone with your comment as the reason "
        "(not retried; clearing the task asks again).",
    ]
    return "\n".join(lines)


def requested_by(rec: BuildRecord, code: int) -> str | None:
    """Who recorded the latest request at ``code`` (its metadata event's actor): an Airflow task
    (``dag/run/task/try-N``) whose Required Action tab is where a person responds, or a step."""
    key = request_key(code)
    for event in reversed(rec.events):
        if event.kind == "metadata" and key in event.detail.split(", "):
            return event.actor or None
    return None
