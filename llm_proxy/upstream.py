"""Providers as the proxy reaches them: one pooled aiohttp session each, and their keys.

aiohttp is the upstream client because it was measured to be the cheapest
library client here: about 0.24 ms of client CPU per request against httpx's
1.1 ms, and at 32 concurrent requests 3.4 ms p50 against httpx's 53 ms
(``benchmarks/llm_proxy_clients.py``; ``../shared/notes/hot-path.md``).

A provider's key is read from the environment once at start-up, chosen per
request by weight when there are several, and sent only in the upstream
request's headers. Nothing here logs headers or formats exceptions with them.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import aiohttp
from yarl import URL

from policies.providers import ProviderConfig
from policies.servers import MissingEnvironmentVariable, interpolate

logger = logging.getLogger("llm_proxy.upstream")

# Client headers that matter upstream; everything else (the virtual key above all) stays here.
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta", "user-agent")


class ProviderUnavailable(Exception):
    """The provider cannot be tried at all (no key configured); counts as a failed attempt."""


@dataclass(frozen=True, slots=True)
class _Key:
    env: str
    value: str
    weight: float


class ProviderClient:
    def __init__(self, config: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind
        self.session = session
        self.base_url = interpolate(config.base_url).rstrip("/")
        self.extra_headers = {name: interpolate(value) for name, value in config.headers.items()}
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
        self._urls: dict[tuple[str, str], URL] = {}

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

    def url(self, path: str, query: str) -> URL:
        """``path`` is the Anthropic-style path (``/v1/messages``); OpenAI base URLs already end in /v1."""
        url = self._urls.get((path, query))
        if url is None:
            upstream_path = path[3:] if self.kind == "openai-compatible" and path.startswith("/v1/") else path
            url = URL(
                f"{self.base_url}{upstream_path}?{query}" if query else f"{self.base_url}{upstream_path}"
            )
            if len(self._urls) < 256:
                self._urls[(path, query)] = url
        return url

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

    async def send(
        self, path: str, query: str, body: bytes, client_headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """POST one upstream request; the caller reads and releases the response."""
        return await self.session.post(
            self.url(path, query), data=body, headers=self.headers(client_headers), allow_redirects=False
        )


def make_session(config: ProviderConfig) -> aiohttp.ClientSession:
    """A pooled session per provider; its timeouts bound connecting and each wait for the provider's bytes."""
    connector = aiohttp.TCPConnector(limit=1024, limit_per_host=0, keepalive_timeout=30.0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout_seconds, sock_read=config.timeout_seconds
        ),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        trust_env=False,
    )


def open_providers(configs: list[ProviderConfig]) -> tuple[dict[str, ProviderClient], list[str]]:
    """A client per provider (one session each) and start-up warnings."""
    clients: dict[str, ProviderClient] = {}
    warnings: list[str] = []
    for config in configs:
        try:
            client = ProviderClient(config, make_session(config))
        except MissingEnvironmentVariable as exc:
            raise ValueError(f"provider {config.name!r}: {exc}") from None
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
        clients[config.name] = client
    return clients, warnings


def describe_failure(exc: BaseException) -> str:
    """A log- and client-safe description of a connection failure (no headers, no request repr)."""
    if isinstance(exc, ProviderUnavailable):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or type(exc.os_error).__name__})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body broken off"
    return f"connection failed ({type(exc).__name__})"
