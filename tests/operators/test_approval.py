"""The approval milestone in process: the request, the decision as the milestone's attempt, a
rejection that stops the build for good, a clear that asks again, the CLI outside Airflow.

Real: the DAG factory's tasks, the store (SQLite), the webhook notifier posting to a sink on
loopback, the ``imagebuild`` CLI as a subprocess. Airflow's own wait (the task parked in
``awaiting_input``, the respond page, the auth manager's check) needs the scheduler and the API
server: tests/standalone/test_approval_ui.py runs that on the session's ``airflow standalone``.
Here the task's two halves are called as Airflow calls them: ``execute_milestone`` (what
``execute`` does before it hands the wait to Airflow) and ``execute_complete`` with the event
Airflow resumes it with.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_imagebuild.build.approval import awaiting_approval
from airflow_provider_imagebuild.failures import REJECTED, classify
from airflow_provider_imagebuild.spec.pipeline import SpecError, load_spec, parse_spec
from airflow_provider_imagebuild.store import BuildStore, open_store
from tests.dags.conftest import write
from tests.helpers import task_context
from tests.operators.test_notify import Sink, sink  # noqa: F401 - the fixture

SPEC = """pipeline: gated
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
defaults: {{retries: 2, execution_timeout: 600}}
notify:
  to: [{{webhook: {{http_conn_id: builds_hook, endpoint: /hooks/imagebuild}}}}]
