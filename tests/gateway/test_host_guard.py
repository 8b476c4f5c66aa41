"""One Host/Origin guard (DNS-rebinding protection) in front of every HTTP route.

A real gateway on a loopback port; every request carries a valid key, so a route the guard
missed would answer it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway_app.guard import HostGuard
from llm_proxy.runtime import LlmRuntime
from policies.bounds import MAX_ECHO_CHARS
from policies.gateway_settings import GatewaySettings
from tests.conftest import RunningGateway, run_gateway

KEY = "guard-key-0123456789abcdef"
MODERN = {
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/list",
    "Accept": "application/json, text/event-stream",
}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "guard-test", "version": "1"},
}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": ENVELOPE}}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
CONFIG: dict[str, Any] = {
    "virtual_keys": [{"id": "k", "secret_env": "GUARD_TEST_KEY"}],
    "mcp": {"virtual_key_permissions": {"k": "*"}},
}
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/mcp", TOOLS_LIST),
    ("GET", "/mcp", None),
    ("DELETE", "/mcp", None),
    ("POST", "/v1/messages", MESSAGE),
    ("POST", "/v1/messages/count_tokens", MESSAGE),
    ("POST", "/v1/chat/completions", MESSAGE),
    ("GET", "/v1/models", None),
    ("GET", "/readyz", None),
    ("GET", "/healthz", None),
    ("GET", "/", None),
    ("HEAD", "/", None),
    ("GET", "/.well-known/oauth-protected-resource", None),
    ("GET", "/nowhere", None),
]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_TEST_KEY", KEY)
        async with run_gateway(CONFIG, tmp_path_factory.mktemp("gw")) as gw:
            yield gw


async def send(
    base: str, method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]
) -> httpx2.Response:
    auth = {"Authorization": f"Bearer {KEY}", "x-api-key": KEY, **MODERN}
    async with httpx2.AsyncClient(base_url=base, timeout=10) as http:
        return await http.request(method, path, json=body, headers={**auth, **headers})


def error_code(path: str, response: httpx2.Response) -> str:
    """The refusal's machine code, read the way the route's own clients read errors."""
    body = response.json()
    if path.startswith("/v1/"):
        # Anthropic clients read type/error.type/error.message, OpenAI clients error.message/type/code.
        assert body["type"] == "error" and body["error"]["message"] and body["error"]["type"]
        return str(body["error"]["code"])
    assert body["message"]
    return str(body["error"])


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_a_foreign_host_is_refused_on_every_route(
    gateway: RunningGateway, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await send(gateway.base, method, path, body, {"Host": "evil.example"})
    assert response.status_code == 421
    if method != "HEAD":
        assert error_code(path, response) == "misdirected_request"
        assert "'evil.example' is not served here" in response.text


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_origin_null_and_foreign_origins_are_refused_on_every_route(
    gateway: RunningGateway, method: str, path: str, body: dict[str, Any] | None
) -> None:
    for origin in ("null", "http://evil.example", "http://localhost.evil.example"):
        response = await send(gateway.base, method, path, body, {"Origin": origin})
        assert response.status_code == 403, origin
        if method != "HEAD":
            assert error_code(path, response) == "forbidden_origin"


@pytest.mark.anyio
async def test_refused_requests_do_no_work(gateway: RunningGateway) -> None:
    """A refused model request leaves no ledger row and a refused tools/call no audit row; the same
    requests from a local page are served (and recorded)."""
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "nothing__here", "arguments": {}, "_meta": ENVELOPE},
    }
    call_headers = {"Mcp-Method": "tools/call", "Mcp-Name": "nothing__here"}
    for headers, expected in (({"Host": "evil.example"}, 421), ({"Origin": "null"}, 403)):
        assert (await send(gateway.base, "POST", "/v1/messages", MESSAGE, headers)).status_code == expected
        refused = await send(gateway.base, "POST", "/mcp", call, {**call_headers, **headers})
        assert refused.status_code == expected
    llm: LlmRuntime = gateway.server.config.app.state.llm  # type: ignore[union-attr]
    await llm.ledger.flush()
    assert llm.ledger.written == 0
    assert await gateway.flushed_calls() == []
    local = {"Origin": "http://localhost:3000"}
    assert (await send(gateway.base, "POST", "/v1/messages", MESSAGE, local)).status_code == 404  # no route
    served = await send(gateway.base, "POST", "/mcp", call, {**call_headers, **local})
    assert served.json()["error"]["message"] == "Unknown tool: 'nothing__here'", served.text
    await llm.ledger.flush()
    assert llm.ledger.written == 1
    assert [c.status for c in await gateway.flushed_calls()] == ["denied"]


@pytest.mark.anyio
async def test_local_hosts_and_origins_pass(gateway: RunningGateway) -> None:
    port = gateway.base.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        for origin in (None, "http://localhost:3000", f"http://127.0.0.1:{port}"):
            headers = {"Host": host, **({"Origin": origin} if origin else {})}
            mcp = await send(gateway.base, "POST", "/mcp", TOOLS_LIST, headers)
            assert mcp.status_code == 200, (host, origin, mcp.text)
            health = await send(gateway.base, "GET", "/healthz", None, headers)
            assert health.status_code == 200
            models = await send(gateway.base, "GET", "/v1/models", None, headers)
            assert models.status_code == 200


@pytest.mark.anyio
async def test_configured_hosts_and_origins_pass_and_replace_the_defaults(tmp_path: Path) -> None:
    config = {
        **CONFIG,
        "gateway": {"allowed_hosts": ["gw.example.com"], "allowed_origins": ["https://app.example.com/"]},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GUARD_TEST_KEY", KEY)
        async with run_gateway(config, tmp_path) as gw:
            ok = {"Host": "gw.example.com:443", "Origin": "https://APP.example.com"}
            for method, path, body in (("POST", "/mcp", TOOLS_LIST), ("GET", "/v1/models", None)):
                assert (await send(gw.base, method, path, body, ok)).status_code == 200
            local = await send(gw.base, "GET", "/healthz", None, {"Host": "localhost"})
            assert local.status_code == 421
            other = {"Host": "gw.example.com", "Origin": "https://app.example.com.evil.net"}
            assert (await send(gw.base, "GET", "/healthz", None, other)).status_code == 403


@pytest.mark.anyio
async def test_an_echoed_host_or_origin_is_bounded(gateway: RunningGateway) -> None:
    long_host = "evil" + "x" * 5000 + ".example"
    response = await send(gateway.base, "GET", "/healthz", None, {"Host": long_host})
    assert response.status_code == 421
    message = response.json()["message"]
    assert len(message) < MAX_ECHO_CHARS + 40 and "x" * 200 not in message
    long_origin = "https://" + "o" * 5000 + ".example"
    response = await send(gateway.base, "POST", "/v1/messages", MESSAGE, {"Origin": long_origin})
    assert response.status_code == 403
    assert len(response.json()["error"]["message"]) < MAX_ECHO_CHARS + 40


def test_every_host_and_origin_header_counts() -> None:
    """A good first header must not carry a second, foreign one past the check (nor the cache)."""
    guard = HostGuard(GatewaySettings())
    good = [(b"host", b"127.0.0.1:8080"), (b"origin", b"http://localhost:3000")]
    assert guard.refusal(good) is None
    assert guard.refusal(good) is None  # now from the cache
    twice_host = [(b"host", b"127.0.0.1:8080"), (b"host", b"evil.example")]
    problem = guard.refusal(twice_host)
    assert problem is not None and problem.status == 421
    twice_origin = [*good, (b"origin", b"null")]
    problem = guard.refusal(twice_origin)
    assert problem is not None and problem.status == 403
    assert guard.refusal([(b"accept", b"*/*")]) is None  # no Host (HTTP/1.0), no Origin: passes


def test_a_gateway_on_all_interfaces_takes_any_host_but_still_checks_origins() -> None:
    guard = HostGuard(GatewaySettings(host="0.0.0.0"))
    assert guard.refusal([(b"host", b"gateway.internal:8080")]) is None
    problem = guard.refusal([(b"host", b"gateway.internal"), (b"origin", b"null")])
    assert problem is not None and problem.status == 403
