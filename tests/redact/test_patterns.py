"""The redactor against real tool output with secrets planted in it (Packer, Ansible, the AWS CLI,
curl -v, shell traces), and against the product's own messages, which must stay readable.

Each corpus file in ``tests/corpus/`` is output in the shape the tool prints it; ``SECRETS`` lists
what was planted and must be gone after redaction, ``KEPT`` what must survive (ids, codes, the
words an operator needs to understand what failed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.redact.patterns import is_secret_key, redact_patterns, redactor_for

CORPUS = Path(__file__).parents[1] / "corpus"

SECRETS = {
    "packer.log": [
        "AKIAZ3MSJV4WWNPLANTD",
        "Zq8vQmW2nE5rT7yU1iO3pA6sD9fG0hJ4kL7zX2cV",
        "Tr0ub4dor-and-3",
        "azSecr3t~Q8Z.vK_planted-value",
    ],
    "ansible.log": [
        "Ansibl3-DbPass!",
        "M1rr0r-Pa55",
        "kX9-PLANTED-apikey-2f4e",
        "J01n-Dom@in-pw",
        "hvs.CAESIPLANTEDvaulttokenAbCdEf123456",
        "Junk-Aft3r-Json",
    ],
    "awscli.txt": [
        "ASIAZ3MSJV4WWPLANTED",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYPLANTEDKEY",
        "FwoGZXIvYXdzEPLANTEDsessiontoken",
        "AKIAZ3MSJV4WWENVPLNT",
        "Env/Secr3tKeyPLANTED0123456789abcdefGHIJ",
        "IQoJb3JpZ2luX2VjEPLANTEDenvtoken",
    ],
    "curl-v.txt": [
        "ZGVwbG95OkN1cmwtQmFzaWMtUGFzcw==",
        "hvs.CurlPLANTEDvaulttoken999",
        "CurlPLANTEDcookie42",
        "UExBTlRFRHNpZw",
        "Curl-U-Passw0rd",
        "ghs_PLANTEDgithubAppToken1234567890abcd",
    ],
    "shell.txt": [
        "Sh3ll-Exp0rt-pw",
        "Pg-Url-Secr3t",
        "hunter2-planted",
        "hunter3-planted",
        "tok-Flag-Planted-77",
        "Quoted Pass Planted",
        "PgPassw0rdPlanted",
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq",
        "SasPLANTEDsig",
        "xoxb-123456789012-PLANTEDslackbot",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
        "QyNTUxOQAAACBQTEFOVEVE",
        "Sql-Identified-Planted",
    ],
}
KEPT = {
    "packer.log": ["ami-0583d8c7a9c35822c", "i-0a1b2c3d4e5f67890", "AuthFailure", "ec2.us-east-1.amazonaws.com"],
    "ansible.log": ["TASK [Configure database client]", "ERROR 1045 (28000)", "HTTP Error 401", "failed=1", "ok=3"],
    "awscli.txt": ["InvalidClientTokenId", "2026-11-27T03:00:00+00:00", "us-east-1", "security token included"],
    "curl-v.txt": ["HTTP/1.1 403 Forbidden", "user 'deploy'", "vault.example.internal", "permission denied"],
    "shell.txt": ["password authentication failed", "db.internal:5432", "SHOW DATABASES", "AccountName=imagebuild"],
}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_planted_secrets_are_gone_and_the_story_stays(name: str) -> None:
    text = (CORPUS / name).read_text()
    for secret in SECRETS[name]:
        assert secret in text, f"the corpus lost its planted secret {secret}"
    redacted = redact_patterns(text)
    leaks = [secret for secret in SECRETS[name] if secret in redacted]
    assert not leaks, f"{name} leaks {leaks}:\n{redacted}"
    lost = [kept for kept in KEPT[name] if kept not in redacted]
    assert not lost, f"{name} lost {lost}:\n{redacted}"
    # line by line (as the task log sees it) hides the same, but for a private key's body lines:
    # the task log hides those by following BEGIN/END across lines (operators/base.py)
    lines = text.splitlines()
    by_line = "\n".join(redact_patterns(line) for line in lines)
    key_body, inside = [], False
    for line in lines:
        inside = ("BEGIN" in line or inside) and "END" not in line
        if inside and "BEGIN" not in line:
            key_body.append(line)
    assert not [s for s in SECRETS[name] if s in by_line and not any(s in line for line in key_body)]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("error: password=hunter2", "hunter2"),  # a non-secret key before it no longer hides it
        ("[ERROR] db: password=hunter2", "hunter2"),
        ("WARN x: y: token: abc123def", "abc123def"),
        ('{"msg": "failed", "client_secret": "a\\"b"}', 'a\\"b'),
        ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
        ("--password hunter2", "hunter2"),
        ('["mysql", "--password", "hunter2"]', "hunter2"),
        ("password: changeme", "changeme"),
        ("https://u:p4ss@host/x", "p4ss"),
    ],
)
def test_secrets_behind_prefixes_and_in_each_syntax(text: str, secret: str) -> None:
    assert secret not in redact_patterns(text), redact_patterns(text)


@pytest.mark.parametrize(
    "message",
    [
        str(InvalidInput("token", "must not be empty")),
        str(InvalidInput("outputs.db_password", "looks like a secret; outputs and metadata are stored in clear")),
        str(InvalidInput("password", "is required")),
        "lease token 0a1b2c3d... does not hold build b-1",
        "basic configuration applied",
        "ok=3 changed=1 unreachable=0 failed=0 skipped=0",
        "ssh_private_key_file=/root/.ssh/build_key token_url=https://sts.example/token",
    ],
)
def test_the_products_own_messages_stay_readable(message: str) -> None:
    assert redact_patterns(message) == message


def test_secret_key_rule() -> None:
    secret = ["password", "DB_PASSWORD", "PGPASSWORD", "aws_secret_access_key", "awsSecretAccessKey", "x-api-key"]
    secret += ["client_secret", "AccountKey", "SessionToken", "auth", "vault-token", "secret_id", "db_pass"]
    plain = ["image_id", "checkpoint_image", "host_address", "token_url", "ssh_private_key_file", "key_name"]
    plain += ["image_sha256", "passed", "password_policy", "catalog_entry", "ansible_ok"]
    assert [k for k in secret if not is_secret_key(k)] == []
    assert [k for k in plain if is_secret_key(k)] == []


def test_known_secrets_and_extra_redactor() -> None:
    redact = redactor_for(["vault-value-1234"], extra=lambda t: t.replace("EXTRA", "***"))
    assert redact("got vault-value-1234 and EXTRA") == "got *** and ***"


def _raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    """``exc`` as ``raise exc from cause`` leaves it: with a traceback and its chain."""
    try:
        raise exc from cause
    except BaseException as caught:
        return caught


def test_an_exception_and_its_causes_are_redacted_in_place() -> None:
    """What a failed milestone raises quotes tool output and cloud answers: the message of the
    exception and of each cause is cleaned, its type, attributes and traceback are kept (Airflow's
    retry policy and the CLI's exit codes read them)."""
    from botocore.exceptions import ClientError

    from airflow_provider_imagebuild.errors import Conflict, TargetError
    from airflow_provider_imagebuild.redact.patterns import redact_exception

    body = {"Error": {"Code": "AuthFailure", "Message": "bad aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCY"}}
    cloud = _raised(ClientError(body, "RunInstances"))  # type: ignore[arg-type]
    outer = _raised(TargetError(f"launch failed: {cloud}; db password=hunter2hunter2"), cloud)
    traceback = outer.__traceback__
    assert redact_exception(outer, redact_patterns) is outer
    assert str(outer) == "launch failed: An error occurred (AuthFailure) when calling the RunInstances operation: "\
        "bad aws_secret_access_key=***; db password=***"  # fmt: skip
    assert outer.__cause__ is cloud and "wJalrXUtnFEMI" not in str(cloud) and "AuthFailure" in str(cloud)
    assert outer.__suppress_context__ and outer.__traceback__ is traceback
    assert isinstance(outer, TargetError) and outer.exit_code == 6
    held = Conflict("lease held", holder="dag/run/task/try-1")
    assert redact_exception(held, redact_patterns) is held and held.holder == "dag/run/task/try-1"  # nothing to hide


def test_an_exception_whose_text_ignores_its_args_is_stood_in_for() -> None:
    """Google's API errors build their text from attributes of their own: such an exception (here
    the cause of a target's error) is replaced by a stand-in naming its type, with its traceback."""
    from google.api_core.exceptions import Forbidden

    from airflow_provider_imagebuild.errors import TargetError
    from airflow_provider_imagebuild.redact.patterns import RedactedError, redact_exception

    api = _raised(Forbidden("image not readable; token=ya29.PLANTEDaccess"))
    outer = _raised(TargetError("capture failed"), api)
    assert redact_exception(outer, redact_patterns) is outer
    stand_in = outer.__cause__
    assert isinstance(stand_in, RedactedError) and str(stand_in) == "Forbidden: 403 image not readable; token=***"
    assert stand_in.__traceback__ is api.__traceback__
    alone = redact_exception(api, redact_patterns)
    assert isinstance(alone, RedactedError) and "PLANTED" not in str(alone)


# -- values of every shape: the whole value goes, the text around it stays ---------------------------
@pytest.mark.parametrize(
    ("text", "secrets", "kept"),
    [
        ("{'aws_secret_access_key': ['x']}", ["'x'"], ["{'aws_secret_access_key': "]),
        ("{'password': ['a1', 'b2'], 'user': 'bob'}", ["a1", "b2"], ["'user': 'bob'}"]),
        ('{"password": ["a1", "b2"], "user": "bob"}', ["a1", "b2"], ['"user": "bob"}']),
        ("{'tokens': [['a1', 'b2'], ['c3']], 'ok': 1}", ["a1", "b2", "c3"], ["'ok': 1}"]),
        ("{'secrets': [{'value': 'x1y2'}], 'ok': 1}", ["x1y2", "value"], ["'ok': 1}"]),
        ("{'credentials': {'user': 'u9', 'pw': 'p4ss'}, 'ok': 1}", ["u9", "p4ss"], ["'ok': 1}"]),
        (  # a secret's mapping keeps what describes it
            '{"Credentials": {"AccessKeyId": "x1", "Pw": "p4", "Expiration": "2026-11-27T03:00:00Z"}}',
            ["x1", "p4"],
            ['"Expiration": "2026-11-27T03:00:00Z"'],
        ),
        ("{'password': ('a1', 'b2'), 'ok': 1}", ["a1", "b2"], ["'ok': 1}"]),
        ("{'password': ['a]1', 'b)2}'], 'ok': 1}", ["a]1", "b)2"], ["'ok': 1}"]),  # brackets inside quotes
        ("{'password': [\"it's\", 'say \"hi\"'], 'ok': 1}", ["it's", "hi"], ["'ok': 1}"]),
        ('{"password": [\n  "a1",\n  "b2"\n], "ok": 1}', ["a1", "b2"], ['"ok": 1}']),  # pretty-printed JSON
        ("{password: [a1, b2], user: bob}", ["a1", "b2"], ["user: bob}"]),  # YAML flow style
        ("{password: {x: a1}, user: bob}", ["a1"], ["user: bob}"]),
        ("password: [a1, b2]\nuser: bob", ["a1", "b2"], ["user: bob"]),
        ("password=[a1, b2] user=bob", ["a1", "b2"], ["user=bob"]),
        ("password=(a1 b2) user=bob", ["a1", "b2"], ["user=bob"]),  # a shell array
        ("{'password': 'it\\'s s3cret', 'ok': 1}", ["s3cret"], ["'ok': 1}"]),  # repr of both quote kinds
        ('{"password": "say \\"h1\\" now", "ok": 1}', ["h1", "now"], ['"ok": 1}']),
        ("{'password': b'by7es', 'token': u'un1code', 'ok': 1}", ["by7es", "un1code"], ["'ok': 1}"]),
        ('{"msg": "{\\"password\\": \\"x y z\\"}", "ok": 1}', ["x y z"], ['"ok": 1}']),  # JSON inside JSON
        ('{"msg": "{\\"password\\": [\\"a1\\", \\"b2\\"]}", "ok": 1}', ["a1", "b2"], ['"ok": 1}']),
        ("password='hello world 1' user=bob", ["hello", "world"], ["user=bob"]),
        ('export PASSWORD="hello world 1"; echo ok', ["hello", "world"], ["; echo ok"]),
        ("PASSWORD=hello\\ w0rld echo=ok", ["hello", "w0rld"], ["echo=ok"]),  # a shell's escaped space
        ("token='abc'd3f echo=ok", ["abc", "d3f"], ["echo=ok"]),  # a shell's 'abc'd3f is one word
        ("{'password': {1: 's3cret'}, 'ok': 1}", ["s3cret"], ["'ok': 1}"]),  # not key: value entries
        ("password = correct horse battery staple", ["correct", "horse", "battery", "staple"], ["password"]),
        ("db_password: correct horse battery staple", ["correct", "horse", "battery", "staple"], ["db_password"]),
    ],
)
def test_a_secret_value_is_hidden_whole_whatever_its_shape(text: str, secrets: list[str], kept: list[str]) -> None:
    redacted = redact_patterns(text)
    assert [s for s in secrets if s in redacted] == [], redacted
    assert [k for k in kept if k not in redacted] == [], redacted


# -- key: value lines: which hold a secret, which are a sentence --------------------------------------
@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("password: hunter2", "hunter2"),
        ("token: abc", "abc"),
        ("credentials: AKIAZ3MSJV4WWNPLANTD", "AKIAZ3MSJV4WWNPLANTD"),
        ("credentials: myuser mypassword", "mypassword"),
        ("credentials: S3cr3tValue", "S3cr3tValue"),
        ("token: abc123def expired at 10:00", "abc123def"),
        ("token: letmein", "letmein"),
        ("secret: letmein for root", "letmein"),
        ("Password: hunter2 and more", "hunter2"),
        ("password: letmein for root", "letmein"),
        ("pass: hunter2", "hunter2"),
        ("auth: dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("client_secret: two words", "words"),
        ("vault token: s.PLANTED9token", "s.PLANTED9token"),
        ("(using password: YES)", "YES"),
        ("user: bob password: hunter2 host: db", "hunter2"),
        ("'password': hunter2", "hunter2"),
        ("PASSWORD = hunter2 # the db one", "hunter2"),
    ],
)
def test_a_key_value_that_holds_a_secret_is_redacted(text: str, secret: str) -> None:
    redacted = redact_patterns(text)
    assert secret not in redacted, redacted
    assert redacted.split(":")[0] == text.split(":")[0] or "=" in text, redacted  # the key stays readable


