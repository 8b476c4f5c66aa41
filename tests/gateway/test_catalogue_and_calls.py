"""Per-key catalogues and tools/call through a real gateway, for both protocol eras.

One gateway (two stdio upstreams of the test server) serves the whole module;
each test uses the SDK's own client in legacy (2025-11-25) or 2026-07-28 mode.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from tests.conftest import REPO_ROOT, RunningGateway, mcp_client, run_gateway, upstream_stdio

MODES = ["legacy", "2026-07-28"]
ALPHA_TOOLS = {"echo", "add", "slow", "fail", "hang", "crash", "big", "rendezvous", "grow"}

CONFIG: dict[str, Any] = {
    "teams": [{"name": "eng"}, {"name": "ops"}],
    "virtual_keys": [
        {"id": "alice", "name": "Alice", "team": "eng", "secret_env": "TEST_KEY_ALICE"},
        {"id": "bob", "name": "Bob", "team": "ops", "secret_env": "TEST_KEY_BOB"},
        {"id": "carol", "name": "Carol", "secret_env": "TEST_KEY_CAROL"},
    ],
    "mcp": {
        "servers": [upstream_stdio("alpha"), upstream_stdio("beta", allowed_tools=["echo", "add"])],
        "team_permissions": {"eng": "*", "ops": {"alpha": ["echo", "a*"]}},
    },
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    env = {
        "TEST_KEY_ALICE": "alice-secret-0123456789",
        "TEST_KEY_BOB": "bob-secret-0123456789",
        "TEST_KEY_CAROL": "carol-secret-0123456789",
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        async with run_gateway(CONFIG, tmp_path_factory.mktemp("gw")) as gw:
            yield gw


ALICE, BOB, CAROL = "alice-secret-0123456789", "bob-secret-0123456789", "carol-secret-0123456789"


def _names(result: Any) -> set[str]:
    return {tool.name for tool in result.tools}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_each_key_lists_only_its_tools(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, ALICE, mode) as alice:
        assert _names(await alice.list_tools()) == {f"alpha__{t}" for t in ALPHA_TOOLS} | {
            "beta__echo",
            "beta__add",
        }
    async with mcp_client(gateway.url, BOB, mode) as bob:
        assert _names(await bob.list_tools()) == {"alpha__echo", "alpha__add"}
    async with mcp_client(gateway.url, CAROL, mode) as carol:
        assert _names(await carol.list_tools()) == set()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_calls_are_forwarded_and_filtered(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, BOB, mode) as bob:
        result = await bob.call_tool("alpha__add", {"a": 2, "b": 40})
        assert not result.is_error
        assert result.structured_content == {"result": 42}
        assert result.content[0].text == "42"  # type: ignore[union-attr]
        for name in ("alpha__slow", "beta__echo", "alpha__does_not_exist"):
            with pytest.raises(MCPError) as refused:
                await bob.call_tool(name, {"seconds": 0})
            assert refused.value.error.code == -32602
            assert refused.value.error.message == f"Unknown tool: {name!r}"


@pytest.mark.anyio
async def test_hidden_and_missing_tools_get_the_same_answer_and_are_audited(gateway: RunningGateway) -> None:
    async with mcp_client(gateway.url, BOB, "2026-07-28") as bob:
        errors = []
        for name in ("alpha__hang", "alpha__nope"):
            with pytest.raises(MCPError) as refused:
                await bob.call_tool(name, {})
            errors.append((refused.value.error.code, refused.value.error.message.replace(name, "<name>")))
        assert errors[0] == errors[1]
    rows = [
        r
        for r in await gateway.flushed_calls()
        if r.key_id == "bob" and r.exposed_name in ("alpha__hang", "alpha__nope")
    ]
    assert sorted(r.exposed_name for r in rows) == ["alpha__hang", "alpha__nope"]
    for row in rows:
        assert row.status == "denied"
        assert row.error == f"Unknown tool: {row.exposed_name!r}"
    # The gateway knows the hidden tool's server and tool: admins can tell hidden from unknown.
    assert sorted((r.exposed_name, r.server, r.tool) for r in rows) == [
        ("alpha__hang", "alpha", "hang"),
        ("alpha__nope", None, None),
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_audit_row_records_who_what_and_how_it_went(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, ALICE, mode) as alice:
        result = await alice.call_tool("beta__echo", {"text": f"audit me {mode}"})
        assert result.content[0].text == f"audit me {mode}"  # type: ignore[union-attr]
        failed = await alice.call_tool("alpha__fail", {"reason": "nope"})
        assert failed.is_error
    rows = [
        r for r in await gateway.flushed_calls() if r.arguments and mode in str(r.arguments.get("text", ""))
    ]
    assert len(rows) == 1
    row = rows[0]
    assert (row.key_id, row.key_name, row.team) == ("alice", "Alice", "eng")
    assert (row.server, row.tool, row.exposed_name) == ("beta", "echo", "beta__echo")
    assert row.arguments == {"text": f"audit me {mode}"}
    assert row.result["content"] == [{"type": "text", "text": f"audit me {mode}"}]
    assert row.status == "ok" and row.error is None
    assert row.client_name == "mcp"
    assert row.request_id is not None
    assert row.latency_ms > 0 and row.upstream_latency_ms is not None
    assert row.upstream_latency_ms <= row.latency_ms
    assert row.timestamp.tzinfo is not None
    if mode == "legacy":
        assert row.protocol_version == "2025-11-25" and row.session_id
    else:
        assert row.protocol_version == "2026-07-28" and row.session_id is None
    fail_rows = [r for r in await gateway.flushed_calls() if r.arguments == {"reason": "nope"}]
    assert {r.status for r in fail_rows} == {"tool_error"}


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_progress_notifications_reach_the_client(gateway: RunningGateway, mode: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with mcp_client(gateway.url, ALICE, mode) as alice:
        result = await alice.call_tool("alpha__slow", {"seconds": 0.05}, progress_callback=on_progress)
    assert result.content[0].text == "slept 0.05"  # type: ignore[union-attr]
    assert seen == [(0.0, 0.05, "starting"), (0.05, 0.05, "done")]


@pytest.mark.anyio
async def test_definitions_pass_through_unchanged_apart_from_the_name(gateway: RunningGateway) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "tests.fixtures.upstream"], cwd=str(REPO_ROOT)
    )
    async with Client(params) as direct:
        upstream = {
            t.name: t.model_dump(by_alias=True, exclude_none=True) for t in (await direct.list_tools()).tools
        }
    async with mcp_client(gateway.url, ALICE, "2026-07-28") as alice:
        through = {
            t.name: t.model_dump(by_alias=True, exclude_none=True) for t in (await alice.list_tools()).tools
        }
    for name, definition in upstream.items():
        mine = dict(through[f"alpha__{name}"])
        mine["name"] = name
        assert mine == definition
    assert through["alpha__add"]["annotations"] == {"title": "Adder", "readOnlyHint": True}
    assert "outputSchema" in through["alpha__add"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_concurrent_calls_to_one_upstream_do_not_wait_for_each_other(
    gateway: RunningGateway, mode: str
) -> None:
    """Each call returns only once all four are inside the upstream at once: serialising would deadlock."""
    results: list[str] = []

    async def one(client: Client) -> None:
        result = await client.call_tool("beta__echo", {"text": "warm"})
        assert not result.is_error
        met = await client.call_tool("alpha__rendezvous", {"n": 4, "group": mode, "timeout": 10})
        results.append(met.content[0].text)  # type: ignore[union-attr]

    async with mcp_client(gateway.url, ALICE, mode) as alice, anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one, alice)
    assert results == ["met"] * 4


@pytest.mark.anyio
async def test_readyz_reports_each_upstream(gateway: RunningGateway) -> None:
    import httpx2

    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{gateway.base}/readyz")
        health = await http.get(f"{gateway.base}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    states = {u["name"]: (u["state"], u["tools"]) for u in body["upstreams"]}
    assert states == {"alpha": ("ready", 9), "beta": ("ready", 9)}
    assert body["tools"] == 11


def test_marker_dir_unused(tmp_path: Path) -> None:
    """The module's upstreams run without a marker dir; the fixture helper still builds one."""
    entry = upstream_stdio("x", marker_dir=tmp_path)
    assert entry["args"][-2:] == ["--marker-dir", str(tmp_path)]


