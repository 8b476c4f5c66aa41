"""DNS-rebinding protection: refuse requests whose Host or Origin is not ours.

A web page the user visits must not reach a gateway on the user's loopback
through a hostile DNS name. Bearer auth already stops most of it; this stops
the rest before any work is done.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from policies.config import GatewaySettings

from ..errors import HttpProblem

_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_loopback(bind: str) -> bool:
    if bind in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


class HostGuard:
    def __init__(self, settings: GatewaySettings) -> None:
        if settings.allowed_hosts is not None:
            hosts = {_host_name(h) for h in settings.allowed_hosts}
        elif _is_loopback(settings.host):
            hosts = set(_LOCAL_NAMES)
        else:
            hosts = {"*"}
        self.any_host = "*" in hosts
        self.hosts = frozenset(hosts)
        self.origins = frozenset(o.rstrip("/").lower() for o in settings.allowed_origins)

    def check(self, host: str | None, origin: str | None) -> None:
        if not self.any_host and host is not None and _host_name(host) not in self.hosts:
            raise HttpProblem(421, "misdirected_request", f"Host {host!r} is not served here")
        if origin is not None and origin != "null":
            normalised = origin.rstrip("/").lower()
            name = (urlsplit(normalised).hostname or "").lower()
            if normalised not in self.origins and name not in _LOCAL_NAMES:
                raise HttpProblem(403, "forbidden_origin", f"Origin {origin!r} is not allowed")
