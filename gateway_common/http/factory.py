"""Choosing the HTTP client for an origin (`open_client`)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway_common.http.base import HttpClient
from gateway_common.http.pool import HttpPool, request_target

__all__ = ["ClientOptions", "open_client", "request_target"]


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How to reach one origin. Timeouts in seconds; None means no limit."""

    connect_timeout: float = 10.0
    read_timeout: float | None = None
    """The longest the server may stay silent while a response (or more of it) is awaited."""
    idle_timeout: float | None = None
    """Kept-alive connections idle longer than this are closed instead of reused."""
    retry_stale_within: float | None = None
    """A reused connection found dead is retried only within this many seconds of sending."""
    max_connections: int = 256


def open_client(url: str, options: ClientOptions) -> HttpClient:
    """A client for the origin of ``url``."""
    return HttpPool(
        url,
        max_connections=options.max_connections,
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        idle_timeout=options.idle_timeout,
        retry_stale_within=options.retry_stale_within,
    )
