"""Deeply nested JSON at /mcp is refused before anything reads it, and the audit writer keeps writing.

A tools/call whose arguments nest hundreds of levels used to pass the parser, then
break the audit row (orjson refuses to encode more than 254 levels) and with it the
audit writer: every later row stayed pending. Now the reader refuses it with a clear
error naming the limit, and ordinary calls afterwards are answered and audited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp.shared.exceptions import MCPError

from gateway_common.json_depth import nesting_exceeds
from mcp_gateway.errors import InvalidRequest
from mcp_gateway.jsonrpc import parse_message
from policies.gateway_settings import GatewaySettings
from tests.conftest import RunningGateway, mcp_client, run_gateway, upstream_stdio

ALICE = "alice-deep-0123456789"  # may call every tool of alpha
BOB = "bob-deep-0123456789"  # has no tools at all: his refusals are audited too
CONFIG: dict[str, Any] = {
    "virtual_keys": [
        {"id": "alice", "secret_env": "DEEP_KEY_ALICE"},
        {"id": "bob", "secret_env": "DEEP_KEY_BOB"},
    ],
    "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"alice": "*"}},
}
HEADERS = {"MCP-Protocol-Version": "2026-07-28", "Accept": "application/json, text/event-stream"}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "deep", "version": "1"},
}


def nested(depth: int) -> Any:
    """``depth`` levels of objects and arrays (alternating), innermost an empty object."""
    value: Any = {}
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return value


def tools_call_body(arguments: bytes, request_id: int) -> bytes:
    # Built by hand: orjson itself refuses to encode more than 254 levels.
    head = orjson.dumps(
        {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"_meta": ENVELOPE}}
    )
    return head[:-2] + b',"name":"alpha__echo","arguments":' + arguments + b"}}"


def deep_bytes(depth: int) -> bytes:
    return b'{"k":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEP_KEY_ALICE", ALICE)
        mp.setenv("DEEP_KEY_BOB", BOB)
        async with run_gateway(CONFIG, tmp_path_factory.mktemp("deep")) as gw:
            yield gw


@pytest.mark.anyio
@pytest.mark.parametrize("key", [ALICE, BOB], ids=["key-with-tools", "key-without-tools"])
@pytest.mark.parametrize("depth", [300, 1000, 1100])
async def test_deep_arguments_are_refused_and_audit_keeps_writing(
    gateway: RunningGateway, key: str, depth: int
) -> None:
    before = len(await gateway.flushed_calls())
    async with httpx2.AsyncClient(base_url=gateway.base, timeout=30) as http:
        answer = await http.post(
            "/mcp",
            content=tools_call_body(deep_bytes(depth), 7),
            headers={
                **HEADERS,
                "Authorization": f"Bearer {key}",
                "Mcp-Method": "tools/call",
                "Mcp-Name": "alpha__echo",
            },
        )
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["code"] == -32600
        assert "nest" in error["message"] and "64" in error["message"]

        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"

    async with mcp_client(gateway.url, ALICE, "2026-07-28") as client:
        result = await client.call_tool("alpha__echo", {"text": f"after {depth}"})
    assert result.content[0].text == f"after {depth}"  # type: ignore[union-attr]
    async with mcp_client(gateway.url, BOB, "2026-07-28") as client:
        with pytest.raises(MCPError, match="Unknown tool"):
            await client.call_tool("alpha__echo", {"text": "not yours"})

    calls = await gateway.flushed_calls()
    new = calls[before:]
    assert [(c.key_id, c.status) for c in new] == [("alice", "ok"), ("bob", "denied")]
    assert gateway.runtime.audit.pending == 0 and gateway.runtime.audit.health()["stopped"] is None


@pytest.mark.anyio
async def test_legal_nesting_below_the_limit_still_passes(gateway: RunningGateway) -> None:
    arguments = {"text": "[[[[{{{{" * 200, "extra": nested(60)}
    async with mcp_client(gateway.url, ALICE, "2026-07-28") as client:
        result = await client.call_tool("alpha__echo", arguments)
    assert result.content[0].text == arguments["text"]  # type: ignore[union-attr]


def test_the_limit_is_exact_and_configurable() -> None:
    def message(depth: int) -> bytes:
        return b'{"jsonrpc":"2.0","id":1,"method":"m","params":' + deep_bytes(depth - 1) + b"}"

    default = GatewaySettings().max_json_depth
    assert default == 64
    assert parse_message(message(64), max_depth=default)["method"] == "m"
    with pytest.raises(InvalidRequest, match="limit of 64"):
        parse_message(message(65), max_depth=default)
    with pytest.raises(InvalidRequest, match="limit of 64"):  # orjson's own limit (1,024), same answer
        parse_message(message(1100), max_depth=default)
    assert parse_message(message(8), max_depth=8)["method"] == "m"
    with pytest.raises(InvalidRequest, match="limit of 8"):
        parse_message(message(9), max_depth=8)
    # Brackets inside strings are text, not nesting.
    text = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "m", "params": {"t": '[{"\\' * 500}})
    assert parse_message(text, max_depth=3)["params"]["t"].startswith('[{"\\')


def reference_depth(value: Any) -> int:
    """Levels of objects and arrays, the slow obvious way."""
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    return 0


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(alphabet='[]{}"\\ab'),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet="[{a", max_size=3), inner, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(document=JSON_VALUES, limit=st.integers(min_value=1, max_value=12))
def test_nesting_exceeds_agrees_with_the_obvious_definition(document: Any, limit: int) -> None:
    parsed = orjson.loads(orjson.dumps(document))  # as the readers see it: parsed by orjson
    assert nesting_exceeds(parsed, limit) == (reference_depth(parsed) > limit)
