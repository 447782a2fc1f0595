"""Where a bearer token may be sent: over https, or in clear to a loopback address only (an
emulator or a test fake on this machine). Shared by the Azure and Google clients."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from airflow_provider_imagebuild.errors import InvalidInput


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_tls_or_loopback(url: str, field: str) -> str:
    """``url``, refused (naming ``field``) when it would carry a token in clear over a network."""
    if not url.startswith("https://") and not is_loopback(url):
        raise InvalidInput(field, f"must be https (or a loopback emulator): {url}")
    return url
