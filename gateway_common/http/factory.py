"""Choosing the HTTP client for an origin (`open_client`).

Two implementations stand behind `HttpClient`: the fast pool (`pool.HttpPool`, HTTP/1.1 on httptools,
the hot path's client) and `httpx_client.HttpxClient` (httpx: proxies, HTTP/2). With ``transport:
auto`` (the default) the httpx one carries an origin when a proxy from the environment applies to it
(``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``, unless ``NO_PROXY`` exempts it), when the policy sets
``http2`` or custom TLS (a CA bundle or a client certificate), and the fast pool carries everything
else. ``transport: fast`` keeps the fast pool (custom TLS included; an environment proxy is then not
used) and ``transport: httpx`` forces httpx. Which one an origin got, and why, is logged once.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from gateway_common.http.base import HttpClient
from gateway_common.http.pool import HttpPool, request_target
from gateway_common.http.proxies import Proxy, proxy_for
from gateway_common.http.tls import client_ssl_context
from policies.http_client import TlsFiles

__all__ = ["ClientOptions", "TransportChoice", "choose_transport", "open_client", "request_target"]

logger = logging.getLogger("gateway_common.http")
Transport = Literal["auto", "fast", "httpx"]
_SUPPORTED_PROXY_SCHEMES = ("http", "https")


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
    transport: Transport = "auto"
    """Which client: ``auto`` (see the module docstring), ``fast`` (the pool) or ``httpx``."""
    http2: bool = False
    """Offer HTTP/2 (ALPN, https only; HTTP/1.1 when the server declines). Needs httpx."""
    tls: TlsFiles | None = None
    """A CA bundle and/or a client certificate (https only)."""


@dataclass(frozen=True, slots=True)
class TransportChoice:
    kind: Literal["fast", "httpx"]
    reason: str
    """Why, safe to log: no credentials, no proxy password."""
    proxy: Proxy | None = None


def choose_transport(
    url: str, options: ClientOptions, environ: Mapping[str, str] | None = None
) -> TransportChoice:
    """Which implementation carries ``url`` and why; `ValueError` for a combination none can carry."""
    proxy = proxy_for(url, os.environ if environ is None else environ)
    tls = options.tls
    custom_tls = [
        what
        for what, value in (
            ("tls.ca_bundle", tls and tls.ca_bundle),
            ("tls.client_cert", tls and tls.client_cert),
        )
        if value
    ]
    if options.transport == "fast":
        if options.http2:
            raise ValueError("http2 needs the httpx transport; transport: fast cannot speak HTTP/2")
        reason = "transport: fast in the policy"
        if proxy is not None:
            reason += f" ({proxy.source} is not used for it)"
        return TransportChoice("fast", reason)
    if proxy is not None and urlsplit(proxy.url).scheme not in _SUPPORTED_PROXY_SCHEMES:
        raise ValueError(
            f"{proxy.source} names a {urlsplit(proxy.url).scheme}:// proxy; only http:// and https:// "
            "proxies are supported (exempt this origin with NO_PROXY, or set transport: fast)"
        )
    reasons = []
    if options.transport == "httpx":
        reasons.append("transport: httpx in the policy")
    if proxy is not None:
        reasons.append(f"proxy {proxy.display} from {proxy.source}")
    if options.http2:
        reasons.append("http2: true in the policy")
    reasons += [f"{what} in the policy" for what in custom_tls]
    if reasons:
        return TransportChoice("httpx", "; ".join(reasons), proxy)
    return TransportChoice("fast", "no proxy, HTTP/2 or custom TLS asked for")


_logged: set[tuple[str, str, str]] = set()


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_client(url: str, options: ClientOptions, environ: Mapping[str, str] | None = None) -> HttpClient:
    """A client for the origin of ``url`` (see the module docstring for which one)."""
    choice = choose_transport(url, options, environ)
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    key = (origin, choice.kind, choice.reason)
    if key not in _logged and len(_logged) < 1024:
        _logged.add(key)
        logger.info("HTTP client for %s: %s (%s)", origin, choice.kind, choice.reason)
        if choice.proxy is not None and _is_loopback(parts.hostname or ""):
            logger.warning(
                "%s is a loopback address but goes through the proxy from %s; add it to NO_PROXY "
                "if the proxy cannot reach this machine's loopback",
                origin,
                choice.proxy.source,
            )
    tls = options.tls
    ssl_context = None
    if parts.scheme == "https":
        ssl_context = client_ssl_context(
            tls.ca_bundle if tls else None, tls.client_cert if tls else None, tls.client_key if tls else None
        )
    if choice.kind == "httpx":
        from gateway_common.http.httpx_client import HttpxClient

        return HttpxClient(
            url, options, proxy=choice.proxy.url if choice.proxy else None, ssl_context=ssl_context
        )
    return HttpPool(
        url,
        max_connections=options.max_connections,
        connect_timeout=options.connect_timeout,
        ssl_context=ssl_context,
        read_timeout=options.read_timeout,
        idle_timeout=options.idle_timeout,
        retry_stale_within=options.retry_stale_within,
    )
