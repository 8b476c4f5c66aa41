"""Session limits: one key can neither close another key's sessions nor grow memory without bound.

Raw HTTP for the handshakes (exact status codes and bodies), the SDK client where
a real client's experience is the point.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from mcp_gateway.server.handshake import ClientCapability
from mcp_gateway.server.sessions import Session
from policies import Principal
from policies.bounds import MAX_ID_CHARS
from tests.conftest import RunningGateway, mcp_client, run_gateway

ALICE, BOB, CAROL = "alice-secret-0123456789", "bob-secret-0123456789", "carol-secret-0123456789"
ACCEPT = "application/json, text/event-stream"


def config(**gateway: Any) -> dict[str, Any]:
    return {
        "gateway": gateway,
        "virtual_keys": [
            {"id": "alice", "secret_env": "TEST_KEY_ALICE"},
            {"id": "bob", "secret_env": "TEST_KEY_BOB"},
            {"id": "carol", "secret_env": "TEST_KEY_CAROL"},
        ],
    }


def initialize_body(client_info: Any = None, capabilities: Any = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "clientInfo": client_info if client_info is not None else {"name": "raw", "version": "1"},
            "capabilities": capabilities if capabilities is not None else {},
        },
    }


async def initialize(
    gateway: RunningGateway, key: str, client_info: Any = None, capabilities: Any = None
) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(
            gateway.url,
            content=orjson.dumps(initialize_body(client_info, capabilities)),
            headers={"Authorization": f"Bearer {key}", "Accept": ACCEPT, "Content-Type": "application/json"},
        )


async def open_session(gateway: RunningGateway, key: str) -> str:
    response = await initialize(gateway, key)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


async def ping(gateway: RunningGateway, key: str, session_id: str) -> int:
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            gateway.url,
            json={"jsonrpc": "2.0", "id": 2, "method": "ping"},
            headers={
                "Authorization": f"Bearer {key}",
                "Accept": ACCEPT,
                "Mcp-Session-Id": session_id,
                "MCP-Protocol-Version": "2025-11-25",
            },
        )
    return response.status_code


@pytest.mark.anyio
async def test_a_key_at_its_quota_closes_only_its_own_least_recently_used_session(
    tmp_path: Path, keys_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        run_gateway(config(max_sessions_per_key=2), tmp_path) as gateway,
        mcp_client(gateway.url, BOB, mode="legacy") as bob,
    ):
        await bob.list_tools()
        bob_sessions = gateway.runtime.sessions.ids("bob")
        assert len(bob_sessions) == 1
        first = await open_session(gateway, ALICE)
        second = await open_session(gateway, ALICE)
        assert await ping(gateway, ALICE, first) == 200  # first is now the more recently used
        with caplog.at_level(logging.INFO, logger="mcp_gateway.mcp"):
            third = await open_session(gateway, ALICE)
            for _ in range(20):  # a flood of initializes stays inside alice's own quota
                await open_session(gateway, ALICE)

        assert await ping(gateway, ALICE, second) == 404
        assert len(gateway.runtime.sessions.ids("alice")) == 2
        await bob.list_tools()  # bob's session was never touched
        assert gateway.runtime.sessions.ids("bob") == bob_sessions
        evictions = [r.getMessage() for r in caplog.records if "max_sessions_per_key" in r.getMessage()]
        assert len(evictions) == 21
        assert all("key alice" in line and "bob" not in line for line in evictions)
        assert evictions[0].startswith(f"session {second[:8]} ")
        assert await ping(gateway, ALICE, third) == 404  # evicted later, by alice's own flood


@pytest.mark.anyio
async def test_eviction_spares_a_session_with_an_open_get_stream(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with run_gateway(config(max_sessions_per_key=2), tmp_path) as gateway:
        streaming = await open_session(gateway, ALICE)
        async with (
            httpx2.AsyncClient(timeout=30) as http,
            http.stream(
                "GET",
                gateway.url,
                headers={
                    "Authorization": f"Bearer {ALICE}",
                    "Accept": "text/event-stream",
                    "Mcp-Session-Id": streaming,
                },
            ) as stream,
        ):
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            assert await anext(lines) == ": stream open"
            idle = await open_session(gateway, ALICE)  # used after the streaming one: not the oldest
            await open_session(gateway, ALICE)
            assert await ping(gateway, ALICE, idle) == 404
            assert await ping(gateway, ALICE, streaming) == 200


@pytest.mark.anyio
async def test_at_the_global_cap_a_new_session_is_refused_and_nobody_is_evicted(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with run_gateway(config(max_sessions=3, max_sessions_per_key=2), tmp_path) as gateway:
        alice = [await open_session(gateway, ALICE), await open_session(gateway, ALICE)]
        bob = await open_session(gateway, BOB)

        refused = await initialize(gateway, CAROL)
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        body = refused.json()
        assert body["id"] == 1
        assert body["error"]["code"] == -32012
        assert "maximum of 3 sessions (gateway.max_sessions)" in body["error"]["message"]
        assert "mcp-session-id" not in refused.headers
        for session_id in alice:
            assert await ping(gateway, ALICE, session_id) == 200
        assert await ping(gateway, BOB, bob) == 200

        # A key at the global cap but under its own quota cannot push others out either...
        assert (await initialize(gateway, BOB)).status_code == 503
        # ...while a key at its own quota still may replace its own sessions.
        assert (await initialize(gateway, ALICE)).status_code == 200
        assert await ping(gateway, BOB, bob) == 200

        async with httpx2.AsyncClient(timeout=30) as http:
            closed = await http.delete(
                gateway.url, headers={"Authorization": f"Bearer {BOB}", "Mcp-Session-Id": bob}
            )
        assert closed.status_code == 200
        assert (await initialize(gateway, CAROL)).status_code == 200


@pytest.mark.anyio
async def test_an_oversized_initialize_is_refused_with_a_clear_error(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with run_gateway(config(), tmp_path) as gateway:
        huge = {"experimental": {"blob": "x" * (1024 * 1024)}, "sampling": {}}
        response = await initialize(gateway, ALICE, capabilities=huge)
        assert response.status_code == 413
        body = response.json()
        assert body["id"] == 1
        assert body["error"]["code"] == -32600
        assert "at most 65536 (gateway.max_initialize_bytes)" in body["error"]["message"]
        assert "mcp-session-id" not in response.headers
        assert len(gateway.runtime.sessions) == 0
        assert await ping(gateway, ALICE, await open_session(gateway, ALICE)) == 200


def _retained_bytes(session: Session) -> int:
    """Bytes held by a session's own fields (shared objects such as the principal excluded)."""
    total = sys.getsizeof(session)
    for name in Session.__slots__:
        value = getattr(session, name, None)
        if name != "principal" and value is not None and not isinstance(value, bool | ClientCapability):
            total += sys.getsizeof(value)
    return total


