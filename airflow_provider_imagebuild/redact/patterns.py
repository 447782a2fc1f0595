"""Redaction of secrets before text is stored, logged or printed, and the one rule of what a
secret-looking key is.

Error text from Packer, Ansible or a shell command routinely carries credentials (an AWS key in
an environment dump, ``password=...`` in a connection string, a bearer token in a curl trace).
The store keeps history forever, so everything is redacted *before* it is written. Callers that
know more secrets (Airflow's masked values) pass an extra redactor; the rules here catch what
looks like a secret even when nobody registered it.

The text is tokenised rather than matched with one pattern: every ``key=value``, ``key: value``,
``"key": "value"`` and ``--flag value`` is found on its own (a key that is not secret consumes
only itself, so ``error: password=x`` still finds ``password``), and the value is hidden whole:
a quoted string to its closing quote (escapes followed, as deep as JSON inside JSON), a list,
tuple or mapping to its closing bracket (a secret's mapping keeps only what describes it, such as
``Expiration``), a ``key=value`` word as a shell reads it, and after ``key:`` or ``key = `` (YAML,
INI) the rest of its line. HTTP credential headers lose the rest of their line, URLs (with a
scheme or not: ``admin:pw@host``) lose their userinfo password, PEM private keys lose their body,
and well-known token formats (AWS, GitHub, Slack, JWT...) are replaced wherever they stand.

Security wins over readability, but a product message stays readable: after ``key:``, a word
that starts a sentence (``must``, ``is``, ``looks``...) is prose, not a value (``token: must not
be empty``); and after a secret word that is also a plain noun (``credentials``, ``token``...),
plain words up to such a word are a sentence (``credentials: S3 bucket missing``), while
anything with a digit, a symbol or mixed case in it is still a value (``token: abc123 expired``).

:func:`is_secret_key` is the single definition of a secret-looking name: the redactor uses it for
``key=value`` text, and the store refuses outputs and metadata under such keys (they would be
shown by ``imagebuild build show`` to anyone who can read the store).
"""

from __future__ import annotations

import contextlib
import heapq
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
# scheme://user:password@host -> scheme://user:***@host (the password runs to the last '@' before
# the host, as urllib reads it: a password may hold an '@')
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}://[^/\s:@]{1,256}):[^\s/?#]{1,256}@")
# user:password@host without a scheme (a store URL typed without one, an endpoint, a DSN): the same
# password; an image reference's tag before its digest (nginx:1.25@sha256:...) is not one.
_BARE_USERINFO = re.compile(
    r"(?<![A-Za-z0-9._~%+:@-])([A-Za-z0-9._~%+-]{1,256}):[^\s/?#@][^\s/?#]{0,255}@(?=[A-Za-z0-9\[])(?!sha\d+:)"
)
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
# The key may be quoted, and its quotes escaped as deep as the text it sits in (JSON inside JSON: \"key\").
_ASSIGNMENT = re.compile(
    rf"(?<![{_KEY_CHARS}])(?P<q>\\{{0,7}}[\"']|)(?P<key>[A-Za-z_\-][{_KEY_CHARS}]{{0,79}})(?P=q)"
    r"(?P<sep>[ \t]*[=:][ \t]*)"
)
_FLAG = re.compile(rf"(?<![{_KEY_CHARS}])(?P<key>--[A-Za-z][{_KEY_CHARS}]{{0,78}})(?P<sep>[ \t]+)(?=[^\s-])")
# One word of a value: a quote or a bracket inside it (it'sA(secret)x) and a backslash escape (a\ b) do
# not end it.
_UNQUOTED_VALUE = re.compile(r"(?:[^\s&;,\"'}\])\\]|\\.)+(?:[\"'}\])]+(?:[^\s&;,\"'}\])\\]|\\.)+)*")
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
# Secret words that are also plain nouns of a sentence ("credentials: S3 bucket missing"): written
# alone and unquoted before a colon, what follows may be prose. Every other secret key (password,
# secret, db_password, AccessKey, a quoted "token") names a value, whatever follows it.
_PROSE_KEYS = frozenset({"credential", "credentials", "secrets", "token", "tokens", "auth", "pass"})
# A word of a sentence: lowercase, Capitalized or a short acronym (S3, EC2), never a digit inside.
_PLAIN_WORD = re.compile(
    r"(?:[a-z]{1,20}(?:-[a-z]{1,20})*|[A-Z][a-z]{1,19}(?:-[a-z]{1,20})*|[A-Z][A-Z0-9]{0,4})[.,:!?]?"
)
# Where a value that runs on in its line (YAML ``key: value``, INI ``key = value``) stops: a
# delimiter of the text around it, a comment, or the next ``key:`` / ``key=``.
_LINE_VALUE_END = re.compile(r"[\n&;,\"'}\])]|[ \t]+#|[ \t]+[A-Za-z_][A-Za-z0-9_.\-]{0,79}[ \t]*(?::(?=\s|$)|=)")
_WORD = re.compile(r"\S+")
_STRING_PREFIX = re.compile(r"[bBrRuU]{1,2}(?=[\"'])")  # b'...', u'...' (Python reprs)
# A string's opening quote, escaped as deep as the text it sits in (\" inside a JSON string).
_OPEN_QUOTE = re.compile(r"(\\{0,7})([\"'])")
_STRING_STOP = re.compile(r"[\\\n\"']")
_GROUP_STOP = re.compile(r"[\[\]{}()\\\"']")


