"""URL checks shared by every URL field of the policy file (providers, MCP servers, the budget webhook).

They accept exactly what the gateway's HTTP client can connect to, so a URL that
passes `mcp-gateway check` never fails later, at start-up or on the first request.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def is_host_name(value: str) -> bool:
    """An IP address or a DNS name made of valid labels (what a socket can bind or connect to)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return True
    name = value.removesuffix(".")
    return 0 < len(name) <= 253 and all(_HOST_LABEL.match(label) for label in name.split("."))


def check_http_url(value: str, field: str) -> str:
    """``value`` if it is an absolute http(s) URL with a host (and a valid port); else `ValueError`."""
    if value != value.strip() or any(ch.isspace() for ch in value):
        raise ValueError(f"{field} must not contain spaces")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{field} must be an http:// or https:// URL")
    try:
        host, _port = parts.hostname, parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise ValueError(f"{field} has an invalid port ({exc})") from None
    if not host or not is_host_name(host):
        raise ValueError(f"{field} needs a valid host name, as in https://host[:port]/path")
    if parts.fragment:
        raise ValueError(f"{field} must not have a #fragment")
    return value
