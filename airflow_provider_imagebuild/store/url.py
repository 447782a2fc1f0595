"""Store URLs: one string selects a backend, the same way in specs, connections and the CLI.

``sqlite:///abs/path.db``, ``file:///abs/dir``, ``dynamodb://TABLE?region=R&endpoint_url=U``,
``s3://BUCKET/PREFIX?region=R&endpoint_url=U`` and
``sqlite+s3:///abs/path.db?bucket=B&prefix=P&region=R&endpoint_url=U`` and
``azblob://CONTAINER/PREFIX?account=NAME&endpoint_url=U`` and
``gs://BUCKET/PREFIX?project=P&endpoint_url=U``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from airflow_provider_imagebuild.build.ids import control_character
from airflow_provider_imagebuild.clouds.aws import AWS_REGION_RE
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.redact.patterns import quoted_input

SCHEMES = ("sqlite", "file", "dynamodb", "s3", "sqlite+s3", "azblob", "gs")
_TABLE_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Blob container names: 3-63 lowercase letters, digits and single hyphens, starting and ending
# with a letter or digit; storage account names: 3-24 lowercase letters and digits.
_CONTAINER_RE = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", re.ASCII)
_ACCOUNT_RE = re.compile(r"[a-z0-9]{3,24}", re.ASCII)
_PREFIX_RE = re.compile(r"[A-Za-z0-9!_.*'()/-]*")
_ENDPOINT_RE = re.compile(r"https?://[^\s/?#@]+(/[^\s?#]*)?")
_ALLOWED_QUERY = {
    "sqlite": {"synchronous"},
    "file": set(),
    "dynamodb": {"region", "endpoint_url"},
    "s3": {"region", "endpoint_url"},
    "sqlite+s3": {"bucket", "prefix", "region", "endpoint_url", "synchronous"},
    "azblob": {"account", "endpoint_url"},
    "gs": {"project", "endpoint_url"},
}
# Cloud Storage bucket names: 3-63 lowercase letters, digits, '-', '_' and '.', starting and
# ending with a letter or digit (dotted names up to 222 are for verified domains: not taken here).
_GCS_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", re.ASCII)
_PROJECT_RE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", re.ASCII)


@dataclass(frozen=True)
class StoreURL:
    scheme: str
    path: str = ""  # sqlite / file / sqlite+s3 local path
    table: str = ""
    bucket: str = ""
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    account: str = ""  # azblob: the storage account
    project: str | None = None  # gs: the project that owns (and is billed for) the bucket
    synchronous: str = "normal"  # SQLite: "full" also survives power loss, at about half the write rate
    raw: str = ""


def shown_url(url: str) -> str:
    """A store URL as a label, a log line or a banner shows it: scheme, host and path, without the
    userinfo, query or fragment, which may carry credentials or tokens (a URL not parsed yet, or one
    that will be refused, is shown too: the doctor names the store it could not open). Text only, no
    parsing: it never fails."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.partition("?")[0].partition("#")[0]
    rest = rest.partition("#")[0].partition("?")[0]
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}"


