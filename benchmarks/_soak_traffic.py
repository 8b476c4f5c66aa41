"""The soak's traffic: the request kinds, the client that sends them, and the policy they are written against.

Each request carries a tag, ``<run>-<number>-<kind>``, that its row stores (the JSON-RPC id of a
tools/call is the audit row's ``request_id``; the ``x-claude-code-session-id`` header of a model
request is the ledger row's ``session_id``), so the rows of one run can be told apart and matched to
what the client saw. What the client saw decides whether a row is due (see benchmarks/soak.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from _support import ROOT
from mcp_tools_call import ENVELOPE

from gateway_common.http import ConnectError, ConnectionLost
from gateway_common.http import HttpResponse as Response
from gateway_common.http.pool import HttpPool

ROW, NO_ROW, REFUSED, LOST, ERROR = "row due", "no row due", "refused at connect", "lost", "error"
"""What became of a request, seen from the client; only ROW requests must have a row."""
KEYS = {name: f"mgw_soak_{name}_{secrets.token_hex(16)}" for name in ("main", "limited", "broke")}
WRONG_KEY = "mgw_soak_wrong_0123456789abcdef0123456789abcdef"
KINDS: dict[str, tuple[str, int, str]] = {
    # name: (table, weight, what)
    "call26_stdio": ("audit", 14, "2026 echo, stdio upstream"),
    "call26_http": ("audit", 8, "2026 add, HTTP upstream"),
    "call25": ("audit", 12, "2025 session, echo on either"),
    "tool_error": ("audit", 3, "2026, tool answers isError"),
    "unknown_tool": ("audit", 3, "2026, no such tool"),
    "hidden_tool": ("audit", 3, "2025, tool hidden from the key"),
    "limited_tool": ("audit", 4, "2026, key with 30 calls/min"),
    "slow_call": ("audit", 4, "2026, tool takes 1 s"),
    "cut_call": ("audit", 3, "2026, closed after progress"),
    "unauth_call": ("audit", 1, "2026, wrong key"),
    "message": ("ledger", 14, "/v1/messages, whole"),
    "stream": ("ledger", 10, "/v1/messages, streamed"),
    "cut_stream": ("ledger", 5, "streamed, cut after text"),
    "chat": ("ledger", 5, "/v1/chat/completions"),
    "model_denied": ("ledger", 3, "model the key may not use"),
    "limited_model": ("ledger", 4, "key with 20 requests/min"),
    "budget_refused": ("ledger", 3, "key with a $0 budget"),
    "unauth_model": ("ledger", 1, "wrong key"),
}
TABLES = {"audit": ("tool_calls", "request_id"), "ledger": ("model_requests", "session_id")}


def kind_of(tag: str) -> str:
    return tag.rsplit("-", 1)[1]


class Refused(Exception):
    """Nothing was dispatched: connect refused, or the connection closed before any answer."""

    def __init__(self, outcome: str) -> None:
        self.outcome = outcome


async def send(pool: HttpPool, path: str, headers: dict[str, str], body: bytes) -> Response:
    try:
        return await pool.request("POST", path, headers, body)
    except ConnectError:
        raise Refused(REFUSED) from None
    except ConnectionLost as exc:
        raise Refused(LOST if exc.before_response else ERROR) from None


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Load:
    port: int
    rng: random.Random
    outcome: dict[str, str] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    in_flight: set[str] = field(default_factory=set)
    sessions: dict[int, str] = field(default_factory=dict)
    session_locks: dict[int, asyncio.Lock] = field(default_factory=dict)
    mcp: HttpPool = field(init=False)
    model: HttpPool = field(init=False)

    def __post_init__(self) -> None:
        self.mcp = HttpPool(f"http://127.0.0.1:{self.port}", read_timeout=60)
        self.model = HttpPool(f"http://127.0.0.1:{self.port}", read_timeout=60)

    async def run(self, tag: str) -> None:
        self.in_flight.add(tag)
        try:
            outcome = await self.request(kind_of(tag), tag)
        except Refused as exc:
            outcome = exc.outcome
        except Exception as exc:  # a timeout, a broken answer: counted, never expected
            outcome = ERROR
            self.errors[f"{kind_of(tag)}: {type(exc).__name__}: {exc}"[:160]] += 1
        finally:
            self.in_flight.discard(tag)
        self.outcome[tag] = outcome

    async def request(self, kind: str, tag: str) -> str:
        haiku = "claude-haiku-4-5"
        match kind:
            case "call26_stdio":
                return await self.tools_call(tag, "stdio__echo", {"text": tag})
            case "call26_http":
                return await self.tools_call(tag, "http__add", {"a": 1, "b": 2})
            case "call25":
                tool = self.rng.choice(["stdio__echo", "http__echo"])
                return await self.tools_call(tag, tool, {"text": tag}, era="2025")
            case "tool_error":
                return await self.tools_call(tag, "http__fail", {})
            case "unknown_tool":
                return await self.tools_call(tag, "nosuch__tool", {})
            case "hidden_tool":
                return await self.tools_call(tag, "stdio__big", {"size": 3}, era="2025")
            case "limited_tool":
                return await self.tools_call(tag, "stdio__add", {"a": 1, "b": 1}, key="limited")
            case "slow_call":
                return await self.tools_call(tag, "http__slow", {"seconds": 1})
            case "cut_call":
                return await self.cut_call(tag)
            case "unauth_call":
                return await self.tools_call(tag, "stdio__echo", {"text": tag}, key="wrong")
            case "message":
                return await self.model_call(tag, haiku)
            case "stream":
                return await self.model_call(tag, haiku, stream=True)
            case "cut_stream":
                return await self.model_call(tag, haiku, stream=True, cut=True)
            case "chat":
                return await self.model_call(tag, "gpt-4o-mini", stream=self.rng.random() < 0.5, chat=True)
            case "model_denied":
                return await self.model_call(tag, "claude-opus-4-8")
            case "limited_model":
                return await self.model_call(tag, haiku, key="limited")
            case "budget_refused":
                return await self.model_call(tag, haiku, key="broke")
            case "unauth_model":
                return await self.model_call(tag, haiku, key="wrong")
        raise ValueError(kind)

    # -- /mcp ------------------------------------------------------------------------------------

    def mcp_headers(self, key: str, era: str, name: str = "") -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "authorization": f"Bearer {KEYS.get(key, WRONG_KEY)}",
            "mcp-protocol-version": "2026-07-28" if era == "2026" else "2025-11-25",
        }
        if era == "2026":
            headers |= {"mcp-method": "tools/call", "mcp-name": name}
        return headers

    async def tools_call(
        self, tag: str, name: str, arguments: dict[str, object], *, key: str = "main", era: str = "2026"
    ) -> str:
        headers = self.mcp_headers(key, era, name)
        params: dict[str, object] = {"name": name, "arguments": arguments}
        slot = self.rng.randrange(4)
        if era == "2026":
            params["_meta"] = ENVELOPE
        else:
            headers["mcp-session-id"] = await self.session(slot)
        body = orjson.dumps({"jsonrpc": "2.0", "id": tag, "method": "tools/call", "params": params})
        async with await send(self.mcp, "/mcp", headers, body) as response:
            answer = await response.read()
        if response.status == 401:
            return NO_ROW
        if response.status == 404 and b"Session not found" in answer:
            if self.sessions.get(slot) == headers.get("mcp-session-id"):
                del self.sessions[slot]
            return NO_ROW
        return ROW

    async def session(self, slot: int) -> str:
        """One of four 2025-11-25 sessions, opened when missing or forgotten by a restarted gateway."""
        async with self.session_locks.setdefault(slot, asyncio.Lock()):
            if slot not in self.sessions:
                headers = self.mcp_headers("main", "2025")
                init = {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "soak-2025", "version": "1"},
                }
                body = orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
                async with await send(self.mcp, "/mcp", headers, body) as response:
                    await response.read()
                session_id = response.headers.get("mcp-session-id")
                if session_id is None:
                    raise RuntimeError(f"initialize answered {response.status} without a session")
                headers["mcp-session-id"] = session_id
                note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
                async with await send(self.mcp, "/mcp", headers, note) as response:
                    await response.read()
                self.sessions[slot] = session_id
            return self.sessions[slot]

    async def cut_call(self, tag: str) -> str:
        """A 2026 call of a 5 s tool, closed by the client once its first progress event arrived."""
        params = {
            "name": "http__slow",
            "arguments": {"seconds": 5},
            "_meta": {**ENVELOPE, "progressToken": tag},
        }
        body = orjson.dumps({"jsonrpc": "2.0", "id": tag, "method": "tools/call", "params": params})
        response = await send(self.mcp, "/mcp", self.mcp_headers("main", "2026", "http__slow"), body)
        try:
            seen = b""
            while chunk := await response.read_some():
                seen += chunk
                if b"notifications/progress" in seen:
                    break
            return NO_ROW if response.status == 401 else ROW
        finally:
            response.release()  # closes the connection unless the answer was read to its end

    # -- the model API ---------------------------------------------------------------------------

    async def model_call(
        self,
        tag: str,
        model: str,
        *,
        key: str = "main",
        stream: bool = False,
        cut: bool = False,
        chat: bool = False,
    ) -> str:
        secret = KEYS.get(key, WRONG_KEY)
        headers = {"content-type": "application/json", "x-claude-code-session-id": tag}
        if chat:
            headers["authorization"] = f"Bearer {secret}"
        else:
            headers |= {"anthropic-version": "2023-06-01", "x-api-key": secret}
        request: dict[str, object] = {
            "model": model,
            "max_tokens": 256,
            "messages": [{"role": "user", "content": "Say hello in a few words, please."}],
        }
        if stream:
            request["stream"] = True
        response = await send(
            self.model, "/v1/chat/completions" if chat else "/v1/messages", headers, orjson.dumps(request)
        )
        try:
            if response.status == 401:
                await response.read()
                return NO_ROW
            if "gateway-request-id" not in response.headers:
                raise RuntimeError(f"answer {response.status} without gateway-request-id")
            with contextlib.suppress(ConnectionLost):  # the row is due whatever happens to the body
                while chunk := await response.read_some():
                    if cut and b"content_block_delta" in chunk:
                        break
            return ROW
        finally:
            response.release()  # closes the connection unless the answer was read to its end


async def generate(load: Load, run_id: str, seconds: float, rate: float) -> set[asyncio.Task[None]]:
    """Start ``rate`` requests per second for ``seconds`` whatever the answers; returns the tasks left."""
    names = list(KINDS)
    weights = [KINDS[name][1] for name in names]
    loop = asyncio.get_running_loop()
    started, sent = loop.time(), 0
    tasks: set[asyncio.Task[None]] = set()
    while (elapsed := loop.time() - started) < seconds:
        for _ in range(int(elapsed * rate) - sent):
            kind = load.rng.choices(names, weights)[0]
            tasks.add(asyncio.create_task(load.run(f"{run_id}-{sent:07d}-{kind}")))
            sent += 1
        tasks = {t for t in tasks if not t.done()}
        await asyncio.sleep(0.01)
    return tasks


def gateway_config(workdir: Path, port: int, http_port: int, mock_port: int, url: str) -> dict[str, object]:
    digest = {name: hashlib.sha256(secret.encode()).hexdigest() for name, secret in KEYS.items()}
    limited = {"requests_per_minute": 20, "tool_calls_per_minute": 30}
    return {
        "gateway": {
            "port": port,
            "database_url": url,
            "audit": {"fallback_file": str(workdir / "audit-fallback.jsonl")},
        },
        "teams": [{"name": "soak"}],
        "virtual_keys": [
            {
                "id": "soak",
                "team": "soak",
                "secret_sha256": digest["main"],
                "allowed_models": ["claude-haiku-*", "gpt-*"],
            },
            {"id": "soak_limited", "team": "soak", "secret_sha256": digest["limited"], "rate_limit": limited},
            {"id": "soak_broke", "team": "soak", "secret_sha256": digest["broke"]},
        ],
        "mcp": {
            "servers": [
                {
                    "name": "stdio",
                    "command": "python",
                    "args": ["-m", "tests.fixtures.upstream"],
                    "cwd": str(ROOT),
                },
                {"name": "http", "url": f"http://127.0.0.1:{http_port}/mcp"},
            ],
            "virtual_key_permissions": {
                "soak": {"stdio": ["echo", "add", "fail"], "http": ["echo", "add", "fail", "slow"]},
                "soak_limited": "*",
                "soak_broke": "*",
            },
        },
        "providers": [
            {"name": "mock", "kind": "anthropic", "base_url": f"http://127.0.0.1:{mock_port}"},
            {
                "name": "mock-openai",
                "kind": "openai-compatible",
                "base_url": f"http://127.0.0.1:{mock_port}/v1",
            },
        ],
        "routes": [{"match": "claude-*", "provider": "mock"}, {"match": "gpt-*", "provider": "mock-openai"}],
        "budgets": {"virtual_key_overrides": [{"id": "soak_broke", "daily_limit_usd": 0}]},
        "llm_proxy": {"ledger_fallback_file": str(workdir / "ledger-fallback.jsonl")},
    }
