"""Redaction of secrets before text is stored, logged or printed, and the one rule of what a
secret-looking key is.

Error text from Packer, Ansible or a shell command routinely carries credentials (an AWS key in
an environment dump, ``password=...`` in a connection string, a bearer token in a curl trace).
The store keeps history forever, so everything is redacted *before* it is written. Callers that
know more secrets (Airflow's masked values) pass an extra redactor; the rules here catch what
looks like a secret even when nobody registered it.

The text is tokenised rather than matched with one pattern: every ``key=value``, ``key: value``,
``"key": "value"`` and ``--flag value`` is found on its own (a key that is not secret consumes
only itself, so ``error: password=x`` still finds ``password``), the value's extent follows its
quoting, HTTP credential headers lose the rest of their line, URLs lose their userinfo password,
PEM private keys lose their body, and well-known token formats (AWS, GitHub, Slack, JWT...) are
replaced wherever they stand. A product message that names a field (``token: must not be
empty``) stays readable: after ``key:``, a word that starts a sentence (``must``, ``is``,
``looks``...) is prose, not a value.

:func:`is_secret_key` is the single definition of a secret-looking name: the redactor uses it for
``key=value`` text, and the store refuses outputs and metadata under such keys (they would be
shown by ``imagebuild build show`` to anyone who can read the store).
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Callable, Iterable

REDACTED = "***"

Redactor = Callable[[str], str]

# -- what a secret-looking key is -----------------------------------------------------------------
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "tokens",
        "credential",
        "credentials",
        "apikey",
        "cookie",
        "authorization",
        "sessionid",
        "privatekey",
        "accountkey",
        "sharedaccesskey",
        "sas",
        "sig",
        "otp",
    }
)
# Two words that make a secret together (api_key, AccessKey, private-key, SessionKey...).
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("private", "key"),
        ("account", "key"),
        ("session", "key"),
        ("master", "key"),
        ("encryption", "key"),
        ("signing", "key"),
        ("shared", "key"),
        ("client", "key"),
        ("auth", "key"),
    }
)
# A key ending in one of these names something *about* a secret, not the secret itself
# (``ssh_private_key_file``, ``token_url``, ``password_policy``).
_ABOUT_WORDS = frozenset(
    {
        "file",
        "files",
        "path",
        "name",
        "url",
        "uri",
        "type",
        "length",
        "len",
        "size",
        "count",
        "policy",
        "expiry",
        "expires",
        "expiration",
        "ttl",
        "arn",
        "enabled",
        "required",
        "set",
    }
)
# Inside one run of letters (PGPASSWORD, dbpassword, vaulttoken).
_SECRET_STEM = re.compile(r"password|passwd|passphrase|secret|token|apikey|credential")
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def key_words(key: str) -> list[str]:
    """``AWS_SECRET_ACCESS_KEY`` / ``awsSecretAccessKey`` / ``x-api-key`` -> lowercase words."""
    return [w.lower() for w in _WORD_RE.findall(key)]


def is_secret_key(key: str) -> bool:
    """Whether a name looks like it holds a credential (the one rule, used everywhere)."""
    words = key_words(key)
    if not words or words[-1] in _ABOUT_WORDS:
        return False
    if words[-1] == "auth" or any(w in _SECRET_WORDS or _SECRET_STEM.search(w) for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


# -- token formats that are secrets wherever they stand --------------------------------------------
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)", re.DOTALL)
_PEM_REPLACEMENT = f"-----BEGIN PRIVATE KEY-----{REDACTED}-----END PRIVATE KEY-----"
_TOKENS = re.compile(
    "|".join(
        (
            r"\b(?:AKIA|ASIA|AROA|AIDA|ANPA|AIPA)[A-Z0-9]{16}\b",  # AWS access key ids
            r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",  # GitHub tokens
            r"\bgithub_pat_[A-Za-z0-9_]{30,}\b",
            r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b",  # Slack tokens
            r"\bglpat-[A-Za-z0-9_-]{20,}\b",  # GitLab tokens
            r"\bnpm_[A-Za-z0-9]{36}\b",
            r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}",  # HashiCorp Vault tokens
            r"\bAIza[0-9A-Za-z_-]{35}\b",  # Google API keys
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*",  # JWTs
            r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{86}==",  # Azure storage account keys
            # 40-character AWS secret access keys standing alone (mixed case and digits, so that
            # hex digests such as git commit ids stay readable).
            r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
            r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])",
        )
    )
)
# scheme://user:password@host -> scheme://user:***@host
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://[^/\s:@]{1,256}):[^@\s/]{1,256}@")
# Authorization schemes with their credential (a credential has a digit or a symbol in it, so
# "basic configuration" stays readable).
_AUTH_SCHEME = re.compile(
    r"(?i)\b(bearer|basic|digest|negotiate)[ \t]+(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}"
)
_SQL_IDENTIFIED = re.compile(r"(?i)\b(identified\s+by\s+)('[^']*'|\"[^\"]*\"|\S+)")
# curl -u user:password, --user user:password
_USER_FLAG = re.compile(r"(?<!\S)(-u|--user)([ =]+['\"]?[^:\s'\"]+:)[^\s'\"]+")
# A secret flag and its value as neighbouring elements of a JSON argv list: "--password", "x"
_ARGV_FLAG = re.compile(r"\"(--?[A-Za-z][A-Za-z0-9_.\-]{0,78})\"\s*,\s*\"((?:[^\"\\]|\\.)*)\"")

# -- key = value, key: value, "key": "value", --flag value -----------------------------------------
_KEY_CHARS = r"A-Za-z0-9_.\-"
_ASSIGNMENT = re.compile(
    rf"(?<![{_KEY_CHARS}])(?P<q>[\"']?)(?P<key>[A-Za-z_\-][{_KEY_CHARS}]{{0,79}})(?P=q)(?P<sep>[ \t]*[=:][ \t]*)"
)
_FLAG = re.compile(rf"(?<![{_KEY_CHARS}])(?P<key>--[A-Za-z][{_KEY_CHARS}]{{0,78}})(?P<sep>[ \t]+)(?=[^\s-])")
_UNQUOTED_VALUE = re.compile(r"[^\s&;,\"'}\])]+")
_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# After ``key:``, words like these start a sentence ("token: must not be empty"), not a value.
_MESSAGE_WORDS_TEXT = (
    "must is are was were be been not has have had cannot can could should would will may might "
    "needs need required missing invalid expired empty unknown none null given too does did do the "
    "a an no of for at to in on from with and or if set unset changed updated rotated found ok "
    "refused denied accepted failed valid incorrect wrong supplied provided exceeds looks would take "
    "takes expected duplicate malformed milestone codes keys path file build reserved"
)
_MESSAGE_WORDS = frozenset(_MESSAGE_WORDS_TEXT.split())


def _quoted_end(text: str, start: int) -> int:
    """The index of the quote closing the string that opens at ``start`` (backslash escapes)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and quote == '"':
            i += 2
            continue
        if ch == quote or ch == "\n":
            return i
        i += 1
    return len(text)


