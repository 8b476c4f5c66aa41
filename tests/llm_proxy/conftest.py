"""Harness for the model proxy tests.

- `serve`: runs any ASGI app on uvicorn on a free loopback port inside the test's loop.
- `mock_api`: the mock model API on loopback (the upstream every test talks to).
- `start_proxy`: the whole gateway app with its lifespan, reached in memory through
  httpx's ASGITransport (or over a real socket with ``socket=True``), with an
  injectable clock; returns a `Proxy` with the runtime and a ledger reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import uvicorn
import yaml
from sqlmodel import Session, col, select

from examples.servers.mock_model_api import MockModelApi, MockOptions
from gateway_app.app import create_app
from gateway_app.settings import Settings
from llm_proxy.ledger import BudgetAlertRecord, ModelRequest
from llm_proxy.runtime import LlmRuntime
from policies.secrets import hash_secret

KEY_ALICE = "mgw_test_alice_0123456789"
KEY_BOB = "mgw_test_bob_0123456789"
KEY_CAROL = "mgw_test_carol_0123456789"
PROVIDER_KEY = "sk-provider-SECRET-7f3a9c1e5b"
BACKUP_KEY = "sk-backup-SECRET-2d8e4f6a0c"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """An injectable clock (seconds since the epoch) that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = (start or datetime(2026, 11, 27, 12, 0, tzinfo=UTC)).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, moment: datetime) -> None:
        self.now = moment.timestamp()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Any, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port in this event loop; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server did not start")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def mock_api(**options: Any) -> AsyncIterator[tuple[MockModelApi, str]]:
    api = MockModelApi(MockOptions(**options))
    async with serve(api) as url:
        yield api, url


def keys_config() -> dict[str, Any]:
    return {
        "teams": [{"name": "eng"}, {"name": "ops"}],
        "virtual_keys": [
            {"id": "alice", "team": "eng", "secret_sha256": hash_secret(KEY_ALICE)},
            {"id": "bob", "team": "eng", "secret_sha256": hash_secret(KEY_BOB)},
            {"id": "carol", "team": "ops", "secret_sha256": hash_secret(KEY_CAROL)},
        ],
    }


def proxy_config(upstream: str, **sections: Any) -> dict[str, Any]:
    """Three keys (alice and bob in team eng, carol in ops), one Anthropic provider at ``upstream``."""
    config: dict[str, Any] = keys_config()
    config["providers"] = [
        {"name": "primary", "kind": "anthropic", "base_url": upstream, "api_key_env": "TEST_PROVIDER_KEY"}
    ]
    config["routes"] = [{"match": "claude-*", "provider": "primary"}]
    config.update(sections)
    return config


@dataclass
class Proxy:
    app: Any
    llm: LlmRuntime
    client: httpx.AsyncClient
    url: str

    async def flush(self) -> None:
        await self.llm.ledger.flush()
        await self.llm.alerts.writer.flush()

    async def ledger(self) -> list[ModelRequest]:
        await self.flush()

        def read() -> list[ModelRequest]:
            with Session(self.llm.ledger.engine) as db:
                return list(db.exec(select(ModelRequest).order_by(col(ModelRequest.timestamp))).all())

        return await asyncio.to_thread(read)

    async def alerts(self) -> list[BudgetAlertRecord]:
        await self.flush()

        def read() -> list[BudgetAlertRecord]:
            with Session(self.llm.ledger.engine) as db:
                return list(db.exec(select(BudgetAlertRecord)).all())

        return await asyncio.to_thread(read)

    async def messages(self, key: str | None = KEY_ALICE, **body: Any) -> httpx.Response:
        payload = {
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
        }
        payload.update(body)
        headers = {"anthropic-version": "2023-06-01"}
        if key is not None:
            headers["x-api-key"] = key
        return await self.client.post("/v1/messages", json=payload, headers=headers)


def settings_for(config: dict[str, Any] | str, tmp_path: Path) -> Settings:
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    settings = Settings.from_text(textwrap.dedent(text), database_url=f"sqlite:///{tmp_path / 'gateway.db'}")
    policy = settings.policy
    audit = policy.gateway.audit.model_copy(update={"fallback_file": str(tmp_path / "audit-fallback.jsonl")})
    llm = policy.llm_proxy.model_copy(
        update={"ledger_fallback_file": str(tmp_path / "ledger-fallback.jsonl")}
    )
    gateway = policy.gateway.model_copy(update={"audit": audit})
    return Settings(
        policy.model_copy(update={"gateway": gateway, "llm_proxy": llm}), settings.source, settings.warnings
    )


@contextlib.asynccontextmanager
async def start_proxy(
    config: dict[str, Any] | str,
    tmp_path: Path,
    *,
    clock: Callable[[], float] | None = None,
    socket: bool = False,
) -> AsyncIterator[Proxy]:
    """The gateway app with its lifespan running; requests in memory unless ``socket``."""
    app = create_app(settings_for(config, tmp_path), clock=clock)
    if socket:
        async with serve(app, lifespan="on") as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield Proxy(app, app.state.llm, client, url)
        return
    async with app.router.lifespan_context(app) as maybe_state:
        state: dict[str, Any] = dict(maybe_state or {})

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, "state": dict(state)}, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=30) as client:
            yield Proxy(app, state["llm"], client, "http://localhost")


@pytest.fixture
def provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", PROVIDER_KEY)
    monkeypatch.setenv("TEST_BACKUP_KEY", BACKUP_KEY)
