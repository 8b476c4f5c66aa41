"""A 2025 ``notifications/cancelled`` cancels only the request whose id it names.

A requestId that no request can have (a list or an object, which used to raise TypeError and
answer 500; ``true`` or ``1.0``, which Python finds equal to the id 1) names nothing: the
notification gets its 202 and the call in flight carries on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest

from tests.conftest import run_gateway, upstream_stdio

KEY = "alice-secret-0123456789"
CONFIG: dict[str, Any] = {
    "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
    "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"alice": "*"}},
}
HEADERS = {
    "Authorization": f"Bearer {KEY}",
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
}


def rpc(method: str, params: dict[str, Any], request_id: int | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return orjson.dumps(message)


@pytest.mark.anyio
@pytest.mark.parametrize("request_id", [[], {"a": 1}, True, 1.0], ids=["list", "object", "true", "float"])
async def test_a_cancel_naming_no_request_cancels_nothing(
    tmp_path: Path, keys_env: dict[str, str], request_id: Any
) -> None:
    async with (
        run_gateway(CONFIG, tmp_path) as gw,
        httpx2.AsyncClient(base_url=gw.base, headers=HEADERS, timeout=30) as http,
    ):
        opened = await http.post(
            "/mcp",
            content=rpc(
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
                0,
            ),
        )
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        call = rpc(
            "tools/call",
            {"name": "alpha__slow", "arguments": {"seconds": 2}, "_meta": {"progressToken": "p"}},
            1,
        )
        async with http.stream("POST", "/mcp", content=call, headers=session) as answer:
            lines = answer.aiter_lines()
            async for line in lines:  # the first progress notification: the call is in flight upstream
                if line.startswith("data:") and "notifications/progress" in line:
                    break
            cancel = await http.post(
                "/mcp", content=rpc("notifications/cancelled", {"requestId": request_id}), headers=session
            )
            assert cancel.status_code == 202, cancel.text
            final = None
            async for line in lines:
                if line.startswith("data:") and '"id":1' in line:
                    final = orjson.loads(line[5:])
        assert final is not None and final["result"]["content"][0]["text"] == "slept 2.0", final
        rows = [row for row in await gw.flushed_calls() if row.exposed_name == "alpha__slow"]
    assert [row.status for row in rows] == ["ok"]
