"""DNS-rebinding protection for every route: refuse requests whose Host or Origin is not ours.

A web page the user visits must not reach a gateway on the user's loopback
through a hostile DNS name (its requests carry that name in ``Host``) or from a
sandboxed frame (``Origin: null``). Bearer auth already stops most of it; this
stops the rest before any work is done, on every HTTP route alike: /mcp, the
model API, health and everything else. It runs on both hot paths, so the
common case (a Host seen before, no Origin) costs one pass over the raw header
list and a set lookup.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import orjson

from mcp_gateway.errors import HttpProblem
from policies.bounds import echo
from policies.gateway_settings import GatewaySettings

_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_CACHE_LIMIT = 256
"""Most distinct accepted Host/Origin values remembered (clients use a handful)."""


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
    """The Host/Origin allow-list (``gateway.allowed_hosts``, ``gateway.allowed_origins``)."""

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
        self._good_hosts: set[bytes] = set()
        self._good_origins: set[bytes] = set()

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> HttpProblem | None:
        """What is wrong with a request's raw ASGI headers (421 for a foreign Host, 403 for a foreign
        or null Origin), or None. Every Host and Origin header counts: a duplicate must not smuggle
        a second value past the check."""
        for name, value in headers:
            if name == b"host":
                if self.any_host or value in self._good_hosts:
                    continue
                host = value.decode("latin-1")
                if _host_name(host) not in self.hosts:
                    return HttpProblem(421, "misdirected_request", f"Host {echo(host)} is not served here")
                _remember(self._good_hosts, value)
            elif name == b"origin":
                if value in self._good_origins:
                    continue
                origin = value.decode("latin-1")
                if not self._origin_ok(origin):
                    return HttpProblem(403, "forbidden_origin", f"Origin {echo(origin)} is not allowed")
                _remember(self._good_origins, value)
        return None

    def _origin_ok(self, origin: str) -> bool:
        normalised = origin.strip().rstrip("/").lower()
        if normalised == "null":
            return False  # sandboxed frames, file: pages, cross-origin redirects: never a client of ours
        if normalised in self.origins:
            return True
        try:
            name = urlsplit(normalised).hostname or ""
        except ValueError:
            return False
        return name in _LOCAL_NAMES


def _remember(accepted: set[bytes], value: bytes) -> None:
    if len(accepted) < _CACHE_LIMIT:
        accepted.add(value)


def refusal_response(path: str, problem: HttpProblem) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and JSON body for a refused request, in a shape the route's clients read:
    the model API's (both Anthropic's and OpenAI's fields) under /v1/, the gateway's elsewhere."""
    if path.startswith("/v1/"):
        error_type = "permission_error" if problem.status == 403 else "invalid_request_error"
        payload: dict[str, object] = {
            "type": "error",
            "error": {"type": error_type, "message": problem.message, "code": problem.error},
        }
    else:
        payload = {"error": problem.error, "message": problem.message}
    body = orjson.dumps(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return problem.status, headers, body