@pytest.mark.parametrize(
    "text",
    [
        "credentials: S3 bucket missing",
        "credentials: Azure subscription not found",
        "token: EC2 metadata service did not answer",
        "Missing credentials: the AWS profile is not set",
        "secrets: vault path is empty",
        "auth: Kerberos ticket has expired",
        "token: must not be empty",
        "password: is required",
        "user: bob host: db.internal",
        "password authentication failed for user 'deploy'",
        "ssh_private_key_file: /root/.ssh/id_ed25519",
    ],
)
def test_prose_after_a_secret_word_stays_as_it_is(text: str) -> None:
    assert redact_patterns(text) == text


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("must look like SCHEME://..., got 'admin:Pw-PLANTED-9x@host/x'", "Pw-PLANTED-9x", "admin:"),
        ("got admin:Pw-PLANTED-9x@127.0.0.1:9", "Pw-PLANTED-9x", "@127.0.0.1:9"),
        ("got 's3:/admin:Pw-PLANTED-9x@host'", "Pw-PLANTED-9x", "@host"),
        ("got admin:p@ss-PLANTED@host", "ss-PLANTED", "@host"),  # the userinfo ends at the last '@'
        ("https://admin:p@ss-PLANTED@host/x", "ss-PLANTED", "@host/x"),
    ],
)
def test_user_password_at_host_holds_a_password_with_or_without_a_scheme(text: str, secret: str, kept: str) -> None:
    redacted = redact_patterns(text)
    assert secret not in redacted and kept in redacted, redacted


@pytest.mark.parametrize(
    "text",
    ["git@github.com:acme/images.git", "ssh root@10.0.0.7", "Access denied for user 'app'@'localhost'"],
)
def test_an_address_without_a_password_stays(text: str) -> None:
    assert redact_patterns(text) == text


def test_the_working_directory_is_not_a_secret() -> None:
    """``PWD`` looks like a password's name but is the shell's working directory: the CLI's
    redactor must not hide every path below it, while a real ``DB_PWD`` stays hidden."""
    from airflow_provider_imagebuild.redact.shell import shell_redactor

    redact = shell_redactor(environ={"PWD": "/srv/golden", "OLDPWD": "/srv", "DB_PWD": "hunter2-db"}, argv=[])
    text = "/srv/golden/dags/pipelines/web.yaml: milestones.45: unknown action (db password hunter2-db)"
    assert redact(text) == "/srv/golden/dags/pipelines/web.yaml: milestones.45: unknown action (db password ***)"
