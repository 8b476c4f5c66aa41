"""The gateway accepts requests only once its upstreams listed their tools (bounded by
``mcp.startup_wait_seconds``): a call right after start is answered, never "Unknown tool"."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import mcp_client, run_gateway, upstream_stdio

KEY = "alice-secret-0123456789"


def config(wait: float) -> dict[str, object]:
    slow = upstream_stdio("slow")
    slow["args"] = [*slow["args"], "--start-delay", "1.5"]
    return {
        "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {"servers": [slow], "virtual_key_permissions": {"alice": "*"}, "startup_wait_seconds": wait},
    }


@pytest.mark.anyio
async def test_the_first_call_after_start_reaches_a_slow_upstream(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    async with (
        run_gateway(config(30), tmp_path, wait_ready=False) as gw,
        mcp_client(gw.url, KEY, "2026-07-28") as client,
    ):
        result = await client.call_tool("slow__echo", {"text": "first"})
    assert result.content[0].text == "first"  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_without_the_wait_the_same_call_finds_no_tool(tmp_path: Path, keys_env: dict[str, str]) -> None:
    async with run_gateway(config(0), tmp_path, wait_ready=False) as gw:
        async with mcp_client(gw.url, KEY, "2026-07-28") as client:
            with pytest.raises(MCPError, match="Unknown tool"):
                await client.call_tool("slow__echo", {"text": "first"})
        (row,) = await gw.flushed_calls()
    assert row.status == "denied"  # so the test above does not pass by accident
