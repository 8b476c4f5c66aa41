"""Providers as the proxy reaches them: an HTTP client each, and their keys.

The client comes from `gateway_common.http.open_client`, one per provider
origin: the fast pool (`gateway_common.http.pool.HttpPool`, an asyncio protocol
around httptools, the MCP side's client too) unless the provider needs what only
the httpx-based client does: an HTTP(S) proxy from the environment
(``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``, ``NO_PROXY`` honoured), HTTP/2,
custom TLS (``tls``) or ``http_client: httpx`` (see `gateway_common.http.factory`;
the choice and why is logged at start). The pool replaced aiohttp after
``benchmarks/llm_proxy_bench.py`` (2 cores, four interleaved runs of each,
aiohttp as the load generator) measured, at one client, the gateway's CPU per
request fall from 0.58-0.63 to 0.43-0.45 ms streaming (one disturbed run 0.53)
and from 0.42-0.49 to 0.29-0.40 ms not, and the latency it adds (p50) from
0.53-0.62 to 0.38-0.46 ms streaming and from 0.40-0.45 to 0.23-0.38 ms not; at
32 clients the added p50 fell from 12-17 to 7-9 ms streaming and from 8-10 to
5-7 ms not. aiohttp had itself replaced httpx, which cost about 1 ms per request
here (``../shared/notes/hot-path.md``), which is why httpx carries only the
providers that need it.

Whichever client: ``connect_timeout_seconds`` bounds DNS, TCP and TLS set-up;
``timeout_seconds`` is the longest the provider may stay silent (before the
response headers, or between two reads of the body); idle connections are
dropped after `IDLE_SECONDS`; a reused connection that dies before any byte of
the answer is retried once only within `STALE_RETRY_SECONDS` of sending (later,
the provider may already have worked, and billed, on it). No ``Accept-Encoding``
is sent, so bodies arrive and are relayed byte for byte (identity encoding).

A provider's key is read from the environment once at start-up, chosen per
request by weight when there are several, and sent only in the upstream
request's headers. Nothing here logs headers or formats exceptions with them.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

from gateway_common.http import (
    ClientOptions,
    ConnectError,
    ConnectionLost,
    HttpClient,
    HttpResponse,
    InvalidRequest,
    MalformedResponse,
    ReadTimeout,
    open_client,
    request_target,
)
from policies.providers import ProviderConfig

logger = logging.getLogger("llm_proxy.upstream")

# Client headers that matter upstream; everything else (the virtual key above all) stays here.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta", "user-agent")
MAX_CONNECTIONS = 1024
"""Per provider; a request beyond it waits for a connection."""
IDLE_SECONDS = 30.0
STALE_RETRY_SECONDS = 1.0


class ProviderUnavailable(Exception):
    """The provider cannot be tried at all (no key configured); counts as a failed attempt."""


@dataclass(frozen=True, slots=True)
class _Key:
    env: str
    value: str
    weight: float


class ProviderClient:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind
        self.base_url = config.base_url.rstrip("/")
        self.pool = make_pool(config, self.base_url)
        self._prefix = request_target(self.base_url).rstrip("/")
        self.extra_headers = dict(config.headers)
        self.missing_keys: list[str] = []
        keys = []
        for weighted in config.key_envs():
            value = os.environ.get(weighted.env, "")
            if value:
                keys.append(_Key(weighted.env, value, weighted.weight))
            else:
                self.missing_keys.append(weighted.env)
        self._keys = keys
        self._weights = [k.weight for k in keys]
        self.needs_key = bool(config.key_envs())
        self._targets: dict[tuple[str, str], str] = {}

    @property
    def secrets(self) -> list[str]:
        """This provider's key values (for redaction checks); never logged."""
        return [k.value for k in self._keys]

    @property
    def price_hint(self) -> tuple[str | None, str | None]:
        """(provider id, API URL) for looking up prices in genai-prices."""
        if self.kind == "anthropic":
            return "anthropic", None
        return None, self.base_url

    def _key(self) -> str | None:
        if not self._keys:
            if self.needs_key:
                raise ProviderUnavailable(
                    f"provider {self.name!r} has no API key: set {', '.join(self.missing_keys)}"
                )
            return None
        if len(self._keys) == 1:
            return self._keys[0].value
        return random.choices(self._keys, self._weights)[0].value

    def target(self, path: str, query: str) -> str:
        """The request target for an Anthropic-style ``path`` (``/v1/messages``) under the base URL's path.

        OpenAI-compatible base URLs already end in /v1 (``http://host/v1`` + ``/chat/completions``).
        """
        target = self._targets.get((path, query))
        if target is None:
            upstream_path = path[3:] if self.kind == "openai-compatible" and path.startswith("/v1/") else path
            target = f"{self._prefix}{upstream_path}"
            if query:
                target = f"{target}?{query}"
            if len(self._targets) < 256:
                self._targets[(path, query)] = target
        return target

    def headers(self, client_headers: dict[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        for name in FORWARDED_HEADERS:
            value = client_headers.get(name)
            if value is not None:
                headers[name] = value
        if self.kind == "anthropic" and "anthropic-version" not in headers:
            headers["anthropic-version"] = "2023-06-01"
        headers.update(self.extra_headers)
        key = self._key()
        if key is not None:
            if self.kind == "anthropic":
                headers["x-api-key"] = key
            else:
                headers["authorization"] = f"Bearer {key}"
        return headers

    async def send(self, path: str, query: str, body: bytes, client_headers: dict[str, str]) -> HttpResponse:
        """POST one upstream request; returns at the response headers. The caller reads or closes it."""
        return await self.pool.request("POST", self.target(path, query), self.headers(client_headers), body)

    async def aclose(self) -> None:
        await self.pool.aclose()


def make_pool(config: ProviderConfig, base_url: str) -> HttpClient:
    """The provider's HTTP client (``base_url`` without its trailing slash); see the module docstring."""
    options = ClientOptions(
        max_connections=MAX_CONNECTIONS,
        connect_timeout=config.connect_timeout_seconds,
        read_timeout=config.timeout_seconds,
        idle_timeout=IDLE_SECONDS,
        retry_stale_within=STALE_RETRY_SECONDS,
        transport=config.http_client,
        http2=config.http2,
        tls=config.tls,
    )
    return open_client(base_url, options)


def open_provider(config: ProviderConfig) -> tuple[ProviderClient, list[str]]:
    """A client for one provider (its connection pool connects on first use) and warnings about it."""
    try:
        client = ProviderClient(config)
    except ValueError as exc:  # not an http(s) URL
        raise ValueError(f"provider {config.name!r}: {exc}") from None
    warnings = []
    if client.missing_keys:
        warnings.append(
            f"provider {config.name!r}: environment variable(s) "
            f"{', '.join(client.missing_keys)} not set; "
            + (
                "requests to it fail over to fallbacks"
                if not client.secrets
                else "using the keys that are set"
            )
        )
    return client, warnings


def open_providers(configs: list[ProviderConfig]) -> tuple[dict[str, ProviderClient], list[str]]:
    """A client per provider (one connection pool each) and start-up warnings."""
    clients: dict[str, ProviderClient] = {}
    warnings: list[str] = []
    for config in configs:
        clients[config.name], found = open_provider(config)
        warnings += found
    return clients, warnings


def describe_failure(exc: BaseException) -> str:
    """A log- and client-safe description of a connection failure (no headers, no request, no host)."""
    if isinstance(exc, ProviderUnavailable):
        return str(exc)
    if isinstance(exc, ReadTimeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectError):
        return f"cannot connect ({exc.reason})"
    if isinstance(exc, ConnectionLost):
        return "server closed the connection" if exc.before_response else "response body broken off"
    if isinstance(exc, MalformedResponse):
        return "malformed HTTP response"
    if isinstance(exc, InvalidRequest):
        return "refused to send a header that could inject others (CR, LF or a control character)"
    return f"connection failed ({type(exc).__name__})"