def parse_store_url(url: object, field: str = "store") -> StoreURL:
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput(field, "must be a store URL such as sqlite:///abs/path.db")
    text = url.strip()
    bad = control_character(text)
    if bad:
        raise InvalidInput(field, f"must not contain control characters (found {bad})")
    scheme, sep, _rest = text.partition("://")
    if not sep:
        raise InvalidInput(field, f"must look like SCHEME://..., got {quoted_input(text)}")
    if scheme not in SCHEMES:
        raise InvalidInput(
            field, f"unknown store scheme {quoted_input(scheme, 30)}; expected one of {', '.join(SCHEMES)}"
        )
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the host:port part too
    except ValueError:  # its text quotes the part it could not read: a password typed as a port
        raise InvalidInput(
            field,
            "is not a valid URL: its host part does not parse (a port is a number, an IPv6 address in [brackets])",
        ) from None
    if parts.fragment:
        raise InvalidInput(field, "must not contain a '#fragment'")
    if "@" in parts.netloc:  # refused before any part of it is quoted back (a bucket, a table)
        raise InvalidInput(
            field, "must not contain credentials (user:password@); use the connection or the environment"
        )
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = set(query) - _ALLOWED_QUERY[scheme]
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED_QUERY[scheme])) or "none"
        names = ", ".join(quoted_input(name, 40) for name in sorted(unknown))
        raise InvalidInput(field, f"unknown parameter(s) {names} for {scheme}:// (allowed: {allowed})")
    single: dict[str, str] = {}
    for key, values in query.items():
        if len(values) != 1 or not values[0]:
            raise InvalidInput(f"{field}.{key}", "must be given exactly once with a value")
        single[key] = values[0]
    region = single.get("region")
    if region is not None and not AWS_REGION_RE.fullmatch(region):
        raise InvalidInput(f"{field}.region", f"is not an AWS region name: {quoted_input(region, 40)}")
    endpoint = single.get("endpoint_url")
    if endpoint is not None and "@" in endpoint.split("://", 1)[-1].partition("/")[0]:  # with a scheme or not
        # Credentials come from the environment or the connection's aws_conn_id, never the URL:
        # a store URL is printed, logged and kept in specs.
        raise InvalidInput(
            f"{field}.endpoint_url",
            "must not contain credentials (user:password@); use the connection or the environment",
        )
    if endpoint is not None and not _ENDPOINT_RE.fullmatch(endpoint):
        raise InvalidInput(f"{field}.endpoint_url", f"must be an http(s) URL, got {quoted_input(endpoint, 80)}")

    synchronous = single.get("synchronous", "normal").lower()
    if synchronous not in ("normal", "full"):
        raise InvalidInput(f"{field}.synchronous", f"must be 'normal' or 'full', got {quoted_input(synchronous, 40)}")

    if scheme in ("sqlite", "file", "sqlite+s3"):
        if parts.netloc:
            raise InvalidInput(field, f"{scheme}:// takes an absolute path: {scheme}:///abs/path (three slashes)")
        # sqlite:///abs/path and SQLAlchemy's sqlite:////abs/path both name /abs/path.
        path = "/" + parts.path.lstrip("/") if parts.path.startswith("/") else parts.path
        if not path.startswith("/") or path == "/":
            raise InvalidInput(field, f"{scheme}:// needs an absolute path, got {quoted_input(path)}")
        if "\x00" in path or "/../" in path + "/":
            raise InvalidInput(field, "path must not contain '..' or NUL")
        if scheme == "sqlite+s3":
            bucket = single.get("bucket", "")
            _check_bucket(bucket, f"{field}.bucket")
            prefix = single.get("prefix", "")
            _check_prefix(prefix, f"{field}.prefix")
            return StoreURL(
                scheme,
                path=path,
                bucket=bucket,
                prefix=prefix,
                region=region,
                endpoint_url=endpoint,
                synchronous=synchronous,
                raw=text,
            )
        return StoreURL(scheme, path=path, synchronous=synchronous, raw=text)

    if scheme == "dynamodb":
        table = parts.netloc
        if parts.path not in ("", "/"):
            raise InvalidInput(field, "dynamodb://TABLE takes no path")
        if not _TABLE_RE.fullmatch(table):
            raise InvalidInput(
                f"{field}.table", f"must be 3-255 letters, digits, '_', '.', '-', got {quoted_input(table)}"
            )
        return StoreURL(scheme, table=table, region=region, endpoint_url=endpoint, raw=text)

    if scheme == "azblob":
        container = parts.netloc
        if not _CONTAINER_RE.fullmatch(container):
            raise InvalidInput(
                f"{field}.container",
                "must be a Blob container name (3-63 lowercase letters, digits and single '-'), "
                f"got {quoted_input(container)}",
            )
        account = single.get("account", "")
        if not _ACCOUNT_RE.fullmatch(account):
            raise InvalidInput(
                f"{field}.account",
                f"must be a storage account name (3-24 lowercase letters and digits), got {quoted_input(account)}",
            )
        prefix = parts.path.strip("/")
        _check_prefix(prefix, f"{field}.prefix")
        return StoreURL(scheme, bucket=container, prefix=prefix, account=account, endpoint_url=endpoint, raw=text)

    if scheme == "gs":
        bucket = parts.netloc
        if not _GCS_BUCKET_RE.fullmatch(bucket) or ".." in bucket or bucket.startswith("goog"):
            raise InvalidInput(
                f"{field}.bucket",
                "must be a Cloud Storage bucket name (3-63 lowercase letters, digits, '-', '_', '.'), "
                f"got {quoted_input(bucket)}",
            )
        project = single.get("project")
        if project is not None and not _PROJECT_RE.fullmatch(project):
            raise InvalidInput(f"{field}.project", f"is not a project id, got {quoted_input(project, 40)}")
        prefix = parts.path.strip("/")
        _check_prefix(prefix, f"{field}.prefix")
        return StoreURL(scheme, bucket=bucket, prefix=prefix, project=project, endpoint_url=endpoint, raw=text)

    bucket = parts.netloc
    _check_bucket(bucket, f"{field}.bucket")
    prefix = parts.path.strip("/")
    _check_prefix(prefix, f"{field}.prefix")
    return StoreURL(scheme, bucket=bucket, prefix=prefix, region=region, endpoint_url=endpoint, raw=text)


def _check_bucket(bucket: str, field: str) -> None:
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InvalidInput(
            field, f"must be an S3 bucket name (3-63 lowercase letters, digits, '.', '-'), got {quoted_input(bucket)}"
        )


def _check_prefix(prefix: str, field: str) -> None:
    if not _PREFIX_RE.fullmatch(prefix) or ".." in prefix or len(prefix) > 512:
        raise InvalidInput(field, f"must be a plain S3 key prefix, got {quoted_input(prefix)}")
