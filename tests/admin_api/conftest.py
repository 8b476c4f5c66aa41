"""The real app (`create_app`) started from a policy file on a temporary SQLite database, with its
lifespan running and requests made in memory (httpx ASGITransport), an injected clock, and the
tokens and keys the admin API tests use."""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import yaml

from gateway_app.app import create_app
from gateway_app.settings import Settings, load_policy_file
from llm_proxy.runtime import LlmRuntime
from mcp_gateway.runtime import GatewayRuntime
from policies.secrets import hash_secret

ADMIN = "adm-secret-0123456789abcdef"
AUDITOR = "aud-secret-0123456789abcdef"
ALICE = "vk-alice-secret-0123456789abcdef"
BOB = "vk-bob-secret-0123456789abcdef"


def policy_doc(**extra: Any) -> dict[str, Any]:
    """Two file keys in team eng (alice with limits and a budget of her own), an admin and an
    auditor token, team and org budgets; keys are reloaded from the database only every hour."""
    doc: dict[str, Any] = {
        "gateway": {"key_refresh_seconds": 3600},
        "teams": [{"name": "eng", "rate_limit": {"requests_per_minute": 1000}}, {"name": "ops"}],
        "virtual_keys": [
            {
                "id": "alice",
                "team": "eng",
                "secret_sha256": hash_secret(ALICE),
                "rate_limit": {
                    "requests_per_minute": 60,
                    "tool_calls_per_minute": 10,
                    "concurrent_requests": 2,
                },
            },
            {
                "id": "bob",
                "team": "eng",
                "secret_sha256": hash_secret(BOB),
                "rate_limit": {"tokens_per_minute": 5000},
            },
        ],
        "admin": {
            "tokens": [
                {"id": "ops", "role": "admin", "secret_sha256": hash_secret(ADMIN)},
                {"id": "audit", "role": "auditor", "secret_sha256": hash_secret(AUDITOR)},
            ]
        },
        "budgets": {
            "org_level": {"monthly_limit_usd": 1000},
            "teams": [{"name": "eng", "monthly_limit_usd": 100}],
            "virtual_key_overrides": [{"id": "alice", "daily_limit_usd": 5}],
        },
    }
    doc.update(extra)
    return doc


class FakeClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = (now or datetime.now(UTC)).timestamp()

    def __call__(self) -> float:
        return self.now


@dataclass
class Gateway:
    app: Any
    http: httpx2.AsyncClient
    path: Path
    """The policy file it was started from (reloads read it)."""
    url: str
    """Its database."""
    clock: FakeClock
    asgi: Any
    """The app with its lifespan state put in each request's scope."""

    @property
    def runtime(self) -> GatewayRuntime:
        runtime: GatewayRuntime = self.app.state.runtime
        return runtime

    @property
    def llm(self) -> LlmRuntime:
        llm: LlmRuntime = self.app.state.llm
        return llm

    def write(self, doc: dict[str, Any] | str) -> None:
        self.path.write_text(doc if isinstance(doc, str) else render(doc, self.url), encoding="utf-8")

    async def call(self, method: str, path: str, token: str | None = ADMIN, **kwargs: Any) -> httpx2.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def get(self, path: str, token: str | None = ADMIN, **params: Any) -> httpx2.Response:
        return await self.call("GET", path, token, params=params)


def from_address(gw: Gateway, host: str) -> httpx2.AsyncClient:
    """A client of ``gw`` whose requests come from ``host`` (wrong admin tokens count per address)."""
    transport = httpx2.ASGITransport(app=gw.asgi, client=(host, 40000))
    return httpx2.AsyncClient(transport=transport, base_url="http://localhost", timeout=30)


def render(doc: dict[str, Any], url: str) -> str:
    doc = copy.deepcopy(doc)
    doc.setdefault("gateway", {})["database_url"] = url
    return yaml.safe_dump(doc, sort_keys=False)


@contextlib.asynccontextmanager
async def admin_gateway(
    tmp_path: Path, doc: dict[str, Any] | None = None, *, clock: FakeClock | None = None
) -> AsyncIterator[Gateway]:
    clock = clock or FakeClock()
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    path = tmp_path / "gateway.yaml"
    path.write_text(render(doc or policy_doc(), url), encoding="utf-8")
    settings = Settings.from_loaded(load_policy_file(path))
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app) as maybe_state:
        state: dict[str, Any] = dict(maybe_state or {})

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, "state": dict(state)}, receive, send)

        transport = httpx2.ASGITransport(app=with_state)
        async with httpx2.AsyncClient(transport=transport, base_url="http://localhost", timeout=30) as http:
            yield Gateway(app, http, path, url, clock, with_state)


@contextlib.asynccontextmanager
async def on_socket(gw: Gateway) -> AsyncIterator[str]:
    """The same running gateway also on a loopback port (for the README's curl commands)."""
    from tests.llm_proxy.conftest import serve

    async with serve(gw.asgi) as url:
        yield url


def run_sh(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["timeout", "60", "bash", "-euo", "pipefail", "-c", code],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        check=False,
    )
