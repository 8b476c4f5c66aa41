"""Upstreams that hang, die, fail to start or change their tools never take the gateway down."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import PYTHON, RunningGateway, mcp_client, run_gateway, upstream_stdio

KEY = "alice-secret-0123456789"


def config(*servers: dict[str, Any], **mcp: Any) -> dict[str, Any]:
    return {
        "virtual_keys": [{"id": "alice", "team": "eng", "secret_env": "TEST_KEY_ALICE"}],
        "teams": [{"name": "eng"}],
        "mcp": {"servers": list(servers), "team_permissions": {"eng": "*"}, **mcp},
    }


async def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.05)


def upstream_state(gw: RunningGateway, name: str) -> str:
    return gw.runtime.hub.supervisors[name].state


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_hanging_tool_times_out_and_the_upstream_is_told(
    tmp_path: Path, keys_env: dict[str, str], mode: str
) -> None:
    markers = tmp_path / "markers"
    cfg = config(upstream_stdio("alpha", marker_dir=markers, timeout_seconds=0.5))
    async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY, mode) as client:
        with pytest.raises(MCPError) as timed_out:
            await client.call_tool("alpha__hang", {})
        assert timed_out.value.error.code == -32001
        assert (
            timed_out.value.error.message
            == "tool 'alpha__hang' on server 'alpha' did not answer within 0.5 s"
        )
        # The upstream received notifications/cancelled and stopped the work.
        await wait_for(lambda: (markers / "alpha-hang-cancelled").exists(), 10)
        # Other calls are unaffected.
        assert (await client.call_tool("alpha__echo", {"text": "ok"})).content[0].text == "ok"  # type: ignore[union-attr]
        rows = [r for r in await gw.flushed_calls() if r.exposed_name == "alpha__hang"]
    assert [(r.status, r.server, r.tool) for r in rows] == [("timeout", "alpha", "hang")]
    assert rows[0].upstream_latency_ms is not None and rows[0].upstream_latency_ms >= 500


@pytest.mark.anyio
async def test_a_killed_upstream_keeps_its_tools_listed_and_comes_back(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    cfg = config(upstream_stdio("alpha"), upstream_stdio("beta"))
    async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY, "2026-07-28") as client:
        alpha = gw.runtime.hub.supervisors["alpha"]
        first_pid = alpha.status()["pid"]

        # Dies in the middle of a call: that call fails with a clear error naming the server...
        with pytest.raises(MCPError) as died:
            await client.call_tool("alpha__crash", {})
        assert died.value.error.code == -32010
        assert "server 'alpha' failed during the call" in died.value.error.message

        # ...its last-known tools stay listed while it is away, and beta keeps serving...
        await wait_for(lambda: upstream_state(gw, "alpha") != "ready")
        names = {t.name for t in (await client.list_tools()).tools}
        assert "alpha__echo" in names
        assert (await client.call_tool("beta__echo", {"text": "beta fine"})).content[0].text == "beta fine"  # type: ignore[union-attr]

        # ...and it is restarted and comes back by itself.
        await wait_for(lambda: upstream_state(gw, "alpha") == "ready")
        assert alpha.restarts == 1 and alpha.status()["pid"] != first_pid
        assert (await client.call_tool("alpha__echo", {"text": "back"})).content[0].text == "back"  # type: ignore[union-attr]

        # Killed from outside (not during a call): the same recovery.
        os.kill(alpha.status()["pid"], signal.SIGKILL)
        await wait_for(lambda: alpha.restarts == 2 and upstream_state(gw, "alpha") == "ready")
        assert (await client.call_tool("alpha__add", {"a": 1, "b": 1})).structured_content == {"result": 2}
        rows = [r for r in await gw.flushed_calls() if r.exposed_name == "alpha__crash"]
    assert rows[0].status == "upstream_error" and "failed during the call" in (rows[0].error or "")


@pytest.mark.anyio
async def test_an_upstream_that_cannot_start_is_retried_and_others_serve(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    script = tmp_path / "late.py"
    ready_flag = tmp_path / "may-start"
    script.write_text(
        "import os, sys, runpy\n"
        "sys.path.insert(0, os.getcwd())\n"
        f"if not os.path.exists({str(ready_flag)!r}):\n"
        "    sys.exit('not yet')\n"
        "sys.argv = ['upstream', '--name', 'late']\n"
        "runpy.run_module('tests.fixtures.upstream', run_name='__main__')\n"
    )
    late = {
        "name": "late",
        "command": PYTHON,
        "args": [str(script)],
        "cwd": upstream_stdio("x")["cwd"],
        "max_restart_delay_seconds": 1,
    }
    missing = {"name": "missing", "command": str(tmp_path / "no-such-binary"), "max_restart_delay_seconds": 1}
    cfg = config(upstream_stdio("alpha"), late, missing, startup_wait_seconds=0)  # two never start
    async with run_gateway(cfg, tmp_path, wait_ready=False) as gw:
        await wait_for(lambda: upstream_state(gw, "alpha") == "ready")
        await wait_for(lambda: gw.runtime.hub.supervisors["late"].last_error is not None)
        status = {s["name"]: s for s in gw.runtime.hub.status()}
        assert "not yet" in status["late"]["last_error"] or "exited" in status["late"]["last_error"]
        assert "cannot start" in status["missing"]["last_error"]
        async with mcp_client(gw.url, KEY, "2026-07-28") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "alpha__echo" in names and not any(n.startswith("late__") for n in names)
            ready_flag.write_text("go")
            await wait_for(lambda: upstream_state(gw, "late") == "ready", 30)
            assert (await client.call_tool("late__echo", {"text": "late"})).content[0].text == "late"  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_tool_list_changes_reach_clients(tmp_path: Path, keys_env: dict[str, str], mode: str) -> None:
    cfg = config(upstream_stdio("alpha"))
    changed = anyio.Event()
    handler = _on_message(changed) if mode == "legacy" else None
    async with (
        run_gateway(cfg, tmp_path) as gw,
        mcp_client(gw.url, KEY, mode, message_handler=handler) as client,
    ):
        before = {t.name for t in (await client.list_tools()).tools}
        assert "alpha__fresh" not in before
        if mode == "2026-07-28":
            listener = await _listen(gw, changed)
        await client.call_tool("alpha__grow", {"tool_name": "fresh"})
        await wait_for(lambda: "alpha__fresh" in gw.runtime.hub.bindings)
        with anyio.fail_after(10):
            await changed.wait()
        after = {t.name for t in (await client.list_tools()).tools}
        assert "alpha__fresh" in after
        assert (await client.call_tool("alpha__fresh", {})).content[0].text == "I am fresh"  # type: ignore[union-attr]
        if mode == "2026-07-28":
            await listener.aclose()


def _on_message(changed: anyio.Event) -> Any:
    async def handler(message: Any) -> None:
        if getattr(getattr(message, "root", message), "method", None) == "notifications/tools/list_changed":
            changed.set()

    return handler


class _Listener:
    def __init__(self, response: Any, client: Any, task_group: Any) -> None:
        self.response, self.client, self.task_group = response, client, task_group

    async def aclose(self) -> None:
        self.task_group.cancel_scope.cancel()
        await self.task_group.__aexit__(None, None, None)
        await self.client.aclose()


async def _listen(gw: RunningGateway, changed: anyio.Event) -> _Listener:
    """A raw 2026 subscriptions/listen stream: ack first, then list_changed."""
    import httpx2
    import orjson

    client = httpx2.AsyncClient(timeout=30)
    acked = anyio.Event()
    body = {
        "jsonrpc": "2.0",
        "id": "listen-1",
        "method": "subscriptions/listen",
        "params": {
            "notifications": {"toolsListChanged": True},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "Authorization": f"Bearer {KEY}",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "subscriptions/listen",
        "Accept": "application/json, text/event-stream",
    }

    async def run() -> None:
        async with client.stream("POST", gw.url, json=body, headers=headers) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                message = orjson.loads(line[5:])
                if message.get("method") == "notifications/subscriptions/acknowledged":
                    assert message["params"]["notifications"] == {"toolsListChanged": True}
                    assert message["params"]["_meta"] == {
                        "io.modelcontextprotocol/subscriptionId": "listen-1"
                    }
                    acked.set()
                elif message.get("method") == "notifications/tools/list_changed":
                    changed.set()

    tg = anyio.create_task_group()
    await tg.__aenter__()
    tg.start_soon(run)
    with anyio.fail_after(10):
        await acked.wait()
    return _Listener(None, client, tg)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_client_cancelling_a_call_cancels_it_upstream(
    tmp_path: Path, keys_env: dict[str, str], mode: str
) -> None:
    """2025 clients send notifications/cancelled; 2026 clients close the POST. Either reaches the tool."""
    markers = tmp_path / "markers"
    cfg = config(upstream_stdio("alpha", marker_dir=markers))
    async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY, mode) as client:
        with anyio.move_on_after(1.0):
            await client.call_tool("alpha__slow", {"seconds": 30})
        await wait_for(lambda: (markers / "alpha-slow-cancelled").exists(), 10)
        assert (await client.call_tool("alpha__echo", {"text": "after"})).content[0].text == "after"  # type: ignore[union-attr]

        async def cancelled_row() -> list[Any]:
            return [r for r in await gw.flushed_calls() if r.exposed_name == "alpha__slow"]

        with anyio.fail_after(10):
            while not (rows := await cancelled_row()):
                await anyio.sleep(0.05)
    assert rows[0].status == "cancelled"


@pytest.mark.anyio
async def test_a_frozen_upstream_fails_its_health_check_and_is_restarted(
    tmp_path: Path, keys_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(
        upstream_stdio(
            # The probe's timeout is min(10 s, startup timeout): 3 s finds the frozen child quickly without
            # making ordinary starts fail on a loaded machine (which would count as restarts too).
            "alpha",
            health_interval_seconds=0.3,
            startup_timeout_seconds=3,
            max_restart_delay_seconds=0.5,
        )
    )
    async with run_gateway(cfg, tmp_path) as gw, mcp_client(gw.url, KEY, "2026-07-28") as client:
        alpha = gw.runtime.hub.supervisors["alpha"]
        frozen = alpha.status()["pid"]
        restarts = alpha.restarts
        os.kill(frozen, signal.SIGSTOP)  # alive, but answers nothing
        try:
            await wait_for(lambda: alpha.restarts > restarts and upstream_state(gw, "alpha") == "ready", 30)
            assert alpha.status()["pid"] != frozen
            # Why it was restarted (last_error may since say that a restart on a loaded machine was slow).
            lost = [r.getMessage() for r in caplog.records if "lost: health check failed" in r.getMessage()]
            assert lost, [r.getMessage() for r in caplog.records]
            assert (await client.call_tool("alpha__echo", {"text": "thawed"})).content[0].text == "thawed"  # type: ignore[union-attr]
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGKILL)