def _string_close(text: str, start: int, level: int, quote: str) -> tuple[int, int]:
    """Where the string whose content starts at ``start`` ends: (end of its content, index after its
    closing quote). ``level``: how many backslashes escape its own quotes (JSON inside JSON: 1).
    A backslash escapes the next character in either kind of quotes (a Python repr's ``'it\\'s'``;
    a shell's literal backslash then only hides more). A string left open ends at its line's end."""
    i = start
    while True:
        found = _STRING_STOP.search(text, i)
        if found is None:
            return len(text), len(text)
        i = found.start()
        ch = text[i]
        if ch == "\n":
            return i, i
        if ch != "\\":
            if ch == quote and not level:
                return i, i + 1
            i += 1
            continue
        run_end = i
        while run_end < len(text) and text[run_end] == "\\":
            run_end += 1
        closing = run_end < len(text) and text[run_end] == quote
        if closing and (run_end - i == level if level else (run_end - i) % 2 == 0):
            return (i if level else run_end), run_end + 1
        i = run_end + 1 if run_end < len(text) and text[run_end] != "\n" else run_end


def _group_end(text: str, start: int) -> int:
    """The index after the bracket closing the one at ``start`` (nested brackets followed, quoted
    strings skipped), or the end of the text when it never closes: a list or a mapping under a
    secret key is hidden whole, and a cut one to the end."""
    depth = 0
    i = start
    while True:
        found = _GROUP_STOP.search(text, i)
        if found is None:
            return len(text)
        i = found.start()
        ch = text[i]
        if ch in "[{(":
            depth += 1
            i += 1
        elif ch in "]})":
            depth -= 1
            i += 1
            if depth == 0:
                return i
        else:
            opening = _OPEN_QUOTE.match(text, i)
            if opening is None:  # a backslash escaping something else
                i += 2
                continue
            _, i = _string_close(text, opening.end(), len(opening.group(1)), opening.group(2))


def _line_value_end(text: str, start: int, first_end: int, key: str, quoted_key: bool) -> int | None:
    """The end of a value that runs on in its line (after ``key:`` or ``key = ``), or None when
    the line is a sentence about the key rather than its value.

    One word is the value. Several words are the value too (a passphrase), but after a key that
    is also a plain noun (:data:`_PROSE_KEYS`) they are a sentence when they read as one: plain
    words up to a word that starts a message ("credentials: S3 bucket missing"); otherwise the
    value runs up to that word ("token: abc123 expired at 10:00")."""
    stop = _LINE_VALUE_END.search(text, first_end)
    end = stop.start() if stop else len(text)
    words = list(_WORD.finditer(text, start, end))
    if len(words) <= 1:
        return first_end
    if quoted_key or not key.isalpha() or key.lower() not in _PROSE_KEYS:
        return words[-1].end()
    for index, word in enumerate(words[1:], start=1):
        if word.group(0).lower().rstrip(".,:!?") in _MESSAGE_WORDS:
            if all(_PLAIN_WORD.fullmatch(w.group(0)) for w in words[:index]):
                return None
            return words[index - 1].end()
    return words[-1].end()