milestones:
  10: {{action: command, command: "echo ::output:: boot_green_passed=true"}}
  90: {{action: command, command: "echo '::output:: sbom_summary=412 packages [details](http://evil.example)'"}}
  95: {{action: command, command: "echo ::output:: image_id=/catalog/gated/3/gated.qcow2; \\
    echo ::output:: sbom_file=/catalog/gated/3/gated.cdx.json; \\
    echo '::output:: sbom_kernel=6.1.0 [x](http://evil.example)'"}}
  98: {{action: approval, key: production_approval, title: Production approval, approvers: [admin, role:op]}}
  100: {{action: command, command: "true"}}
"""


def _tasks(tmp_path: Path, text: str = SPEC) -> dict[int, Any]:
    from airflow_provider_imagebuild.dag_factory import build_dag

    spec = load_spec(write(tmp_path / "p/gated.yaml", text.format(tmp=tmp_path)))
    return {t.state: t for t in build_dag(spec).tasks}  # type: ignore[attr-defined]


def _response(option: str, comment: str, user: str | None = "admin") -> dict[str, Any]:
    """The event Airflow resumes a human-in-the-loop task with (models/hitl.py's resume payload)."""
    return {
        "chosen_options": [option],
        "params_input": {"comment": comment},
        "responded_at": datetime.now(timezone.utc),
        "responded_by_user": {"id": user, "name": user} if user else None,
        "timedout": user is None,
    }


@pytest.fixture
def hook(sink: Sink, monkeypatch: pytest.MonkeyPatch) -> Sink:  # noqa: F811
    monkeypatch.setenv("AIRFLOW_CONN_BUILDS_HOOK", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                               "port": sink.port, "schema": "http"}))  # fmt: skip
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,olga:op,vic:viewer")
    return sink


def test_a_rejection_stops_the_build_for_good_and_a_clear_asks_again(tmp_path: Path, hook: Sink) -> None:
    from airflow_provider_imagebuild.operators.approval import ASK

    tasks = _tasks(tmp_path)
    store = open_store(f"sqlite:///{tmp_path}/state.db")

    def ask() -> None:
        assert tasks[98].execute_milestone(task_context("g-1", tasks[98].task_id)) is ASK

    for code in (0, 10, 90, 95):
        tasks[code].execute(task_context("g-1", tasks[code].task_id))
    approval = tasks[98]
    assert approval.execution_timeout is None  # a person's wait is not killed by the spec's defaults
    ask()
    assert awaiting_approval(store.get("g-1"), 98)
    # Airflow's request: who may respond (the role expanded to its users), and what to decide on.
    assert approval.assigned_users == [{"id": "admin", "name": "admin"}, {"id": "olga", "name": "olga"}]
    assert approval.subject == "Approve build g-1 at 98 · Production approval?"
    body = str(approval.body)
    assert "/plugin/image-builds/imagebuild/builds/g-1" in body and "/catalog/gated/3/gated.qcow2" in body
    assert "10: boot_green_passed=true" in body and "| Policy | no policy (the spec has no policy: block) |" in body
    # The seal's bill of materials, formatted with a link to the document; what a command printed
    # is shown as text, never as a link on the page where a person decides (nor 90's raw outputs).
    assert (
        r"| SBOM | an unrecorded number of packages, kernel 6.1.0 \[x\]\(http://evil.example\) (CycloneDX, "
        "milestone 95): [the document](" in body
    )
    assert "/imagebuild/api/builds/g-1/sbom) |" in body and "412" not in body
    assert "Who may respond: admin, role op." in body
    announced = [b for p, b in hook.received if p == "/hooks/imagebuild"]
    assert [b["event"] for b in announced] == ["awaiting_approval"]
    assert announced[0]["milestone"] == 98 and "admin, role op" in announced[0]["detail"]

    with pytest.raises(AirflowFailException) as rejected:
        approval.execute_complete(task_context("g-1", approval.task_id), _response("Reject", "ssh banner\nis wrong"))
    assert str(rejected.value) == "approval rejected by admin (airflow): ssh banner is wrong"
    rec = store.get("g-1")
    (attempt,) = rec.attempts_at(98)
    assert (rec.current_state, rec.status, attempt.status, attempt.owner) == (98, "failed", "failed", "admin (airflow)")
    assert attempt.error and "ssh banner is wrong" in attempt.error and attempt.finished_at
    failure = classify(attempt.error)
    assert failure is not None and failure.row.kind == REJECTED and failure.persistent
    assert awaiting_approval(rec, 98) is None
    # A late second response (another browser tab) changes nothing.
    with pytest.raises(AirflowFailException, match="rejected by admin"):
        approval.execute_complete(task_context("g-1", approval.task_id), _response("Approve", "ok"))
    assert len(store.get("g-1").attempts_at(98)) == 1

    ask()  # the clear: a new request, a new attempt
    outputs = approval.execute_complete(task_context("g-1", approval.task_id), _response("Approve", "banner fixed"))
    assert outputs["approval"] == "approved" and outputs["decided_by"] == "admin (airflow)"
    assert outputs["comment"] == "banner fixed"
    rec = store.get("g-1")
    assert [a.status for a in rec.attempts_at(98)] == ["failed", "completed"] and rec.next_state == 100
    assert tasks[98].execute_milestone(task_context("g-1", approval.task_id)) == outputs  # skipped once decided
    tasks[100].execute(task_context("g-1", tasks[100].task_id))
    assert store.get("g-1").delivered
    # The next build's request says what changed since that delivered build (its fingerprints).
    for code in (0, 10, 90, 95):
        tasks[code].execute(task_context("g-2", tasks[code].task_id))
    tasks[98].execute_milestone(task_context("g-2", tasks[98].task_id))
    body = str(tasks[98].body)
    assert r"| What changed | what changed since build g-1 \(the last delivered, " in body, body
    # The seal's documents are not on this machine: the package changes are unknown, not a failure.
    assert "\n- 95 · Image sealed and captured: packages unknown: a bill of materials is on another worker" in body
    assert [b["event"] for p, b in hook.received if p == "/hooks/imagebuild"] == [
        "awaiting_approval", "retries_exhausted", "awaiting_approval", "awaiting_approval"]  # fmt: skip


@pytest.mark.parametrize(("on_timeout", "error"), [
    ("fail", "approval not given within 1:00:00 (on_timeout: fail)"),
    ("reject", "approval rejected by timeout (on_timeout: reject): no decision within 1:00:00"),
])  # fmt: skip
def test_a_timeout_fails_or_rejects_as_the_spec_says(tmp_path: Path, on_timeout: str, error: str) -> None:
    text = SPEC.replace("approvers: [admin, role:op]", f"approvers: [admin], timeout: 1h, on_timeout: {on_timeout}")
    tasks = _tasks(tmp_path, text.replace("notify:\n  to: [{{webhook: {{http_conn_id: builds_hook, "
                                          "endpoint: /hooks/imagebuild}}}}]\n", ""))  # fmt: skip
    for code in (0, 10, 90, 95):
        tasks[code].execute(task_context("t-1", tasks[code].task_id))
    approval = tasks[98]
    approval.execute_milestone(task_context("t-1", approval.task_id))
    assert approval.response_timeout.total_seconds() == 3600
    assert approval.defaults == (["Reject"] if on_timeout == "reject" else None)
    # The scheduler's sweep: the defaults as a response without a user, or an error event without them.
    event = (_response("Reject", "", user=None) if on_timeout == "reject"
             else {"error": "The Human-in-the-loop response timeout has passed", "error_type": "timeout"})  # fmt: skip
    with pytest.raises(AirflowFailException) as stopped:
        approval.execute_complete(task_context("t-1", approval.task_id), event)
    assert str(stopped.value).startswith(error)
    last = open_store(f"sqlite:///{tmp_path}/state.db").get("t-1").attempts_at(98)[-1]
    assert last.status == "failed" and str(last.error).startswith(error)
    failure = classify(str(last.error))
    assert failure is not None and failure.persistent


@pytest.mark.parametrize(("milestone", "reason"), [
    ({"action": "approval"}, "action 'approval' needs 'approvers'"),
    ({"action": "approval", "approvers": ["al ice"]}, "'al ice' is not an approver"),
    ({"action": "approval", "approvers": ["admin"], "on_timeout": "reject"}, "'on_timeout' needs 'timeout'"),
    ({"action": "approval", "approvers": ["admin"], "on_timeout": "wait"}, "on_timeout"),
    ({"action": "command", "command": "true", "approvers": ["admin"]}, "'approvers' needs action: approval"),
])  # fmt: skip
def test_bad_approval_keys_are_one_line_naming_the_milestone(milestone: dict[str, Any], reason: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(
            {"pipeline": "g", "cloud": "local", "image_type": "t", "milestones": {98: {"key": "ok", **milestone}}}
        )
    text = str(info.value)
    assert "milestones.98" in text and reason in text and "\n" not in text


def test_an_approval_cannot_be_skipped_around() -> None:
    from airflow_provider_imagebuild.plan import plan_from_spec

    spec = parse_spec({"pipeline": "g", "cloud": "local", "image_type": "t",
                       "milestones": {98: {"action": "approval", "key": "ok", "approvers": ["admin"]}}})  # fmt: skip
    assert 98 in plan_from_spec(spec).unskippable


# -- outside Airflow ------------------------------------------------------------------------------
def _cli(url: str, home: Path, *args: str) -> tuple[int, str]:
    """``imagebuild --store URL build ARGS``: the CLI's own code, in process (a subprocess per call
    would cost a second of imports each)."""
    from click.testing import CliRunner

    from airflow_provider_imagebuild.cli.main import cli

    got = CliRunner().invoke(cli, ["--store", url, "build", *args], env={"HOME": str(home)})
    return got.exit_code, got.output.strip()


def _waiting_build(tmp_path: Path) -> tuple[str, BuildStore]:
    from airflow_provider_imagebuild.approvals import request_approval

    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    store.init()
    store.create_build("c-1", pipeline="p", cloud="local", image_type="t", plan=[0, 5, 98, 100])
    lease = store.begin("c-1", 5, owner="step")
    store.complete("c-1", 5, token=lease.token, outputs={})
    request_approval(store, "c-1", 98, actor="concourse/p/m098/try-1")
    return url, store


def test_approve_and_reject_from_the_cli_and_should_run_says_it_waits(tmp_path: Path) -> None:
    url, store = _waiting_build(tmp_path)
    code, text = _cli(url, tmp_path, "should-run", "c-1", "98")
    assert code == 11 and "waits for an approval" in text and "imagebuild build approve|reject c-1 98" in text
    code, text = _cli(url, tmp_path, "should-run", "c-1", "98", "--json")
    assert code == 11 and json.loads(text)["verdict"] == "awaiting_approval"
    code, text = _cli(url, tmp_path, "show", "c-1")
    assert code == 0 and "# waits for an approval at 98" in text and "build approve|reject c-1 98" in text
    waiting = json.loads(_cli(url, tmp_path, "show", "c-1", "--json")[1])["awaiting_approval"]
    assert waiting["milestone"] == 98 and waiting["since"].endswith("Z")
    before = store.get("c-1").version
    assert _cli(url, tmp_path, "approve", "c-1", "98", "--reason", " ")[0] == 2
    code, text = _cli(url, tmp_path, "approve", "c-1", "5", "--reason", "looks fine")
    assert code == 3 and "already completed" in text and "\n" not in text  # approve is no back door to a milestone
    assert store.get("c-1").version == before

    code, text = _cli(url, tmp_path, "reject", "c-1", "98", "--reason", "CVE-2026-1234\x1b[31m unpatched\x00")
    assert code == 0 and text == "milestone 98 · milestone 98 of c-1 rejected; the build stopped at 98"
    rec = store.get("c-1")
    (attempt,) = rec.attempts_at(98)
    assert (
        attempt.owner.startswith("cli:")
        and attempt.error == f"approval rejected by {attempt.owner}: CVE-2026-1234[31m unpatched"  # no escape, no NUL
    )
    assert _cli(url, tmp_path, "should-run", "c-1", "98")[0] == 0  # no longer waiting: the step asks again
    assert json.loads(_cli(url, tmp_path, "show", "c-1", "--json")[1])["awaiting_approval"] is None
    code, text = _cli(url, tmp_path, "approve", "c-1", "98", "--reason", "late")
    assert code == 3 and "was decided since it asked" in text

    from airflow_provider_imagebuild.approvals import request_approval

    request_approval(store, "c-1", 98, actor="concourse/p/m098/try-2")  # the job re-run asks again
    code, text = _cli(url, tmp_path, "approve", "c-1", "98", "--reason", "patched in the mirror", "--json")
    assert code == 0 and json.loads(text)["milestones"]["98"]["outputs"]["comment"] == "patched in the mirror"
    assert _cli(url, tmp_path, "should-run", "c-1", "98")[0] == 10


GATED_JOB = """pipeline: gated
cloud: local
image_type: base
store: sqlite:///{tmp}/state.db
defaults: {{retries: 0, lease_seconds: 30, execution_timeout: 600}}
milestones:
  5: {{action: command, command: "echo 5 >> {tmp}/marks"}}
  50: {{action: approval, key: release_approval, approvers: [ops], timeout: 1h}}
  100: {{action: command, command: "echo 100 >> {tmp}/marks"}}
"""


def test_a_concourse_step_waits_for_the_cli_decision(tmp_path: Path) -> None:
    """The rendered job's approval step (its gate script and ``imagebuild milestone run``, through
    the runner as Concourse runs a task) records the request and waits; ``build approve`` lets it
    end green; a rejection ends the wait with its reason. The milestones before it run in process:
    what is tested is the step."""
    import threading

    import jsonschema

    from airflow_provider_imagebuild.approvals import decide, request_approval
    from airflow_provider_imagebuild.concourse.render import render_pipeline
    from airflow_provider_imagebuild.dag_factory import build_dag
    from tests.concourse.runner import Runner
    from tests.concourse.test_concourse import SCHEMA

    spec_path = write(tmp_path / "repo/pipelines/gated.yaml", GATED_JOB.format(tmp=tmp_path))
    config = render_pipeline(load_spec(spec_path), spec_path, tmp_path / "repo")
    jsonschema.validate(config, SCHEMA)
    step = next(s for s in config["jobs"][0]["plan"] if s.get("task") == "m050-release-approval")
    assert step["timeout"] == "3660s"  # the approval's hour and a minute, not the defaults' execution timeout
    url = f"sqlite:///{tmp_path}/state.db"
    store = open_store(url)
    tasks = {t.state: t for t in build_dag(load_spec(spec_path)).tasks}  # type: ignore[attr-defined]
    for build_id in ("cg-1", "cg-2"):
        for code in (0, 5):
            tasks[code].execute(task_context(build_id, tasks[code].task_id))

    variables = {"build_id": "cg-1", "imagebuild_image": "x", "imagebuild_tag": "y", "source_uri": "u",
                 "source_branch": "main", "source_key": "k", "imagebuild_store": url}  # fmt: skip
    runner = Runner(config, tmp_path / "repo", variables, env={"IMAGEBUILD_APPROVAL_POLL_SECONDS": "0.2"})
    runner.run_step({"get": "source"})
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(ok=runner.run_step(step)), daemon=True)
    thread.start()
    for _ in range(600):
        if awaiting_approval(store.get("cg-1"), 50):
            break
        __import__("time").sleep(0.1)
    code, text = _cli(url, tmp_path, "should-run", "cg-1", "50")
    assert code == 11, text
    assert _cli(url, tmp_path, "approve", "cg-1", "50", "--reason", "release notes reviewed")[0] == 0
    thread.join(60)
    assert result.get("ok") is True, [(r.name, r.status, r.output[-400:]) for r in runner.results]
    rec = store.get("cg-1")
    assert rec.next_state == 100 and rec.milestones[50].outputs["comment"] == "release notes reviewed"

    # The step's wait ends on a rejection too, with the reason.
    request_approval(store, "cg-2", 50, actor="concourse/gated/m050/try-1")
    decide(store, "cg-2", 50, approve=False, decided_by="cli:bob", comment="wrong kernel")
    with pytest.raises(AirflowFailException, match="approval rejected by cli:bob: wrong kernel"):
        tasks[50]._wait_in_store(store, "cg-2")


def test_roles_are_expanded_only_where_the_auth_manager_lists_its_users(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_imagebuild.errors import InvalidInput
    from airflow_provider_imagebuild.operators.approval import assigned_users
    from airflow_provider_imagebuild.spec.approval import Approvers

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,olga:op,oscar:OP,vic:viewer")
    who = Approvers.of(["olga", "user:admin", "role:op", "admin"])
    assert [u["id"] for u in assigned_users(who)] == ["olga", "admin", "oscar"]  # once each, the role's case ignored
    with pytest.raises(InvalidInput, match="approvers: nobody holds the roles auditor"):
        assigned_users(Approvers.of(["role:auditor"]))
    base = "airflow.api_fastapi.auth.managers.base_auth_manager.BaseAuthManager"
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", base)  # an auth manager that does not list its users
    with pytest.raises(InvalidInput, match=r"roles \(op\) need an auth manager that lists its users"):
        assigned_users(Approvers.of(["bob", "role:op"]))
    assert assigned_users(Approvers.of(["bob"])) == [{"id": "bob", "name": "bob"}]


def test_a_waiting_step_rejects_on_its_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside Airflow the step keeps the spec's timeout itself (``on_timeout: reject`` here)."""
    from airflow_provider_imagebuild.approvals import request_approval

    monkeypatch.setenv("IMAGEBUILD_APPROVAL_POLL_SECONDS", "0.1")
    text = GATED_JOB.replace("timeout: 1h}", "timeout: 0.3, on_timeout: reject}")
    from airflow_provider_imagebuild.dag_factory import build_dag

    tasks = {t.state: t for t in build_dag(load_spec(write(tmp_path / "p/g.yaml", text.format(tmp=tmp_path)))).tasks}  # type: ignore[attr-defined]
    for code in (0, 5):
        tasks[code].execute(task_context("w-1", tasks[code].task_id))
    store = open_store(f"sqlite:///{tmp_path}/state.db")
    request_approval(store, "w-1", 50, actor="concourse/gated/m050/try-1")
    with pytest.raises(AirflowFailException, match=r"approval rejected by timeout \(on_timeout: reject\)"):
        tasks[50]._wait_in_store(store, "w-1")
    last = store.get("w-1").attempts_at(50)[-1]
    assert last.status == "failed" and last.owner == "timeout (on_timeout: reject)"


def test_a_responders_name_is_kept_to_what_the_record_takes(tmp_path: Path) -> None:
    """An auth manager's user name with a terminal escape, or longer than an owner may be: the
    decision is recorded (in a name cut to size), not lost to the store's refusal."""
    text = SPEC.replace(
        "notify:\n  to: [{{webhook: {{http_conn_id: builds_hook, endpoint: /hooks/imagebuild}}}}]\n", ""
    )
    tasks = _tasks(tmp_path, text)
    for code in (0, 10, 90, 95):
        tasks[code].execute(task_context("n-1", tasks[code].task_id))
    tasks[98].execute_milestone(task_context("n-1", tasks[98].task_id))
    outputs = tasks[98].execute_complete(
        task_context("n-1", tasks[98].task_id), _response("Approve", "ok", user="eve\x1b[2J" + "x" * 400)
    )
    assert outputs["decided_by"] == "eve[2J" + "x" * 194 + " (airflow)"
    assert open_store(f"sqlite:///{tmp_path}/state.db").get("n-1").next_state == 100


def test_the_request_shows_the_sbom_summary_and_the_policy_result(tmp_path: Path) -> None:
    """#33: what milestone 90's policy gate and the seal recorded, formatted for the person who
    decides (the package count, the kernel, a link to the document; passed or no policy), and the
    package changes since the last delivered build below the table, each on its own line."""
    from airflow_provider_imagebuild.build.approval import request_body
    from airflow_provider_imagebuild.links import sbom_api
    from airflow_provider_imagebuild.sbom.stored import sbom_summary

    store = open_store(f"sqlite:///{tmp_path}/state.db")
    store.create_build("g-1", pipeline="gated", cloud="local", image_type="base", plan=[0, 90, 95, 98, 100])
    gate = {"policy_passed": True, "policy_packages": 412, "packages_sha256": "b" * 64}
    seal = {"sbom_file": "/w/g-1.cdx.json", "sbom_sha256": "a" * 64, "sbom_packages": 412, "sbom_kernel": "6.1.0-28"}
    for code, outputs in ((90, gate), (95, seal)):
        store.complete("g-1", code, token=store.begin("g-1", code, owner="w").token, outputs=outputs)
    rec = store.get("g-1")
    package = "95 · Seal: package openssl 3.0.20-1~deb12u2 -> 3.0.21-1~deb12u1; package nginx 1.22.1 removed"
    changed = ["what changed since build g-0 (the last delivered, 2026-12-01T02:00:00Z):", package]
    link = sbom_api("g-1", "https://airflow.example")

    def body(code: int) -> str:
        return request_body(rec, code, "/b/g-1", "admin", "", changed, sbom_summary(rec), link)

    text = body(98)
    assert (
        "| SBOM | 412 packages, kernel 6.1.0-28 (CycloneDX, milestone 95): "
        "[the document](https://airflow.example/imagebuild/api/builds/g-1/sbom) |"
    ) in text
    assert "| Policy | passed (412 packages checked) |" in text and "packages_sha256" not in text
    assert r"| What changed | what changed since build g-0 \(the last delivered, 2026-12-01T02:00:00Z\): |" in text
    # One line per milestone below the table, Markdown-escaped as every recorded value is.
    assert "\n- " + package.replace("~", r"\~").replace(">", r"\>") + "\n" in text
    # Asked at the seal itself (or before it): the document is not written yet.
    assert "| SBOM | none before this milestone (the seal, 95, writes it) |" in body(95)
