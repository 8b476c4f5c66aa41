"""Bad input at /mcp always gets a clear error, and the gateway keeps serving.

Raw HTTP on purpose: an SDK client would never send most of these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from tests.conftest import RunningGateway, mcp_client, run_gateway, upstream_stdio

KEY = "alice-secret-0123456789"
MODERN = {"MCP-Protocol-Version": "2026-07-28", "Accept": "application/json, text/event-stream"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}
CONFIG: dict[str, Any] = {
    "gateway": {"max_body_bytes": 4096},
    "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
    "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"alice": "*"}},
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_KEY_ALICE", KEY)
        async with run_gateway(CONFIG, tmp_path_factory.mktemp("gw")) as gw:
            yield gw


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(
        base_url=gateway.base, headers={"Authorization": f"Bearer {KEY}"}
    ) as client:
        yield client


def modern(
    method: str, params: dict[str, Any] | None = None, request_id: int = 1, name: str | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    body: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": method,
        "params": {**(params or {}), "_meta": ENVELOPE},
    }
    headers = {**MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return body, headers


async def still_serving(gateway: RunningGateway) -> None:
    async with mcp_client(gateway.url, KEY, "2026-07-28") as client:
        result = await client.call_tool("alpha__echo", {"text": "still here"})
    assert result.content[0].text == "still here"  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("auth", "expected"),
    [(None, 401), ("Bearer wrong-key", 401), ("Basic YWxpY2U6eA==", 401), ("Bearer", 401)],
)
async def test_missing_or_wrong_key_is_401_with_a_json_body(
    gateway: RunningGateway, auth: str | None, expected: int
) -> None:
    headers = {"Authorization": auth} if auth is not None else {}
    body, extra = modern("tools/list")
    async with httpx2.AsyncClient() as client:
        response = await client.post(gateway.url, json=body, headers={**extra, **headers})
    assert response.status_code == expected
    assert response.json() == {
        "error": "unauthorized",
        "message": "Missing or invalid virtual key: send 'Authorization: Bearer <key>'",
    }
    assert "tools" not in response.text


@pytest.mark.anyio
async def test_malformed_json(gateway: RunningGateway, http: httpx2.AsyncClient) -> None:
    response = await http.post("/mcp", content=b'{"jsonrpc": "2.0", "id": 1, "method": ', headers=MODERN)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32700
    assert "not valid JSON" in error["message"]
    await still_serving(gateway)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"jsonrpc": "2.0", "id": 1}, 'missing "method"'),
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], "batches are not supported"),
        ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, '"jsonrpc" must be "2.0"'),
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1, 2]}, '"params" must be an object'),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}, '"id" must be a string or an integer'),
        ("just a string", "must be a JSON-RPC object"),
    ],
)
async def test_invalid_requests(
    gateway: RunningGateway, http: httpx2.AsyncClient, payload: Any, fragment: str
) -> None:
    response = await http.post("/mcp", json=payload, headers=MODERN)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32600
    assert fragment in error["message"]


@pytest.mark.anyio
async def test_unknown_method(gateway: RunningGateway, http: httpx2.AsyncClient) -> None:
    body, headers = modern("tools/explode")
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 404
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 1,
        "error": {"code": -32601, "message": "Method not found: 'tools/explode'"},
    }
    await still_serving(gateway)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"name": 5}, '"name" (a string)'),
        ({"name": "alpha__echo", "arguments": [1]}, '"arguments" must be an object'),
    ],
)
async def test_wrong_param_types(
    gateway: RunningGateway, http: httpx2.AsyncClient, params: dict[str, Any], fragment: str
) -> None:
    body, headers = modern(
        "tools/call", params, name=params["name"] if isinstance(params["name"], str) else None
    )
    if not isinstance(params["name"], str):
        headers["Mcp-Name"] = "5"
    response = await http.post("/mcp", json=body, headers=headers)
    error = response.json()["error"]
    assert error["code"] in (-32602, -32020)
    if error["code"] == -32602:
        assert fragment in error["message"]
    assert response.status_code == 400


@pytest.mark.anyio
async def test_tool_argument_errors_come_from_the_upstream(gateway: RunningGateway) -> None:
    async with mcp_client(gateway.url, KEY, "2026-07-28") as client:
        result = await client.call_tool("alpha__add", {"a": "not a number", "b": 1})
    assert result.is_error
    assert "validation error" in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_body_over_the_limit_is_413(gateway: RunningGateway, http: httpx2.AsyncClient) -> None:
    body, headers = modern(
        "tools/call", {"name": "alpha__echo", "arguments": {"text": "x" * 10_000}}, name="alpha__echo"
    )
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    assert "4096 bytes" in response.json()["message"]

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    streamed = await http.post("/mcp", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    await still_serving(gateway)


@pytest.mark.anyio
async def test_header_and_envelope_mismatches_are_rejected(
    gateway: RunningGateway, http: httpx2.AsyncClient
) -> None:
    body, headers = modern("tools/list")
    headers["Mcp-Method"] = "tools/call"
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == -32020

    body, headers = modern("tools/list")
    del body["params"]["_meta"]
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400 and "params._meta" in response.json()["error"]["message"]


@pytest.mark.anyio
async def test_legacy_session_rules(gateway: RunningGateway, http: httpx2.AsyncClient) -> None:
    ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
    no_session = await http.post("/mcp", json=ping)
    assert no_session.status_code == 400
    assert "Mcp-Session-Id" in no_session.json()["error"]["message"]

    unknown = await http.post("/mcp", json=ping, headers={"Mcp-Session-Id": "nope"})
    assert unknown.status_code == 404

    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    opened = await http.post("/mcp", json=init)
    assert opened.status_code == 200
    assert opened.json()["result"]["protocolVersion"] == "2025-06-18"
    # Tools always; resources and prompts because the test upstream (the SDK's server) offers them.
    assert opened.json()["result"]["capabilities"] == {
        "tools": {"listChanged": True},
        "resources": {"listChanged": True, "subscribe": False},
        "prompts": {"listChanged": True},
    }
    session = opened.headers["mcp-session-id"]

    bad_version = await http.post(
        "/mcp", json=ping, headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": "1999-01-01"}
    )
    assert bad_version.status_code == 400

    ok = await http.post("/mcp", json=ping, headers={"Mcp-Session-Id": session})
    assert ok.status_code == 200 and ok.json() == {"jsonrpc": "2.0", "id": 7, "result": {}}

    deleted = await http.delete("/mcp", headers={"Mcp-Session-Id": session})
    assert deleted.status_code == 200
    gone = await http.post("/mcp", json=ping, headers={"Mcp-Session-Id": session})
    assert gone.status_code == 404


@pytest.mark.anyio
async def test_another_keys_session_is_not_found(gateway: RunningGateway, keys_env: dict[str, str]) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    async with httpx2.AsyncClient(base_url=gateway.base) as client:
        opened = await client.post("/mcp", json=init, headers={"Authorization": f"Bearer {KEY}"})
        session = opened.headers["mcp-session-id"]
        # The same session id with no key, then with a key the gateway does not know.
        for auth in ({}, {"Authorization": "Bearer someone-else"}):
            response = await client.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
                headers={"Mcp-Session-Id": session, **auth},
            )
            assert response.status_code == 401


@pytest.mark.anyio
async def test_dns_rebinding_protection(gateway: RunningGateway, http: httpx2.AsyncClient) -> None:
    body, headers = modern("tools/list")
    evil = await http.post(
        "/mcp",
        json=body,
        headers={**headers, "Host": "evil.example.com", "Origin": "http://evil.example.com"},
    )
    assert evil.status_code in (403, 421)
    origin = await http.post("/mcp", json=body, headers={**headers, "Origin": "http://evil.example.com"})
    assert origin.status_code == 403
    local = await http.post("/mcp", json=body, headers={**headers, "Origin": "http://localhost:3000"})
    assert local.status_code == 200


@pytest.mark.anyio
async def test_other_http_methods_and_paths(gateway: RunningGateway, http: httpx2.AsyncClient) -> None:
    put = await http.put("/mcp", content=b"{}")
    assert put.status_code == 405 and put.json()["error"] == "method_not_allowed"
    missing = await http.get("/nowhere")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    notification = await http.post(
        "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=MODERN
    )
    assert notification.status_code == 202


@pytest.mark.anyio
async def test_2026_ping_is_a_removed_method_404_with_32601(
    gateway: RunningGateway, http: httpx2.AsyncClient
) -> None:
    """SEP-2575 removed ping from 2026-07-28: answered like any unknown method (as the SDK server does)."""
    body, headers = modern("ping")
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32601
    await still_serving(gateway)


@pytest.mark.anyio
async def test_an_unknown_protocol_version_is_told_the_versions_served(
    gateway: RunningGateway, http: httpx2.AsyncClient
) -> None:
    body, headers = modern("tools/list")
    body["params"]["_meta"] = {**ENVELOPE, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    headers["MCP-Protocol-Version"] = "2099-01-01"
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022
    assert error["data"] == {"supported": ["2026-07-28"], "requested": "2099-01-01"}
