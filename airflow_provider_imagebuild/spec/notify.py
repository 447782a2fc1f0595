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
    slack_webhook_conn_id: ConnId = Field(
        default="slack_default", description="the Slack provider's webhook connection"
    )


class SnsTarget(_Target):
    aws_conn_id: ConnId = Field(
        default="aws_default", description="the Amazon provider's connection that publishes to the topic"
    )
    target_arn: str = Field(description="the SNS topic's ARN")
    region: str | None = Field(default=None, description="the topic's region; else the connection's")

    @field_validator("target_arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        if not ARN_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
        return value


class EmailTarget(_Target):
    to: list[str] = Field(min_length=1, description="the addresses mailed")
    smtp_conn_id: ConnId = Field(default="smtp_default", description="the SMTP provider's connection")
    from_email: str | None = Field(default=None, description="the sender; else the connection's")

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not EMAIL_RE.fullmatch(address):
                raise ValueError(f"{address!r} is not an email address")
        return value


class WebhookTarget(_Target):
    http_conn_id: ConnId = Field(description="the HTTP provider's connection: the base URL and its credentials")
    endpoint: str = Field(default="", description="the path POSTed to, below the connection's URL")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value and (not value.startswith("/") or any(c in value for c in " \t\r\n")):
            raise ValueError("must be a path below the connection's host, starting with '/'")
        return value


class NotifyTo(BaseModel):
    """One recipient: exactly one of ``slack``, ``sns``, ``email``, ``webhook``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slack: SlackTarget | None = Field(default=None, description="a Slack channel, through an incoming webhook")
    sns: SnsTarget | None = Field(default=None, description="an Amazon SNS topic")
    email: EmailTarget | None = Field(default=None, description="e-mail through SMTP")
    webhook: WebhookTarget | None = Field(default=None, description="a JSON POST to an HTTP endpoint")

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

    on: list[Event] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        description="the events sent, by name (failed, retries_exhausted, stuck, delivered...)",
    )
    to: list[NotifyTo] = Field(
        min_length=1, description="who hears of them: each entry one of slack, sns, email, webhook"
    )
    stuck_after: float = Field(
        3.0, ge=1.0, le=100.0, description="a build is stuck after this many times its milestone's p90 duration"
    )

    @field_validator("on")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists an event twice")
        return value
