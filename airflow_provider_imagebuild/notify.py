"""Telling people: a build event sent to the spec's ``notify.to`` through Airflow's notifiers.

Each recipient is one of the providers' notifier classes (Slack's ``SlackWebhookNotifier``,
Amazon's ``SnsNotifier``, SMTP's ``SmtpNotifier``, HTTP's ``HttpNotifier`` for a generic JSON
webhook), built per event and called at once. An event is sent once: the build's metadata keeps
``notified.<event>`` (which milestone and DAG run, or which delivery), and a retry that would
announce the same thing again is silent. The error it carries went through the same redaction as
the store's free text. A notifier that fails (an expired webhook, SMTP down) is logged and never
fails the build: nightly builds must not break because a chat service is down.

Every value in a notice comes from a build, and a build's free text (an error line, a lease owner
anyone who can write the store chose) is not trusted: each channel gets it in its own safe form.
Slack's mrkdwn gets ``&``, ``<`` and ``>`` escaped (otherwise ``<!channel>`` pings a channel and
``<https://evil.example|https://sso.corp.example>`` shows one address and opens another), and the
build page is the one link written in Slack's syntax; email is HTML-escaped; the webhook and SNS
messages are JSON; subjects are one line, and SNS's is ASCII under 100 characters (SNS refuses the
whole message otherwise).
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from html import escape
from typing import Any

from airflow_provider_imagebuild.spec.notify import NotifySpec, NotifyTo

log = logging.getLogger(__name__)

ICONS = {"failed": "⚠️", "retries_exhausted": "❌", "stuck": "⏳", "delivered": "✅", "abandoned": "🗑️",
         "awaiting_approval": "✋"}  # fmt: skip
WORDS = {
    "failed": "failed (Airflow retries it)",
    "retries_exhausted": "failed for good (no retry left)",
    "stuck": "looks stuck",
    "delivered": "was delivered",
    "abandoned": "was abandoned (what it held is deleted)",
    "leaks": "has leaked resources (imagebuild gc)",
    "awaiting_approval": "waits for an approval",
}
# Events sent to every recipient whatever ``notify.on`` lists: the watchdog abandoning a build
# (on_failure.abandon_after) deletes its host and checkpoints, which nobody may learn by chance.
# So is the leak collector's report (``on_failure.gc``, a pipeline's event: no build id): the spec asked for it.
ALWAYS_SENT = frozenset({"abandoned", "leaks"})
ICONS.setdefault("leaks", "🧹")


@dataclass(frozen=True)
class Notice:
    event: str
    build_id: str
    pipeline: str
    cloud: str
    image_type: str
    milestone: int | None
    milestone_name: str
    status: str
    attempt: int | None
    error: str | None
    build_page: str
    at: str
    detail: str | None = None  # a line of the event's own (awaiting_approval: who may respond, until when)
    # A failure's "what changed since the last delivered build" (build/changes.py): headline, then per milestone
    changed: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        return asdict(self)

    def subject(self) -> str:
        where = f" at milestone {self.milestone} ({self.milestone_name})" if self.milestone is not None else ""
        build = f" build {self.build_id}" if self.build_id else ""  # a pipeline's event (leaks) names no build
        return f"imagebuild: {self.pipeline}{build} {WORDS[self.event]}{where}"

    def _lines(self, shown: Callable[[str], str]) -> list[str]:
        """The message's lines above the build page; ``shown`` makes the build's values safe for the channel."""
        lines = [f"{ICONS[self.event]} {shown(self.subject())}"]
        if self.attempt:
            lines.append(f"attempt {self.attempt}")
        first = (self.error or "").strip().splitlines()[:1]
        if first:
            lines.append(shown(first[0][:300]))  # cut before escaping: an entity is never cut in half
        if self.detail:
            lines.append(shown(one_line(self.detail)[:300]))
        lines.extend(shown(one_line(line)[:300]) for line in self.changed[:14])
        return lines

    def text(self) -> str:
        """Plain text (email escapes it for HTML, line by line)."""
        return "\n".join([*self._lines(str), self.build_page])

    def slack_text(self) -> str:
        """Slack's mrkdwn: the build's values escaped, the build page the one link."""
        return "\n".join([*self._lines(slack_escape), slack_link(self.build_page, "build page")])


def slack_escape(value: str) -> str:
    """``&``, ``<`` and ``>`` as Slack's entities, and nothing else: these three are its control
    characters (Slack's "Escaping text"), and any other entity would be shown as typed."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, label: str) -> str:
    """``<url|label>`` for an absolute http(s) URL; anything else (a path, when Airflow's address is
    not configured) is shown as text, since Slack could not open it."""
    if not url.startswith(("http://", "https://")):
        return slack_escape(url)
    return f"<{slack_escape(url).replace('|', '%7C')}|{slack_escape(label)}>"


def one_line(text: str) -> str:
    """A subject line: line breaks, tabs and other control characters become one space or go."""
    return "".join(c for c in " ".join(text.split()) if c.isprintable())


def sns_subject(text: str) -> str:
    """An SNS ``Subject``: ASCII (accents dropped, not the letters), one line, under 100 characters."""
    ascii_text = unicodedata.normalize("NFKD", one_line(text)).encode("ascii", "ignore").decode("ascii")
    return ascii_text[:99].rstrip()


def notifier_for(target: NotifyTo, notice: Notice) -> Any:
    """The provider's notifier that sends ``notice`` to ``target``."""
    if target.slack is not None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        return SlackWebhookNotifier(slack_webhook_conn_id=target.slack.slack_webhook_conn_id,
                                    text=notice.slack_text(), timeout=30)  # fmt: skip
    if target.sns is not None:
        from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

        return SnsNotifier(aws_conn_id=target.sns.aws_conn_id, target_arn=target.sns.target_arn,
                           message=json.dumps(notice.payload()), subject=sns_subject(notice.subject()),
                           region_name=target.sns.region)  # fmt: skip
    if target.email is not None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        html = "<br>".join(escape(line) for line in notice.text().splitlines())
        email = target.email
        return SmtpNotifier(to=email.to, from_email=email.from_email, smtp_conn_id=email.smtp_conn_id,
                            subject=one_line(notice.subject()), html_content=html)  # fmt: skip
    assert target.webhook is not None
    from airflow.providers.http.notifications.http import HttpNotifier

    return HttpNotifier(http_conn_id=target.webhook.http_conn_id, endpoint=target.webhook.endpoint, method="POST",
                        json=notice.payload(), headers={"Content-Type": "application/json"},
                        extra_options={"timeout": 30})  # fmt: skip


def send(spec: NotifySpec, notice: Notice, warn: Callable[[str], None] | None = None) -> list[str]:
    """Send ``notice`` to every recipient; the kinds that took it. Failures are reported, not raised."""
    if notice.event not in spec.on and notice.event not in ALWAYS_SENT:
        return []
    sent = []
    for target in spec.to:
        try:
            notifier_for(target, notice).notify({})
            sent.append(target.kind)
        except Exception as exc:  # a notifier must never fail the build
            (warn or log.warning)(f"notification to {target.kind} failed: {type(exc).__name__}: {exc}")
    return sent


def already_sent(metadata: dict[str, str], event: str, key: str) -> bool:
    return metadata.get(f"{MARK}{event}") == key


MARK = "notified."  # metadata key prefix: which milestone and run (or delivery) each event was sent for
