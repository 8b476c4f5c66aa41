"""A caller's cancellation (or going away) reaches the upstream, over stdio and HTTP alike.

The upstream's ``hold`` tool reports progress once, then waits to be cancelled and leaves a
marker file when it is. 2025-11-25 upstreams get ``notifications/cancelled`` with the
upstream's own request id; a 2026-07-28 upstream sees its POST closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import RunningGateway, mcp_client, run_gateway
from tests.gateway.client_requests_support import KEY, policy, upstream_entry


async def wait_for_marker(marker: Path) -> None:
    with anyio.fail_after(10):
        while not marker.exists():
            await anyio.sleep(0.02)


async def start_hold(client: Any, label: str, held: anyio.Event) -> None:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        held.set()

    await client.call_tool("up__hold", {"label": label}, progress_callback=on_progress)


async def cancelled_rows(gw: RunningGateway) -> list[str]:
    return [r.status for r in await gw.flushed_calls() if r.exposed_name == "up__hold"]


@pytest.mark.anyio
@pytest.mark.parametrize("upstream", ["stdio", "http-2025", "http-2026"])
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_client_cancelling_reaches_the_upstream(
    tmp_path: Path, keys_env: dict[str, str], upstream: str, mode: str
) -> None:
    markers = tmp_path / "markers"
    with upstream_entry(upstream, tmp_path, markers) as server:
        async with run_gateway(policy(server), tmp_path) as gw, mcp_client(gw.url, KEY, mode) as client:
            held = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(start_hold, client, "c", held)
                with anyio.fail_after(10):
                    await held.wait()
                tg.cancel_scope.cancel()  # the SDK client cancels its call
            await wait_for_marker(markers / "up-hold-c-cancelled")
            # The connection is fine afterwards.
            assert (await client.call_tool("up__echo", {"text": "after"})).content[0].text == "after"  # type: ignore[union-attr]
            with anyio.fail_after(10):
                while not (statuses := await cancelled_rows(gw)):
                    await anyio.sleep(0.05)
    assert statuses == ["cancelled"]


@pytest.mark.anyio
@pytest.mark.parametrize("upstream", ["stdio", "http-2025"])
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_client_going_away_reaches_the_upstream(
    tmp_path: Path, keys_env: dict[str, str], upstream: str, mode: str
) -> None:
    """The client leaves with its call in flight: a 2025 client ends its session (DELETE), a 2026
    client's POST is closed."""
    markers = tmp_path / "markers"
    with upstream_entry(upstream, tmp_path, markers) as server:
        async with run_gateway(policy(server), tmp_path) as gw:
            held = anyio.Event()
            async with anyio.create_task_group() as tg:

                async def leave() -> None:
                    async with mcp_client(gw.url, KEY, mode) as client:
                        await start_hold(client, "gone", held)

                tg.start_soon(leave)
                with anyio.fail_after(10):
                    await held.wait()
                tg.cancel_scope.cancel()
            await wait_for_marker(markers / "up-hold-gone-cancelled")
