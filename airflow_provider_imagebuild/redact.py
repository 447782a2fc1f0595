"""Redaction of secrets before text is stored, logged or printed.

Error text from Packer, Ansible or a shell command routinely carries credentials (an AWS key in
an environment dump, ``password=...`` in a connection string, a bearer token in a curl trace).
The store keeps history forever, so everything is redacted *before* it is written. Callers that
know more secrets (Airflow's masked values) pass an extra redactor; the patterns here catch what
looks like a secret even when nobody registered it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

REDACTED = "***"

Redactor = Callable[[str], str]

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys (RSA, EC, OPENSSH, PKCS#8, encrypted...), possibly cut off at the end.
    (
        re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL),
        f"-----BEGIN PRIVATE KEY-----{REDACTED}-----END PRIVATE KEY-----",
    ),
    # AWS access key ids.
    (re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA|ANPA|AIPA)[A-Z0-9]{16}\b"), REDACTED),
    # Authorization headers and bearer/basic tokens.
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    # URL credentials: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://[^/\s:@]{1,256}):[^@\s/]{1,256}@"), rf"\1:{REDACTED}@"),
    # 40-character AWS secret access keys standing alone.
    # (mixed case and digits, so that hex digests such as git commit ids stay readable).
    (
        re.compile(
            r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
            r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
        ),
        REDACTED,
    ),
)


# key=value / key: value / "key": "value". The key is matched as a whole word of bounded length
# (and checked for a secret-looking name afterwards) so that long runs of text stay linear-time.
_ASSIGNMENT = re.compile(
    r"""(?<![A-Za-z0-9_.-])(["']?)([A-Za-z0-9_.-]{1,64})\1(\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&"'}]+)"""
)
_SECRET_KEY = re.compile(
    r"(?i)password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential|"
    r"session[_-]?key|authorization|auth[_-]?token"
)


def _assignment(match: re.Match[str]) -> str:
    quote, key, sep, _value = match.groups()
    if not _SECRET_KEY.search(key):
        return match.group(0)
    return f"{quote}{key}{quote}{sep}{REDACTED}"


def redact_patterns(text: str) -> str:
    """Replace anything that looks like a secret in ``text``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _ASSIGNMENT.sub(_assignment, text)


def redactor_for(known_secrets: Iterable[str] = (), extra: Redactor | None = None) -> Redactor:
    """A redactor that hides ``known_secrets`` verbatim, applies ``extra`` and then the patterns."""
    secrets = sorted({s for s in known_secrets if s and len(s) >= 4}, key=len, reverse=True)

    def _redact(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        if extra is not None:
            text = extra(text)
        return redact_patterns(text)

    return _redact


def redact_value(value: object, redactor: Redactor) -> object:
    """Redact every string inside a JSON-like value (outputs, metadata)."""
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, dict):
        return {k: redact_value(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, redactor) for v in value]
    return value