@pytest.mark.anyio
async def test_an_empty_catalogue_is_explained_to_the_admin_not_the_caller(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    async with mcp_client(gateway.url, CAROL, "2026-07-28") as carol:
        result = await carol.list_tools()
    assert result.tools == []
    assert (
        "key carol listed no tools: no permission entry for the key or its team (deny by default)"
        in caplog.text
    )


@pytest.mark.anyio
async def test_tool_calls_per_minute_is_enforced_per_key(tmp_path: Path, keys_env: dict[str, str]) -> None:
    now = [1_000_000.0]
    config = {
        "virtual_keys": [
            {"id": "alice", "secret_env": "TEST_KEY_ALICE", "rate_limit": {"tool_calls_per_minute": 2}},
            {"id": "bob", "secret_env": "TEST_KEY_BOB"},
        ],
        "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"alice": "*", "bob": "*"}},
    }
    async with run_gateway(config, tmp_path, app_options={"clock": lambda: now[0]}) as gw:
        async with mcp_client(gw.url, ALICE, "2026-07-28") as alice, mcp_client(gw.url, BOB, "legacy") as bob:
            for _ in range(2):
                assert not (await alice.call_tool("alpha__echo", {"text": "x"})).is_error
            with pytest.raises(MCPError) as limited:
                await alice.call_tool("alpha__echo", {"text": "x"})
            assert limited.value.error.code == -32011
            assert "Rate limit: key 'alice' allows 2 tool calls per minute" in limited.value.error.message
            assert limited.value.error.data["retryAfterSeconds"] > 0
            # Another key is not affected...
            for _ in range(3):
                assert not (await bob.call_tool("alpha__echo", {"text": "y"})).is_error
            # ...and the window slides.
            now[0] += 61
            assert not (await alice.call_tool("alpha__echo", {"text": "x"})).is_error
        rows = [r for r in await gw.flushed_calls() if r.key_id == "alice"]
    assert [r.status for r in rows] == ["ok", "ok", "rate_limited", "ok"]
    assert "tool calls per minute" in (rows[2].error or "")
    assert (rows[2].server, rows[2].tool) == ("alpha", "echo")
    assert rows[2].blocked_by == "rate_limit:key:alice:tool_calls_per_minute"