def _value_span(text: str, start: int, key: str, sep: str, opener: str = "") -> tuple[int, int] | None:
    """Where the value after ``key sep`` lies, or None when there is no value to hide.
    ``opener``: the character before the key (a header inside quotes ends at the quote)."""
    if start >= len(text) or text[start] == "\n":
        return None
    if text[start] in "\"'":
        end = _quoted_end(text, start)
        return (start + 1, end) if end > start + 1 else None
    if ":" in sep and key.lower() in _HEADERS:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if opener in ("'", '"'):
            quote = text.find(opener, start, end)
            end = end if quote < 0 else quote
        return start, end
    found = _UNQUOTED_VALUE.match(text, start)
    if found is None:
        return None
    value = found.group(0)
    if value.startswith(REDACTED):
        return None
    if ":" in sep and value in _MESSAGE_WORDS:
        return None  # prose: "token: must not be empty", "outputs.password: looks like a secret"
    return found.span()


def _redact_assignments(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for pattern in (_ASSIGNMENT, _FLAG):
        for match in pattern.finditer(text):
            key = match.group("key").lstrip("-")
            if not is_secret_key(key):
                continue
            opener = text[match.start() - 1] if match.start() > 0 else ""
            span = _value_span(text, match.end(), key, match.group("sep"), opener)
            if span is not None:
                spans.append(span)
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    cursor = 0
    for start, end in spans:
        if start < cursor:  # inside a value already hidden
            continue
        out.append(text[cursor:start])
        out.append(REDACTED)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def redact_patterns(text: str) -> str:
    """Replace anything that looks like a secret in ``text``."""
    if not text:
        return text
    text = _PEM.sub(_PEM_REPLACEMENT, text)
    text = _URL_USERINFO.sub(rf"\1:{REDACTED}@", text)
    text = _TOKENS.sub(REDACTED, text)
    text = _AUTH_SCHEME.sub(rf"\1 {REDACTED}", text)
    text = _SQL_IDENTIFIED.sub(rf"\1{REDACTED}", text)
    text = _USER_FLAG.sub(rf"\1\2{REDACTED}", text)
    text = _ARGV_FLAG.sub(_argv_flag, text)
    return _redact_assignments(text)


def _argv_flag(match: re.Match[str]) -> str:
    flag = match.group(1)
    if not is_secret_key(flag.lstrip("-")):
        return match.group(0)
    return f'"{flag}", "{REDACTED}"'


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


# -- exceptions ------------------------------------------------------------------------------------
class RedactedError(Exception):
    """Stands in for an exception whose text could not be redacted in place (a class that builds its
    message from attributes of its own, not from ``args``): its type's name and the redacted text."""


def redact_exception(exc: BaseException, redactor: Redactor) -> BaseException:
    """``exc`` with its message, its notes and every exception chained to it redacted, to be raised
    in its place.

    An error a tool or a cloud reports quotes what it printed or answered (the last lines of a
    command, Packer's errors, an Ansible failure, an API's response body), and Airflow prints the
    raised exception with its causes into the task log, where only the secrets it registered are
    masked. This is the one place such text is cleaned before it is raised. The exception is
    changed in place (its ``args``), so its type, attributes and traceback stay what callers and
    Airflow's retry policy expect; only one whose text does not follow its ``args`` is replaced by
    a :class:`RedactedError` carrying the same traceback and chain. Nothing secret: ``exc`` itself.
    """
    return _redacted(exc, redactor, set())


def _text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ says nothing, secret or not
        return ""


def _redacted(exc: BaseException, redactor: Redactor, seen: set[int]) -> BaseException:
    if id(exc) in seen:
        return exc
    seen.add(id(exc))
    suppress = exc.__suppress_context__  # setting __cause__ below would set it: kept as it was
    for link in ("__cause__", "__context__"):
        chained = getattr(exc, link)
        if chained is not None:
            clean = _redacted(chained, redactor, seen)
            if clean is not chained:
                setattr(exc, link, clean)
    exc.__suppress_context__ = suppress
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [redactor(n) if isinstance(n, str) else n for n in notes]
    text = _text_of(exc)
    clean_text = redactor(text)
    if clean_text == text:
        return exc
    with contextlib.suppress(AttributeError, TypeError):  # an extension type that refuses new args
        exc.args = (clean_text,)
    now = _text_of(exc)
    if now and redactor(now) == now:
        return exc
    stand_in = RedactedError(f"{type(exc).__name__}: {clean_text}")
    stand_in.__cause__ = exc.__cause__ if exc.__cause__ is not None else exc.__context__
    stand_in.__suppress_context__ = True
    return stand_in.with_traceback(exc.__traceback__)