@pytest.mark.anyio
async def test_a_session_keeps_only_bounded_fields_of_initialize(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with run_gateway(config(), tmp_path) as gateway:
        client_info = {"name": "n" * 20_000, "version": "v" * 20_000, "title": "t" * 10_000}
        capabilities = {
            "roots": {"listChanged": True},
            "sampling": {"context": {}, "tools": {}, "padding": "p" * 5_000},
            "elicitation": {},
            "experimental": {"junk": ["j" * 1000] * 5},
        }
        response = await initialize(gateway, ALICE, client_info, capabilities)
        assert response.status_code == 200, response.text
        alice = Principal("alice", "alice", None, "file")
        session = gateway.runtime.sessions.get(response.headers["mcp-session-id"], alice)
        assert session is not None

    assert not hasattr(session, "__dict__")
    assert session.client_name is not None and len(session.client_name) == MAX_ID_CHARS
    assert session.client_version is not None and len(session.client_version) == MAX_ID_CHARS
    assert session.protocol_version == "2025-11-25"
    assert session.capabilities == (
        ClientCapability.ROOTS
        | ClientCapability.ROOTS_LIST_CHANGED
        | ClientCapability.SAMPLING
        | ClientCapability.SAMPLING_CONTEXT
        | ClientCapability.SAMPLING_TOOLS
        | ClientCapability.ELICITATION
        | ClientCapability.ELICITATION_FORM
    )
    assert _retained_bytes(session) < 2048  # the payload above is over 50 KB