def _value_span(
    text: str, start: int, key: str, sep: str, opener: str = "", quoted_key: bool = False
) -> tuple[int, int] | None:
    """Where the value after ``key sep`` lies, or None when there is no value to hide.
    ``opener``: the character before the key (a header inside quotes ends at the quote);
    ``quoted_key``: the key was quoted (structured data, never a sentence)."""
    if start >= len(text) or text[start] == "\n":
        return None
    prefix = _STRING_PREFIX.match(text, start)
    quote = _OPEN_QUOTE.match(text, prefix.end() if prefix else start)
    if quote is not None:
        content = quote.end()
        end, after = _string_close(text, content, len(quote.group(1)), quote.group(2))
        joined = _UNQUOTED_VALUE.match(text, after) if after > end else None  # a shell's 'abc'def is abcdef
        if joined is not None:
            return content, joined.end()
        return (content, end) if end > content else None
    if ":" in sep and key.lower() in _HEADERS:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if opener in ("'", '"'):
            quote_at = text.find(opener, start, end)
            end = end if quote_at < 0 else quote_at
        return start, end
    if text[start] in "[{(":
        return start, _group_end(text, start)
    found = _UNQUOTED_VALUE.match(text, start)
    if found is None:
        return None
    value = found.group(0)
    if value.startswith(REDACTED):
        return None
    if ":" in sep and value in _MESSAGE_WORDS:
        return None  # prose: "token: must not be empty", "outputs.password: looks like a secret"
    if ":" in sep or ("=" in sep and sep != sep.strip()):  # YAML / INI: the value runs on in its line
        end_of_line_value = _line_value_end(text, start, found.end(), key, quoted_key)
        return None if end_of_line_value is None else (start, end_of_line_value)
    return found.span()  # shell, URL query, --flag: one word


def _describes_a_secret(key: str) -> bool:
    """A key of a secret's mapping that says something about it (``Expiration``, ``type``)."""
    return not is_secret_key(key) and any(word in _ABOUT_WORDS for word in key_words(key))


# What may lie between the entries of a mapping: separators, braces, the quotes around keys and values.
_ENTRY_GAP = re.compile(r"[\s,{}\\\"']*")


def _mapping_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """What to hide of the mapping ``text[start:end]`` under a secret key (an STS answer's
    ``Credentials``): the value of every entry but those describing the secret (its expiry, its
    type) as plain words, so the story stays readable. Anything that does not read as ``key: value``
    entries (a key that is not a name, a mapping cut short) hides the mapping whole."""
    whole = [(start, end)]
    closing = end - 1 if text[end - 1] == "}" else end
    spans: list[tuple[int, int]] = []
    pos = start + 1
    while True:
        entry = _ASSIGNMENT.search(text, pos, closing)
        if _ENTRY_GAP.fullmatch(text, pos, entry.start() if entry else closing) is None:
            return whole
        if entry is None:
            return spans
        key = entry.group("key")
        span = _value_span(text, entry.end(), key, entry.group("sep"), quoted_key=True)
        if span is None or span[1] > closing:
            return whole
        if not _describes_a_secret(key) or text[span[0]] in "[{(":
            spans.append(span)
        pos = span[1]


def _redact_assignments(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for pattern in (_ASSIGNMENT, _FLAG):
        # A key inside a value already hidden is skipped: what it names is hidden, and measuring
        # its value again would make nested brackets cost the square of the text's length.
        pending = list(spans)
        heapq.heapify(pending)
        hidden_to = 0
        for match in pattern.finditer(text):
            while pending and pending[0][0] <= match.start():
                hidden_to = max(hidden_to, heapq.heappop(pending)[1])
            if match.start() < hidden_to:
                continue
            key = match.group("key").lstrip("-")
            if not is_secret_key(key):
                continue
            opener = text[match.start() - 1] if match.start() > 0 else ""
            quoted_key = bool(match.groupdict().get("q"))
            span = _value_span(text, match.end(), key, match.group("sep"), opener, quoted_key)
            if span is None:
                continue
            found = _mapping_spans(text, *span) if span[0] == match.end() and text[span[0]] == "{" else [span]
            for hidden in found:
                spans.append(hidden)
                heapq.heappush(pending, hidden)
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    cursor = 0
    for start, end in spans:
        if start < cursor:  # inside a value already hidden (a key inside a hidden mapping)
            cursor = max(cursor, end)
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
    if "@" in text:  # most errors hold none: two scans saved
        text = _URL_USERINFO.sub(rf"\1:{REDACTED}@", text)
        text = _BARE_USERINFO.sub(rf"\1:{REDACTED}@", text)
    text = _TOKENS.sub(REDACTED, text)
    text = _AUTH_SCHEME.sub(rf"\1 {REDACTED}", text)
    text = _SQL_IDENTIFIED.sub(rf"\1{REDACTED}", text)
    text = _USER_FLAG.sub(rf"\1\2{REDACTED}", text)
    text = _ARGV_FLAG.sub(_argv_flag, text)
    return _redact_assignments(text)


def quoted_input(text: str, limit: int = 60) -> str:
    """``text`` as typed (a URL, a name) quoted back in an error message: what looks like a secret
    hidden first (a password rides along in ``admin:pw@host``), then cut to ``limit`` characters
    and escaped. Errors go to terminals, CI logs and the store: input never reaches them unredacted."""
    clean = redact_patterns(text)
    return repr(clean[:limit]) + ("..." if len(clean) > limit else "")


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
