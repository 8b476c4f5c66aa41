"""Two real `mcp-gateway serve` processes sharing one SQLite file and one Redis (for the counters tests)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from examples.servers.mock_model_api import MockModelApi, MockOptions
from policies.secrets import hash_secret
from tests.conftest import PYTHON, REPO_ROOT, free_port, upstream_stdio
from tests.llm_proxy.conftest import serve

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TEST_PROVIDER_KEY": "sk-provider-test"}
PRICE = 0.001
"""USD per token (input and output): a mock request costs a few cents, exactly predictable."""
KEYS = {
    "rpm": ("sk-rpm-" + "a" * 24, {"requests_per_minute": 10}),
    "conc": ("sk-conc-" + "b" * 24, {"concurrent_requests": 3}),
    "tools": ("sk-tools-" + "c" * 24, {"tool_calls_per_minute": 5}),
    "spender": ("sk-spender-" + "d" * 24, None),
}
MCP_HEADERS = {
    "MCP-Protocol-Version": "2026-07-28",
    "Accept": "application/json, text/event-stream",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "alpha__echo",
}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def secret(key_id: str) -> str:
    return KEYS[key_id][0]


def policy(
    fast_api: str, slow_api: str, database: str, counters: dict[str, Any], team_budget: float
) -> dict[str, Any]:
    keys = []
    for key_id, (key_secret, limits) in KEYS.items():
        entry: dict[str, Any] = {"id": key_id, "secret_sha256": hash_secret(key_secret)}
        entry["team"] = "fin" if key_id == "spender" else "eng"
        if limits is not None:
            entry["rate_limit"] = limits
        keys.append(entry)
    return {
        "teams": [{"name": "eng"}, {"name": "fin"}],
        "virtual_keys": keys,
        "providers": [
            {"name": "fast", "kind": "anthropic", "base_url": fast_api, "api_key_env": "TEST_PROVIDER_KEY"},
            {"name": "slow", "kind": "anthropic", "base_url": slow_api, "api_key_env": "TEST_PROVIDER_KEY"},
        ],
        "routes": [
            {"match": "claude-opus-*", "provider": "slow"},
            {"match": "claude-*", "provider": "fast"},
        ],
        "pricing": {"models": {"claude-*": {"input_per_mtok": PRICE * 1e6, "output_per_mtok": PRICE * 1e6}}},
        "budgets": {"teams": [{"name": "fin", "daily_limit_usd": team_budget}]},
        "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"tools": "*"}},
        "gateway": {"database_url": database},
        "counters": counters,
    }


class InFlight:
    """ASGI wrapper counting the requests the mock model API is answering at once."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.now = 0
        self.peak = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


@dataclass
class Replicas:
    bases: list[str]
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    slow: InFlight
    http: httpx.AsyncClient

    def base(self, n: int) -> str:
        return self.bases[n % len(self.bases)]

    def log(self, n: int) -> str:
        return self.logs[n].read_text()

    async def message(self, n: int, key_id: str, model: str = "claude-haiku-4-5") -> httpx.Response:
        body = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-api-key": secret(key_id), "anthropic-version": "2023-06-01"}
        return await self.http.post(f"{self.base(n)}/v1/messages", json=body, headers=headers)

    async def tool_call(self, n: int, key_id: str) -> dict[str, Any]:
        body = {
            "jsonrpc": "2.0",
            "id": n,
            "method": "tools/call",
            "params": {"name": "alpha__echo", "arguments": {"text": "x"}, "_meta": ENVELOPE},
        }
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {secret(key_id)}"}
        answer = await self.http.post(f"{self.base(n)}/mcp", json=body, headers=headers)
        return dict(answer.json())

    async def ready(self, n: int) -> dict[str, Any]:
        return dict((await self.http.get(f"{self.base(n)}/readyz")).json())


def cost(response: httpx.Response) -> float:
    usage = response.json()["usage"]
    return float(usage["input_tokens"] + usage["output_tokens"]) * PRICE


@contextlib.asynccontextmanager
async def replicas(
    tmp_path: Path, counters: Sequence[dict[str, Any]], *, team_budget: float = 100.0
) -> AsyncIterator[Replicas]:
    """One gateway per ``counters`` section (same database, same upstreams, same mock model APIs)."""
    slow = InFlight(MockModelApi(MockOptions(latency_ms=400)))
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    async with serve(MockModelApi(MockOptions())) as fast_api, serve(slow) as slow_api:
        procs, logs, bases = [], [], []
        try:
            for n, section in enumerate(counters):
                port = free_port()
                path = tmp_path / f"gateway-{n}.yaml"
                path.write_text(yaml.safe_dump(policy(fast_api, slow_api, database, section, team_budget)))
                log = tmp_path / f"gateway-{n}.log"
                with log.open("wb") as out:
                    command = [
                        PYTHON,
                        "-m",
                        "gateway_app",
                        "serve",
                        "--config",
                        str(path),
                        "--port",
                        str(port),
                    ]
                    procs.append(
                        subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=out, stderr=subprocess.STDOUT)
                    )
                logs.append(log)
                bases.append(f"http://127.0.0.1:{port}")
            async with httpx.AsyncClient(timeout=30) as http:
                group = Replicas(bases, procs, logs, slow, http)
                for n in range(len(bases)):
                    await _wait_ready(group, n)
                yield group
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    await asyncio.to_thread(proc.wait, 30)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def _wait_ready(group: Replicas, n: int) -> None:
    for _ in range(400):
        assert group.procs[n].poll() is None, f"gateway {n} ended:\n{group.log(n)}"
        with contextlib.suppress(httpx.HTTPError):
            if (await group.http.get(f"{group.bases[n]}/readyz")).json().get("status") in (
                "ready",
                "degraded",
            ):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"gateway {n} not ready:\n{group.log(n)}")
