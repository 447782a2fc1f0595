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
from airflow_provider_imagebuild.redact import is_secret_key, redact_patterns, redactor_for

CORPUS = Path(__file__).parent / "corpus"

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
    from airflow_provider_imagebuild.redact import redact_exception

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
    from airflow_provider_imagebuild.redact import RedactedError, redact_exception

    api = _raised(Forbidden("image not readable; token=ya29.PLANTEDaccess"))
    outer = _raised(TargetError("capture failed"), api)
    assert redact_exception(outer, redact_patterns) is outer
    stand_in = outer.__cause__
    assert isinstance(stand_in, RedactedError) and str(stand_in) == "Forbidden: 403 image not readable; token=***"
    assert stand_in.__traceback__ is api.__traceback__
    alone = redact_exception(api, redact_patterns)
    assert isinstance(alone, RedactedError) and "PLANTED" not in str(alone)
