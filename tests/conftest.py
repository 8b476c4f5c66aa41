"""Shared fixtures: anyio on asyncio, a real gateway on a loopback port, MCP clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from hypothesis import HealthCheck, settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlmodel import Session, select

from gateway_app.app import create_app
from gateway_app.serving import uvicorn_config
from gateway_app.settings import Settings
from llm_proxy.runtime import LlmRuntime
from mcp_gateway.audit import ToolCall
from mcp_gateway.runtime import GatewayRuntime

REPO_ROOT = Path(__file__).resolve().parent.parent

# Property and fuzz tests: a fixed seed and a bounded number of examples by default (CI);
# HYPOTHESIS_PROFILE=deep explores far more inputs with a random seed.
settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
PYTHON = sys.executable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def upstream_stdio(name: str, *, marker_dir: Path | None = None, **extra: Any) -> dict[str, Any]:
    """A policy-file server entry for the test upstream over stdio."""
    args = ["-m", "tests.fixtures.upstream", "--name", name]
    if marker_dir is not None:
        args += ["--marker-dir", str(marker_dir)]
    return {"name": name, "command": PYTHON, "args": args, "cwd": str(REPO_ROOT), **extra}


@dataclass
class RunningGateway:
    url: str
    base: str
    runtime: GatewayRuntime
    server: uvicorn.Server
    llm: LlmRuntime

    def calls(self) -> list[ToolCall]:
        with Session(self.runtime.engine) as db:
            return list(db.exec(select(ToolCall).order_by(ToolCall.timestamp)).all())  # type: ignore[arg-type]

    async def flushed_calls(self) -> list[ToolCall]:
        await self.runtime.audit.flush()
        return await asyncio.to_thread(self.calls)


@contextlib.asynccontextmanager
async def run_gateway(
    config: str | dict[str, Any],
    tmp_path: Path,
    *,
    wait_ready: bool = True,
    app_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningGateway]:
    """Start the real app on uvicorn (real socket) inside the test's event loop."""
    import yaml

    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    settings = Settings.from_text(
        textwrap.dedent(text),
        database_url=f"sqlite:///{tmp_path / 'gateway.db'}",
        port=free_port(),
        **overrides,
    )
    audit = settings.policy.gateway.audit.model_copy(
        update={"fallback_file": str(tmp_path / "fallback.jsonl")}
    )
    gateway = settings.policy.gateway.model_copy(update={"audit": audit})
    settings = Settings(
        settings.policy.model_copy(update={"gateway": gateway}), settings.source, settings.warnings
    )
    app = create_app(settings, **(app_options or {}))
    config_ = uvicorn_config(app, gateway, host="127.0.0.1", log_level="warning")
    server = uvicorn.Server(config_)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("gateway did not start")
            await asyncio.sleep(0.01)
        runtime: GatewayRuntime = app.state.runtime
        if wait_ready:
            assert await runtime.hub.wait_ready(30), runtime.hub.status()
        base = f"http://127.0.0.1:{gateway.port}"
        yield RunningGateway(f"{base}/mcp", base, runtime, server, app.state.llm)
    finally:
        app.state.shutdown.trigger()
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def mcp_client(url: str, key: str | None, mode: str = "auto", **options: Any) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, **options) as client,
    ):
        yield client


@pytest.fixture
def keys_env() -> Iterator[dict[str, str]]:
    """Secrets for the keys that test configs declare with secret_env."""
    values = {
        "TEST_KEY_ALICE": "alice-secret-0123456789",
        "TEST_KEY_BOB": "bob-secret-0123456789",
        "TEST_KEY_CAROL": "carol-secret-0123456789",
    }
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    yield values
    for name, value in old.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a new empty PostgreSQL database, dropped after the test (tests/postgres.py: skipped
    loudly where the server is unreachable, a failure under CI=true)."""
    from tests.postgres import scratch_database

    with scratch_database("mcpgw_test") as url:
        yield url
