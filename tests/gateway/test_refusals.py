"""Refusals are audited by what refused them, and no client string is echoed or stored unbounded.

Raw HTTP on purpose: an SDK client would not send a 1 MB tool name or a string as arguments.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from policies.bounds import MAX_ERROR_CHARS, MAX_ID_CHARS, MAX_NAME_CHARS
from tests.conftest import RunningGateway, run_gateway, upstream_stdio

KEY = "alice-secret-0123456789"
LEGACY = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
MEGABYTE = 1_000_000


def _alpha() -> dict[str, Any]:
    entry = upstream_stdio("alpha")
    entry["args"] = [*entry["args"], "--rpc-errors"]
    return entry


CONFIG: dict[str, Any] = {
    "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
    "mcp": {"servers": [_alpha()], "virtual_key_permissions": {"alice": "*"}},
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


class Session:
    """A raw 2025-11-25 session: any JSON the test wants, sent as it is."""

    def __init__(self, http: httpx2.AsyncClient, session_id: str) -> None:
        self.http = http
        self.session_id = session_id

    async def send(self, method: str, params: dict[str, Any], request_id: str | int = 1) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        response = await self.http.post(
            "/mcp", json=body, headers={**LEGACY, "Mcp-Session-Id": self.session_id}
        )
        assert len(response.content) < 10_000 + len(str(request_id)), response.content[:300]
        reply: dict[str, Any] = response.json()
        return reply


@contextlib.asynccontextmanager
async def open_session(gateway: RunningGateway, client_info: dict[str, Any]) -> AsyncIterator[Session]:
    async with httpx2.AsyncClient(
        base_url=gateway.base, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    ) as http:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": client_info},
        }
        response = await http.post("/mcp", json=init, headers={"Accept": LEGACY["Accept"]})
        assert response.status_code == 200, response.text[:300]
        yield Session(http, response.headers["mcp-session-id"])


@pytest.fixture
async def session(gateway: RunningGateway) -> AsyncIterator[Session]:
    async with open_session(gateway, {"name": "raw", "version": "1"}) as opened:
        yield opened


async def rows_named(gateway: RunningGateway, prefix: str) -> list[Any]:
    return [r for r in await gateway.flushed_calls() if r.exposed_name.startswith(prefix)]


@pytest.mark.anyio
async def test_bad_params_are_invalid_request_not_denied(gateway: RunningGateway, session: Session) -> None:
    reply = await session.send("tools/call", {"name": "alpha__echo", "arguments": "not an object"})
    assert reply["error"] == {"code": -32602, "message": 'tools/call "arguments" must be an object'}
    reply = await session.send("tools/call", {"name": ["alpha__echo"], "arguments": {}})
    assert reply["error"] == {"code": -32602, "message": 'tools/call needs "name" (a string)'}
    rows = [r for r in await gateway.flushed_calls() if "alpha__echo" in r.exposed_name]
    assert [(r.exposed_name, r.status, r.server) for r in rows] == [
        ("alpha__echo", "invalid_request", None),
        ("['alpha__echo']", "invalid_request", None),
    ]


@pytest.mark.anyio
async def test_a_megabyte_tool_name_gets_a_short_error_and_a_short_row(
    gateway: RunningGateway, session: Session
) -> None:
    name = "n" * MEGABYTE
    reply = await session.send("tools/call", {"name": name, "arguments": {}})
    message = reply["error"]["message"]
    assert reply["error"]["code"] == -32602
    assert message.startswith("Unknown tool: 'nnnn") and len(message) < 200
    (row,) = await rows_named(gateway, "nnnn")
    assert row.status == "denied" and row.server is None
    assert len(row.exposed_name) == MAX_NAME_CHARS and row.exposed_name.endswith("…")
    assert row.error == message


@pytest.mark.anyio
async def test_a_megabyte_method_name_gets_a_short_error(session: Session) -> None:
    reply = await session.send("m" * MEGABYTE, {})
    assert reply["error"]["code"] == -32601
    assert reply["error"]["message"].startswith("Method not found: 'mmmm")
    assert len(reply["error"]["message"]) < 200


@pytest.mark.anyio
async def test_client_identity_and_request_id_are_clipped_in_the_row(gateway: RunningGateway) -> None:
    # As large as gateway.max_initialize_bytes lets an initialize be; far more than a row keeps.
    client_info = {"name": "c" * 40_000, "version": "v" * 20_000}
    async with open_session(gateway, client_info) as session:
        request_id = "i" * 50_000
        reply = await session.send("tools/call", {"name": "clipme__x", "arguments": {}}, request_id)
        assert reply["id"] == request_id  # JSON-RPC requires the id back as it came
    (row,) = await rows_named(gateway, "clipme__x")
    assert len(row.client_name) == MAX_ID_CHARS and row.client_name.startswith("ccc")
    assert len(row.client_version) == MAX_ID_CHARS and row.client_version.startswith("vvv")
    assert len(row.request_id) == MAX_ID_CHARS and row.request_id.startswith("iii")


@pytest.mark.anyio
async def test_an_upstream_json_rpc_error_is_relayed_and_stored_clipped(
    gateway: RunningGateway, session: Session
) -> None:
    reply = await session.send("tools/call", {"name": "alpha__rpc_error", "arguments": {"size": 5000}})
    assert reply["error"]["code"] == -32050
    assert reply["error"]["message"] == "E" * 5000  # the upstream's own answer, relayed as it is
    (row,) = await rows_named(gateway, "alpha__rpc_error")
    assert (row.status, row.server, row.tool) == ("upstream_error", "alpha", "rpc_error")
    assert row.error is not None and len(row.error) == MAX_ERROR_CHARS
    assert row.error.startswith("upstream JSON-RPC error -32050: EEEE")
