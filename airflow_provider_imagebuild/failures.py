"""Failure classes: which failures are worth Airflow's retries and which are not.

A nightly build that retries a wrong password for an hour tells its team nothing until morning.
A failure whose text matches a *persistent* row below (a refused login, a missing permission, a
broken template, an undefined variable, an exhausted quota, an image that does not exist) fails
the milestone at once: no retry, and the error says the class and why. Everything else keeps
Airflow's retries; the *transient* rows (throttling, timeouts, resets, 5xx, spot interruptions,
unreachable hosts) only name the class in the error, so a person reading it knows a retry was the
right call.

One table, one row per tool and cloud's way of saying it, each row backed by a test that feeds
the real tool's real output (``tests/test_failures.py``). The first matching row wins, so the
specific rows come before the general ones, and transient rows that share words with persistent
ones (an SSH "Permission denied" from a host still booting) come first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AUTH, CONFIG, QUOTA, MISSING_IMAGE = "auth", "config", "quota", "missing_image"
POLICY = "policy"  # the image breaks the spec's policy: (operators/packages.py says "policy violation (N): ...")
THROTTLED, TIMEOUT, NETWORK, SERVER, SPOT, UNREACHABLE = (
    "throttled",
    "timeout",
    "network",
    "server",
    "spot",
    "unreachable",
)
REJECTED = "rejected"  # a person rejected an approval milestone, or nobody decided in time
PERSISTENT = frozenset({AUTH, CONFIG, QUOTA, MISSING_IMAGE, REJECTED, POLICY})


@dataclass(frozen=True)
class Row:
    tool: str  # packer, ansible, aws, azure, gcp, openstack, vsphere, http
    kind: str
    pattern: re.Pattern[str]
    why: str

    @property
    def persistent(self) -> bool:
        return self.kind in PERSISTENT


def _row(tool: str, kind: str, pattern: str, why: str) -> Row:
    return Row(tool, kind, re.compile(pattern, re.IGNORECASE | re.MULTILINE), why)


ROWS: tuple[Row, ...] = (
    # -- a person's decision: first, whatever words the comment holds ---------------------------
    _row("approval", REJECTED, r"^(AirflowFailException: )?approval (rejected by |not given within )",
         "the approval milestone was rejected (or not decided in time): clearing it asks again"),
    # -- the provider's policy gate: first, its list quotes package names and advisories -------
    _row("imagebuild", POLICY, r"^(AirflowException: )?policy violation \(\d+\):",
         "the image breaks the spec's policy: fix the image or the policy, then clear the task"),
    # -- transient first where their words overlap persistent ones ----------------------------
    _row("ansible", UNREACHABLE, r"\bUNREACHABLE!|unreachable in playbook|Failed to connect to the host via ssh",
         "the build host did not answer (booting, or the network): retried"),
    _row("aws", SPOT, r"Server\.SpotInstanceTermination|spot instance.*(interrupt|terminat)",
         "the spot instance was reclaimed: retried on a new one"),
    _row("aws", THROTTLED, r"\b(Throttling|ThrottlingException|RequestLimitExceeded|"
         r"TooManyRequestsException|SlowDown)\b",
         "the cloud throttled the calls: retried after a while"),
    _row("http", THROTTLED, r"\b429\b.*(Too Many Requests|rate limit)|rateLimitExceeded",
         "the API throttled the calls: retried after a while"),
    # -- persistent: authentication and authorization ----------------------------------------
    _row("aws", AUTH, r"\b(AccessDenied|AccessDeniedException|UnauthorizedOperation|AuthFailure|"
         r"InvalidClientTokenId|SignatureDoesNotMatch|InvalidAccessKeyId|ExpiredToken|UnrecognizedClientException)\b",
         "AWS refused the credentials or the permission: fix the connection or the IAM policy"),
    _row("azure", AUTH, r"\b(AuthorizationFailed|AuthenticationFailed|InvalidAuthenticationToken|"
         r"LinkedAuthorizationFailed)\b|AADSTS\d+",
         "Azure refused the credentials or the role assignment: fix the connection or the role"),
    _row("gcp", AUTH, r"\b(403|401)\b.*\b(PERMISSION_DENIED|forbidden|insufficientPermissions|UNAUTHENTICATED)\b|"
         r"Required '[a-z.]+' permission",
         "Google Cloud refused the credentials or the permission: fix the service account's roles"),
    _row("openstack", AUTH, r"The request you have made requires authentication|Keystone refused the login|"
         r"Policy doesn't allow",
         "OpenStack refused the login or the policy: fix the connection or the project's roles"),
    _row("vsphere", AUTH, r"Cannot complete login due to an incorrect user name or password|NoPermission|"
         r"InvalidLogin",
         "vCenter refused the login or the privilege: fix the connection or the role"),
    # -- persistent: invalid configuration ---------------------------------------------------
    _row("packer", CONFIG, r"Error: (Unsupported argument|Missing required argument|Unset variable|Invalid expression|"
         r"Argument or block definition required|Unsupported block type|Invalid template|Failed to parse|"
         r"Missing plugins|Unknown source type)|"
         r"Error parsing JSON|error\(s\) decoding|Error: Missing (item|newline) separator|"
         r"Error: Unclosed configuration block|Error: Invalid (block|character)",
         "the Packer template or its variables are invalid, or a plugin it needs is not installed: "
         "`packer validate` says the same"),
    _row("ansible", CONFIG, r"The task includes an option with an undefined variable|is undefined\b|"
         r"Syntax Error while loading YAML|YAML parsing failed|We were unable to read either as JSON nor YAML|"
         r"the playbook: .* could not be found|(ERROR!|\[ERROR\]:) .*(conflicting action statements|"
         r"couldn't resolve module|no module/action detected|is not a valid attribute)",
         "the playbook or its variables are invalid: `ansible-playbook --syntax-check` and the spec's vars"),
    # -- persistent: quotas and missing images -----------------------------------------------
    _row("aws", QUOTA, r"\b(InstanceLimitExceeded|VcpuLimitExceeded|AddressLimitExceeded|ResourceLimitExceeded|"
         r"SnapshotLimitExceeded|AMIQuotaExceeded)\b",
         "an AWS quota is used up: raise it or free resources"),
    _row("any", QUOTA, r"\b(QuotaExceeded|quota exceeded|OperationNotAllowed.*quota|QUOTA_EXCEEDED|"
         r"Quota exceeded for)\b",
         "a cloud quota is used up: raise it or free resources"),
    _row("aws", MISSING_IMAGE, r"\bInvalidAMIID\.(NotFound|Malformed|Unavailable)\b",
         "the AMI does not exist (or is not shared with this account)"),
    _row("any", MISSING_IMAGE, r"\b(ImageNotFound|image .* (was not found|could not be found|does not exist))",
         "the source image does not exist: check target.source_image"),
    # -- transient: the rest -----------------------------------------------------------------
    _row("any", TIMEOUT, r"\b(timed out|timeout|deadline exceeded)\b", "a call or a wait timed out: retried"),
    _row("any", NETWORK, r"connection (reset|refused|aborted)|Temporary failure in name resolution|"
         r"EOF occurred|Broken pipe|Network is unreachable",
         "the network failed: retried"),
    _row("any", SERVER, r"\b(HTTP|status) ?5\d\d\b|\b(InternalError|InternalFailure|ServiceUnavailable|"
         r"Service Unavailable|Internal Server Error|Bad Gateway|Gateway Timeout)\b",
         "the service failed on its side: retried"),
)  # fmt: skip


@dataclass(frozen=True)
class Failure:
    row: Row
    line: str  # the line of the text that matched

    @property
    def persistent(self) -> bool:
        return self.row.persistent

    def describe(self) -> str:
        retry = "not retried" if self.persistent else "retried"
        return f"{self.row.kind} failure ({self.row.tool}, {retry}): {self.row.why}"


def classify(text: str) -> Failure | None:
    """The first row of :data:`ROWS` that matches ``text``, or None (a failure of no known class:
    Airflow's retries apply)."""
    for row in ROWS:
        found = row.pattern.search(text)
        if found:
            start = text.rfind("\n", 0, found.start()) + 1
            end = text.find("\n", found.end())
            return Failure(row, text[start : end if end != -1 else len(text)].strip()[:300])
    return None
