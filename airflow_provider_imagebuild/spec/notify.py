"""A spec's ``notify:`` block: who hears about a build, and when.

::

    notify:
      on: [failed, retries_exhausted, stuck, delivered]   # default: retries_exhausted and stuck
      stuck_after: 3             # the watchdog calls a milestone stuck after N times its p90
      to:
        - slack: {slack_webhook_conn_id: slack_images}      # the Slack provider's incoming webhook
        - sns: {aws_conn_id: aws_default, target_arn: "arn:aws:sns:eu-west-1:123456789012:images"}
        - email: {to: [platform@example.com], smtp_conn_id: smtp_default}
        - webhook: {http_conn_id: builds_hook, endpoint: /hooks/imagebuild}   # JSON body

Every address that is a secret (a Slack webhook URL, an SMTP password, a webhook's token) lives in
an Airflow connection; a spec names the connection only.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_provider_imagebuild.spec.fields import ConnId

EVENTS = ("failed", "retries_exhausted", "stuck", "delivered", "awaiting_approval")
Event = Literal["failed", "retries_exhausted", "stuck", "delivered", "awaiting_approval"]
# awaiting_approval by default: an approval nobody hears of waits until its timeout.
DEFAULT_EVENTS: tuple[Event, ...] = ("retries_exhausted", "stuck", "awaiting_approval")
ARN_RE = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
EMAIL_RE = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[A-Za-z]{2,}")


class _Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackTarget(_Target):
    slack_webhook_conn_id: ConnId = "slack_default"


class SnsTarget(_Target):
    aws_conn_id: ConnId = "aws_default"
    target_arn: str
    region: str | None = None

    @field_validator("target_arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not ARN_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
        return value


class EmailTarget(_Target):
    to: list[str] = Field(min_length=1)
    smtp_conn_id: ConnId = "smtp_default"
    from_email: str | None = None

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not EMAIL_RE.fullmatch(address):
                raise ValueError(f"{address!r} is not an email address")
        return value


class WebhookTarget(_Target):
    http_conn_id: ConnId
    endpoint: str = ""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value and (not value.startswith("/") or any(c in value for c in " \t\r\n")):
            raise ValueError("must be a path below the connection's host, starting with '/'")
        return value


class NotifyTo(BaseModel):
    """One recipient: exactly one of ``slack``, ``sns``, ``email``, ``webhook``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: SlackTarget | None = None
    sns: SnsTarget | None = None
    email: EmailTarget | None = None
    webhook: WebhookTarget | None = None

    @model_validator(mode="after")
    def _one(self) -> NotifyTo:
        given = [k for k in ("slack", "sns", "email", "webhook") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of slack, sns, email, webhook (got {', '.join(given) or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("slack", "sns", "email", "webhook") if getattr(self, k) is not None)


class NotifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on: list[Event] = Field(default_factory=lambda: list(DEFAULT_EVENTS))
    to: list[NotifyTo] = Field(min_length=1)
    stuck_after: float = Field(3.0, ge=1.0, le=100.0)

    @field_validator("on")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an event twice")
        return value
