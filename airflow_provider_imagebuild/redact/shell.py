"""Redaction of what a command started from a shell prints: the patterns, plus what it was given.

The ``imagebuild`` CLI and the Concourse resource print errors on stderr: a terminal, a CI job's
log, a Concourse build log a whole team reads. An error's text can quote a secret with nothing
around it that says so: a boto error quoting the session token it could not send (``Invalid header
value b'...'``), a store URL's password inside the bucket name it refused (``got
'admin:pw@bucket'``). The patterns of :mod:`.patterns` (the rules every task, the store and the CLI
share) find what *looks* like a secret; this adds what the process was *given* as one:

- the values of environment variables with secret-looking names (:func:`~.patterns.is_secret_key`,
  the one rule), such as ``AWS_SECRET_ACCESS_KEY`` or a Concourse ``source.env`` credential;
- in any argument or environment value: the password (userinfo) of a URL and query values under
  secret-looking names (``?aws_secret_access_key=...``); ``--secret-flag value`` arguments; the
  values under secret-looking keys of JSON (an Airflow connection in ``AIRFLOW_CONN_*``) and of a
  request the process read (Concourse's ``source``);
- whatever Airflow's secrets masker holds, when Airflow is loaded (``imagebuild milestone run``
  reads connections through it): the redactor the tasks use.

Each secret is hidden as it was given and as error text quotes it: escaped (``repr``, JSON, bytes),
percent-encoded, and line by line for a value that spans lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote_plus

from airflow_provider_imagebuild.redact.patterns import Redactor, is_secret_key, redactor_for

# scheme://userinfo@ (the userinfo ends at the last '@' before the path, as urllib reads it)
_USERINFO = re.compile(r"(?i)\b[a-z][a-z0-9+.-]{0,30}://([^/?#\s]*)@")
_QUERY_VALUE = re.compile(r"[?&;]([A-Za-z_][A-Za-z0-9_.\-]{0,79})=([^&;#\s]*)")
_ASSIGNED = re.compile(r"([A-Za-z_][A-Za-z0-9_.\-]{0,79})=(.+)", re.DOTALL)
MIN_SECRET = 4  # shorter values are words, not secrets (redactor_for's own floor)
# The shell's own state, whose names only look secret (``PWD`` is the working directory, not a
# password): hiding them would turn every path under the working directory into ``***``.
SHELL_STATE = frozenset({"PWD", "OLDPWD"})
TOKEN_USER = 20  # a URL's user without a password this long is a token, not a name


def secrets_in(value: object) -> set[str]:
    """The secrets a given value carries: a string's URL passwords and secret query values, a
    mapping's values under secret-looking keys (and its other values, walked), a list's
    ``--secret-flag value`` / ``--secret-flag=value`` / ``NAME=value`` items (an argv)."""
    found: set[str] = set()
    if isinstance(value, str):
        if value.lstrip().startswith("{"):  # a JSON value, such as an Airflow connection in AIRFLOW_CONN_*
            with contextlib.suppress(ValueError, RecursionError):
                found |= secrets_in(json.loads(value))
        for userinfo in _USERINFO.findall(value):
            user, colon, password = userinfo.partition(":")
            if colon:
                found.add(password)
            elif len(user) >= TOKEN_USER:  # a token as the user (https://TOKEN@host), not a plain name
                found.add(user)
        for name, given in _QUERY_VALUE.findall(value):
            if is_secret_key(name):
                found.add(given)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str) and is_secret_key(str(key)):
                found.add(item)
            found |= secrets_in(item)
    elif isinstance(value, (list, tuple)):
        items = [v for v in value if isinstance(v, str)]
        for i, item in enumerate(items):
            found |= secrets_in(item)
            flag = item.startswith("-") and item.lstrip("-")
            assigned = _ASSIGNED.fullmatch(item.lstrip("-"))
            if assigned and is_secret_key(assigned.group(1)):
                found.add(assigned.group(2))
            elif flag and not assigned and i + 1 < len(items) and is_secret_key(flag):
                found.add(items[i + 1])
    return {s for s in found if len(s) >= MIN_SECRET}


def quoted_forms(secret: str) -> set[str]:
    """``secret`` as error text may quote it: as given, unquoted from a URL, escaped by ``repr``,
    JSON or a bytes ``repr``, percent-encoded, and each line of a value that spans lines."""
    plain = {secret, unquote_plus(secret)}
    forms = set(plain)
    for text in plain:
        forms |= {repr(text)[1:-1], json.dumps(text)[1:-1], repr(text.encode())[2:-1], quote(text, safe=""),
                  quote_plus(text)}  # fmt: skip
        forms |= {line.strip() for line in text.splitlines()}
    return {f for f in forms if len(f) >= MIN_SECRET}


def _airflow_masker() -> Redactor | None:
    """Airflow's secrets masker, only if Airflow is already loaded (importing it takes seconds,
    and a process that never loaded it never read a connection through it)."""
    if "airflow.sdk" not in sys.modules:
        return None
    try:
        from airflow.sdk.log import redact
    except ImportError:
        return None

    def _masked(text: str) -> str:
        return str(redact(text))

    return _masked


def shell_redactor(
    *given: object, environ: Mapping[str, str] | None = None, argv: Iterable[str] | None = None
) -> Redactor:
    """The redactor for what this process prints: the patterns, the secrets of its arguments and
    environment (read now: a Concourse resource adds its ``source.env`` as it goes), those of
    ``given`` (a request, a store URL, a command's parameters) and Airflow's masker when loaded."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in SHELL_STATE}
    args = list(sys.argv[1:] if argv is None else argv)
    secrets = secrets_in(env) | secrets_in(args)
    for item in given:
        secrets |= secrets_in(item)
    known = set().union(*(quoted_forms(s) for s in secrets)) if secrets else set()
    return redactor_for(known, _airflow_masker())
