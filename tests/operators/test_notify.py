"""Notifications from a pipeline's milestones, through the providers' real notifiers.

Real: the milestone tasks from the DAG factory, the store (SQLite), Airflow connections from the
environment, Slack's ``SlackWebhookNotifier`` and the generic ``HttpNotifier`` posting to an HTTP
sink on loopback (standing in for Slack's incoming webhook and a team's endpoint), Amazon's
``SnsNotifier`` publishing to an SNS topic on moto whose message is read back from an SQS queue
subscribed to it, and ``SmtpNotifier`` sending to a local SMTP server (aiosmtpd).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_imagebuild.spec.pipeline import SpecError, parse_spec
from tests.dags.conftest import write
from tests.helpers import task_context


class Sink:
    """An HTTP server on loopback that keeps every POST (path, JSON body) and answers ``ok``."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append((self.path, json.loads(body or b"null")))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    found = Sink()
    yield found
    found.close()


@pytest.fixture
def mailbox() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller

    messages: list[Any] = []

    class Keep:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append(envelope)
            return "250 OK"

    from tests.servers.process import free_port

    port = free_port()
    controller = Controller(Keep(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, messages
    controller.stop()


@pytest.fixture
def topic(moto_url: str) -> tuple[str, Any, str]:
    """An SNS topic with an SQS queue subscribed (raw delivery off: the SNS envelope, as AWS sends)."""
    import boto3

    from tests.conftest import unique

    sns = boto3.client("sns", region_name="us-east-1", endpoint_url=moto_url, aws_access_key_id="testing",
                       aws_secret_access_key="testing")  # fmt: skip
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_url, aws_access_key_id="testing",
                       aws_secret_access_key="testing")  # fmt: skip
    arn = sns.create_topic(Name=unique("images"))["TopicArn"]
    queue = sqs.create_queue(QueueName=unique("images-q"))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return arn, sqs, queue


def _recipients(sink: Sink, smtp_port: int, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The connections of every channel: Slack and the webhook on the sink, SMTP on the mailbox, SNS on moto."""
    from tests.servers.aws_sample import moto_connection

    connections = {
        "SLACK_IMAGES": {"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{sink.port}/services/T0/B0/X"},
        "BUILDS_HOOK": {"conn_type": "http", "host": "127.0.0.1", "port": sink.port, "schema": "http"},
        "SMTP_IMAGES": {"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
                        "extra": {"disable_tls": True, "disable_ssl": True, "timeout": 10, "retry_limit": 1}},
    }  # fmt: skip
    for name, conn in connections.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{name}", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_NOTIFY", moto_connection(moto_url))


SPEC = """pipeline: nightly
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
defaults: {{retries: 1, lease_seconds: 30}}
notify:
  on: [failed, retries_exhausted, delivered]
  to:
    - slack: {{slack_webhook_conn_id: slack_images}}
    - sns: {{aws_conn_id: aws_notify, target_arn: "{arn}", region: us-east-1}}
    - email: {{to: [platform@example.com], smtp_conn_id: smtp_images, from_email: imagebuild@example.com}}
    - webhook: {{http_conn_id: builds_hook, endpoint: /hooks/imagebuild}}
milestones:
  5: {{action: command, command: "{five}"}}
  100: {{action: command, command: "true"}}
"""


def test_failures_and_deliveries_are_announced_once_each(
    tmp_path: Path, sink: Sink, mailbox: tuple[int, list[Any]], topic: tuple[str, Any, str], moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from airflow_provider_imagebuild.dag_factory import build_dag
    from airflow_provider_imagebuild.spec.pipeline import load_spec

    arn, sqs, queue = topic
    port, mail = mailbox
    _recipients(sink, port, moto_url, monkeypatch)
    # Milestone 5 fails on its first try (a reset connection, with a password in its output) and
    # succeeds on its retry.
    counter = tmp_path / "tries"
    five = (f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; "
            f"[ $n -ge 1 ] || {{ echo 'read: connection reset by peer password=hunter2'; exit 1; }}")  # fmt: skip
    spec = load_spec(write(tmp_path / "p/nightly.yaml", SPEC.format(tmp=tmp_path, arn=arn, five=five)))
    tasks = {t.state: t for t in build_dag(spec).tasks}  # type: ignore[attr-defined]

    def run(code: int, try_number: int = 1) -> None:
        tasks[code].execute(task_context("n-1", tasks[code].task_id, try_number))

    run(0)
    with pytest.raises(Exception, match="connection reset"):
        run(5, 1)
    run(5, 2)  # the retry: no second "failed"
    run(100)

    hooks = [body for path, body in sink.received if path == "/hooks/imagebuild"]
    slack = [body for path, body in sink.received if path.startswith("/services/")]
    assert [h["event"] for h in hooks] == ["failed", "delivered"]
    failed = hooks[0]
    assert (failed["build_id"], failed["milestone"], failed["attempt"], failed["status"]) == ("n-1", 5, 1, "failed")
    assert "connection reset" in failed["error"] and "hunter2" not in json.dumps(hooks)
    assert failed["build_page"].endswith("/builds/n-1")
    assert len(slack) == 2 and "nightly build n-1 failed" in slack[0]["text"]
    assert len(mail) == 2 and "platform@example.com" in mail[0].rcpt_tos
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    events = sorted(json.loads(json.loads(m["Body"])["Message"])["event"] for m in got)
    assert events == ["delivered", "failed"]


def test_a_persistent_failure_is_announced_as_final_and_a_dead_notifier_fails_nothing(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_imagebuild.dag_factory import build_dag
    from airflow_provider_imagebuild.spec.pipeline import load_spec
    from tests.servers.process import free_port

    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                               "port": sink.port, "schema": "http"}))  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                              "port": free_port(), "schema": "http"}))  # fmt: skip
    text = f"""pipeline: denied
cloud: local
image_type: base
store: sqlite:///{tmp_path}/state.db
defaults: {{retries: 3}}
notify:
  on: [failed, retries_exhausted]
  to: [{{webhook: {{http_conn_id: dead_hook}}}}, {{webhook: {{http_conn_id: builds_hook}}}}]
milestones:
  5: {{action: command, command: "echo 'An error occurred (AccessDenied) when calling GetObject'; exit 1"}}
"""
    tasks = {t.state: t for t in build_dag(load_spec(write(tmp_path / "p/d.yaml", text))).tasks}  # type: ignore[attr-defined]
    tasks[0].execute(task_context("d-1", tasks[0].task_id))
    with pytest.raises(AirflowFailException, match="auth failure"):  # the dead notifier did not change that
        tasks[5].execute(task_context("d-1", tasks[5].task_id, 1))
    assert [body["event"] for _, body in sink.received] == ["failed", "retries_exhausted"]


@pytest.mark.parametrize(
    ("notify", "where", "reason"),
    [
        ({"to": [{"sns": {"target_arn": "my-topic"}}]}, "notify.to.0.sns.target_arn", "not an SNS topic ARN"),
        ({"to": [{"email": {"to": ["nobody"]}}]}, "notify.to.0.email.to", "not an email address"),
        ({"to": [{"slack": {}, "webhook": {"http_conn_id": "x"}}]}, "notify.to.0", "exactly one of"),
        ({"to": [{"webhook": {"http_conn_id": "x", "url": "u"}}]}, "notify.to.0.webhook.url", "unknown key"),
        ({"on": ["exploded"], "to": [{"slack": {}}]}, "notify.on.0", "Input should be"),
        ({"to": []}, "notify.to", "at least 1"),
    ],
)
def test_bad_notify_blocks_name_the_key(notify: dict[str, Any], where: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason) as info:
        parse_spec({"pipeline": "p", "cloud": "local", "image_type": "t", "notify": notify})
    assert where in str(info.value)


# A lease owner is free text anyone who can write the store chooses (``imagebuild build begin --owner``).
HOSTILE = "<!channel> images broken: sign in again at <https://evil.example|https://sso.corp.example> & retry"


def _every_channel(arn: str) -> Any:
    from airflow_provider_imagebuild.spec.notify import NotifySpec

    return NotifySpec.model_validate(
        {
            "on": ["failed", "stuck"],
            "to": [
                {"slack": {"slack_webhook_conn_id": "slack_images"}},
                {"sns": {"aws_conn_id": "aws_notify", "target_arn": arn, "region": "us-east-1"}},
                {"email": {"to": ["platform@example.com"], "smtp_conn_id": "smtp_images",
                           "from_email": "imagebuild@example.com"}},
                {"webhook": {"http_conn_id": "builds_hook", "endpoint": "/hooks/imagebuild"}},
            ],
        }
    )  # fmt: skip


def _html_of(envelope: Any) -> str:
    from email import message_from_bytes, policy

    message = message_from_bytes(envelope.content, policy=policy.default)
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def test_a_hostile_lease_owner_reaches_every_channel_escaped(
    tmp_path: Path, sink: Sink, mailbox: tuple[int, list[Any]], topic: tuple[str, Any, str], moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The watchdog announces a build whose lease (held by a hostile owner name) expired. Slack gets
    the name with ``&``, ``<`` and ``>`` escaped (no @channel ping, no disguised link) and the build
    page as the provider's own working link; email gets it HTML-escaped; the webhook and SNS get it
    as a JSON string, unchanged."""
    from datetime import datetime, timedelta, timezone

    from airflow_provider_imagebuild.operators.watchdog import WatchdogOperator, Watched
    from airflow_provider_imagebuild.store import open_store

    arn, sqs, queue = topic
    port, mail = mailbox
    _recipients(sink, port, moto_url, monkeypatch)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/")
    url = f"sqlite:///{tmp_path}/state.db"
    earlier = datetime.now(timezone.utc) - timedelta(hours=1)
    store = open_store(url, clock=lambda: earlier)
    store.create_build("held-1", pipeline="nightly", cloud="local", image_type="base", plan=[0, 5, 100])
    store.begin("held-1", 5, owner=HOSTILE, lease_seconds=60)  # expired an hour ago
    watchdog = WatchdogOperator(task_id="watchdog", watched=[Watched("nightly", url, None, _every_channel(arn))])
    assert watchdog.execute(task_context("-", "watchdog")) == {"nightly": ["held-1"]}

    [slack] = [body["text"] for path, body in sink.received if path.startswith("/services/")]
    assert "<!channel>" not in slack and "<https://evil.example" not in slack, slack
    escaped = HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in slack, slack
    assert "<https://airflow.example/plugin/image-builds/imagebuild/builds/held-1|build page>" in slack, slack
    [hook] = [body for path, body in sink.received if path == "/hooks/imagebuild"]
    assert (
        HOSTILE in hook["error"]
        and hook["build_page"] == "https://airflow.example/plugin/image-builds/imagebuild/builds/held-1"
    )
    [envelope] = mail
    html = _html_of(envelope)
    assert "<!channel>" not in html and "&lt;!channel&gt;" in html, html
    [got] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert HOSTILE in json.loads(json.loads(got["Body"])["Message"])["error"]


def test_an_sns_subject_stays_one_ascii_line_under_100_characters(
    sink: Sink, topic: tuple[str, Any, str], moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SNS refuses a Subject that is not ASCII, holds a line break or a control character, or has
    100 characters or more, and the notice would be lost: a value that would break it (a pipeline
    name read back from a store that someone wrote by hand) is flattened into one ASCII line."""
    from airflow_provider_imagebuild.notify import Notice, send

    arn, sqs, queue = topic
    _recipients(sink, 25, moto_url, monkeypatch)
    notice = Notice(event="failed", build_id="n-1", pipeline="nïghtly\r\nBcc: all@example.com\x07" + "x" * 80,
                    cloud="local", image_type="base", milestone=5, milestone_name="kickstart", status="failed",
                    attempt=1, error="boom", build_page="/builds/n-1", at="2026-11-01T02:00:00Z")  # fmt: skip
    sns_only = _every_channel(arn).model_copy(update={"to": [_every_channel(arn).to[1]]})
    problems: list[str] = []
    assert send(sns_only, notice, warn=problems.append) == ["sns"], problems
    [got] = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    subject = json.loads(got["Body"])["Subject"]
    assert subject.startswith("imagebuild: nightly Bcc: all@example.com"), subject
    assert subject.isascii() and subject.isprintable() and len(subject) < 100, subject


def test_a_failure_says_what_changed_since_the_last_delivered_build(
    tmp_path: Path, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#32: the failed milestone's notice names what changed at and before it since the pipeline's
    last delivered build (a variable of 5 and the script of 10), from what the attempts recorded."""
    from airflow_provider_imagebuild.dag_factory import build_dag
    from airflow_provider_imagebuild.spec.pipeline import load_spec

    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                               "port": sink.port, "schema": "http"}))  # fmt: skip
    text = f"""pipeline: changing
cloud: local
image_type: base
store: sqlite:///{tmp_path}/state.db
defaults: {{retries: 0}}
notify:
  on: [failed]
  to: [{{webhook: {{http_conn_id: builds_hook}}}}]
milestones:
  5: {{action: command, command: "true", env: {{RELEASE: "{{release}}"}}}}
  10: {{action: command, command: [./step.sh]}}
  100: {{action: command, command: "true"}}
"""
    folder = tmp_path / "p"
    step = write(folder / "step.sh", "#!/bin/sh\nexit 0\n")
    step.chmod(0o755)

    def tasks(release: str) -> dict[int, Any]:
        spec = load_spec(write(folder / "c.yaml", text.replace("{release}", release)))
        return {t.state: t for t in build_dag(spec, folder).tasks}  # type: ignore[attr-defined]

    night1 = tasks("1")
    for code in (0, 5, 10, 100):
        night1[code].execute(task_context("c-1", night1[code].task_id))
    step.write_text("#!/bin/sh\necho 'the new step broke'\nexit 1\n")
    night2 = tasks("2")
    for code in (0, 5):
        night2[code].execute(task_context("c-2", night2[code].task_id))
    with pytest.raises(Exception, match="exited with status 1"):
        night2[10].execute(task_context("c-2", night2[10].task_id))

    [notice] = [body for _, body in sink.received]
    headline, *lines = notice["changed"]
    assert headline.startswith("what changed since build c-1 (the last delivered, ")
    assert lines == [
        "5 · OS installation started: environment RELEASE changed",
        "10 · Minimal bootable image: file step.sh changed",
    ]
    assert "the new step broke" in notice["error"] and "RELEASE" not in notice["error"]
