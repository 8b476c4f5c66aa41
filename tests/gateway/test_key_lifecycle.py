"""Key changes against a running gateway: a revocation by the CLI (a real ``mcp-gateway keys revoke``
process on the same SQLite database) ends the key's open MCP sessions and streams of both eras while
another key's carry on; a database key's own settings apply; a rotated secret works for its grace
period and is then refused, and an expired key is told so, on both front doors.

The gateways here reload keys on their own only every hour (``key_refresh_seconds``): whatever
reaches them sooner came through the database's key change counter. Waits are bounded generously
(the machine is shared); no assertion depends on how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
import pytest
from mcp.client.subscriptions import SubscriptionLost
from mcp.shared.exceptions import MCPError

from gateway_app.keys_admin import KeysAdmin, parse_settings
from tests.conftest import REPO_ROOT, RunningGateway, mcp_client, run_gateway, upstream_stdio
from tests.llm_proxy.conftest import mock_api, provider_env  # noqa: F401  (a fixture)

MCP_GATEWAY = str(Path(sys.executable).parent / "mcp-gateway")
WAIT = 30.0
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def config(**extra: Any) -> dict[str, Any]:
    return {
        "gateway": {"key_refresh_seconds": 3600},
        "teams": [{"name": "eng"}],
        "mcp": {"servers": [upstream_stdio("alpha")], "team_permissions": {"eng": {"alpha": ["echo"]}}},
        **extra,
    }


async def mcp_gateway_cli(*args: str) -> str:
    """The installed ``mcp-gateway`` command, as an administrator runs it."""
    done = await asyncio.to_thread(
        subprocess.run,
        [MCP_GATEWAY, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def admin_for(gw: RunningGateway, clock: Any = None) -> KeysAdmin:
    if clock is None:
        return KeysAdmin(gw.runtime.engine, gw.runtime.policy)
    return KeysAdmin(gw.runtime.engine, gw.runtime.policy, clock=lambda: datetime.fromtimestamp(clock(), UTC))


async def post_mcp(
    gw: RunningGateway, secret: str, body: dict[str, Any], session: str | None = None
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json, text/event-stream"}
    if session is None:
        headers["MCP-Protocol-Version"] = "2026-07-28"
        headers["Mcp-Method"] = body["method"]
        body = {**body, "params": {**body.get("params", {}), "_meta": MODERN_META}}
    else:
        headers["Mcp-Session-Id"] = session
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(gw.url, json=body, headers=headers)


async def legacy_session(gw: RunningGateway, secret: str) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(gw.url, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


class GetStream:
    """A raw 2025 GET stream: the events it carried, and whether the server ended it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.opened = anyio.Event()
        self.ended = anyio.Event()
        self.changed = anyio.Event()


@contextlib.asynccontextmanager
async def get_stream(gw: RunningGateway, secret: str, session: str) -> AsyncIterator[GetStream]:
    stream = GetStream()
    headers = {"Authorization": f"Bearer {secret}", "Accept": "text/event-stream", "Mcp-Session-Id": session}

    async def read() -> None:
        async with (
            httpx2.AsyncClient(timeout=None) as http,
            http.stream("GET", gw.url, headers=headers) as got,
        ):
            assert got.status_code == 200
            async for line in got.aiter_lines():
                if line == ": stream open":
                    stream.opened.set()
                if line.startswith("data: "):
                    stream.events.append(orjson.loads(line[6:]))
                    stream.changed.set()
        stream.ended.set()

    task = asyncio.create_task(read())
    with anyio.fail_after(WAIT):
        await stream.opened.wait()
    try:
        yield stream
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Listening:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.lost: BaseException | None = None
        self.ended = anyio.Event()
        self.changed = anyio.Event()


@contextlib.asynccontextmanager
async def listening(gw: RunningGateway, secret: str) -> AsyncIterator[tuple[Any, Listening]]:
    """A 2026 SDK client with an open ``subscriptions/listen`` stream."""
    seen = Listening()
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(mcp_client(gw.url, secret, "2026-07-28"))
        subscription = await stack.enter_async_context(client.listen(tools_list_changed=True))

        async def consume() -> None:
            try:
                async for event in subscription:
                    seen.events.append(event)
                    seen.changed.set()
            except SubscriptionLost as exc:
                seen.lost = exc
            seen.ended.set()

        task = asyncio.create_task(consume())
        try:
            yield client, seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.anyio
async def test_a_cli_revocation_ends_the_keys_sessions_and_streams_of_both_eras_only(tmp_path: Path) -> None:
    async with run_gateway(config(), tmp_path) as gw:
        admin = admin_for(gw)
        settings = parse_settings({"team": "eng"})
        doomed, kept = admin.create("vk_doomed", settings).secret, admin.create("vk_kept", settings).secret
        url = str(gw.runtime.engine.url)
        async with contextlib.AsyncExitStack() as stack:
            clients = {}
            for name, secret in (("doomed", doomed), ("kept", kept)):
                legacy = await stack.enter_async_context(mcp_client(gw.url, secret, "legacy"))
                modern, listen = await stack.enter_async_context(listening(gw, secret))
                raw = await legacy_session(gw, secret)
                stream = await stack.enter_async_context(get_stream(gw, secret, raw))
                assert [t.name for t in (await legacy.list_tools()).tools] == ["alpha__echo"]
                assert [t.name for t in (await modern.list_tools()).tools] == ["alpha__echo"]
                clients[name] = (legacy, modern, listen, raw, stream)
            assert len(gw.runtime.sessions.ids("vk_doomed")) == 2

            await mcp_gateway_cli("keys", "revoke", "vk_doomed", "--database-url", url)

            legacy, modern, listen, raw, stream = clients["doomed"]
            with anyio.fail_after(WAIT):
                await stream.ended.wait()  # the 2025 GET stream ended
                await listen.ended.wait()  # and the 2026 listen stream
            assert isinstance(listen.lost, SubscriptionLost)
            assert "no longer valid" in str(listen.lost.__cause__)
            assert gw.runtime.sessions.ids("vk_doomed") == set()
            ping = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
            assert (await post_mcp(gw, doomed, ping, session=raw)).status_code == 401
            assert (await post_mcp(gw, doomed, ping)).status_code == 401
            for client in (legacy, modern):
                with pytest.raises(MCPError):
                    await client.list_tools()

            # The other key's sessions and streams carry on: they still answer, and still hear about
            # a change to that key's tools.
            legacy, modern, listen, raw, stream = clients["kept"]
            assert [t.name for t in (await legacy.list_tools()).tools] == ["alpha__echo"]
            assert [t.name for t in (await modern.list_tools()).tools] == ["alpha__echo"]
            assert (await post_mcp(gw, kept, ping, session=raw)).status_code == 200
            assert not stream.ended.is_set() and not listen.ended.is_set()
            await mcp_gateway_cli(
                "keys",
                "update",
                "vk_kept",
                "--tools",
                "{alpha: [echo, add]}",
                "--config",
                str(write_policy(tmp_path, url)),
            )
            with anyio.fail_after(WAIT):
                await stream.changed.wait()
                await listen.changed.wait()
            assert stream.events[-1]["method"] == "notifications/tools/list_changed"
            assert not stream.ended.is_set() and not listen.ended.is_set()
            assert sorted(t.name for t in (await modern.list_tools()).tools) == ["alpha__add", "alpha__echo"]


def write_policy(tmp_path: Path, url: str) -> Path:
    """The running gateway's policy as a file for the CLI (it checks servers against it)."""
    import yaml

    path = tmp_path / "policy.yaml"
    policy = config()
    policy["gateway"]["database_url"] = url
    path.write_text(yaml.safe_dump(policy))
    return path


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


async def ask_model(gw: RunningGateway, secret: str, model: str = "claude-haiku-4-5") -> httpx2.Response:
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(f"{gw.base}/v1/messages", json=body, headers={"x-api-key": secret})


TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


def model_config(upstream: str) -> dict[str, Any]:
    return config(
        providers=[
            {"name": "primary", "kind": "anthropic", "base_url": upstream, "api_key_env": "TEST_PROVIDER_KEY"}
        ],
        routes=[{"match": "claude-*", "provider": "primary"}],
    )


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env")
async def test_a_rotated_secret_works_for_its_grace_then_both_doors_say_why_it_is_refused(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with (
        mock_api() as (_, upstream),
        run_gateway(model_config(upstream), tmp_path, app_options={"clock": clock}) as gw,
    ):
        admin = admin_for(gw, clock)
        old = admin.create("vk_rot", parse_settings({"team": "eng"})).secret
        expiring = admin.create(
            "vk_exp", parse_settings({"team": "eng", "expires_at": "2026-12-01T13:00:00Z"})
        )
        new = admin.rotate("vk_rot", timedelta(hours=1)).secret
        for secret in (old, new, expiring.secret):
            assert (await post_mcp(gw, secret, TOOLS_LIST)).status_code == 200
            assert (await ask_model(gw, secret)).status_code == 200

        clock.now += 2 * 3600  # past the grace period and the other key's expiry
        replaced = "This secret of virtual key 'vk_rot' was replaced by a new one (key rotation) and stopped working on 2026-12-01 13:00:00 UTC"
        expired = "Virtual key 'vk_exp' expired on 2026-12-01 13:00:00 UTC"
        for secret, reason in ((old, replaced), (expiring.secret, expired)):
            refused = await post_mcp(gw, secret, TOOLS_LIST)
            assert refused.status_code == 401
            assert refused.json()["error"] == "key_expired" and refused.json()["message"].startswith(reason)
            answer = await ask_model(gw, secret)
            assert answer.status_code == 401
            assert answer.json()["error"]["type"] == "authentication_error"
            assert answer.json()["error"]["message"].startswith(reason)
        assert (await post_mcp(gw, new, TOOLS_LIST)).status_code == 200
        assert (await ask_model(gw, new)).status_code == 200
        # A secret the gateway never issued learns nothing about expiry or rotation.
        unknown = await post_mcp(gw, "mgw_never_issued", TOOLS_LIST)
        assert unknown.json() == {
            "error": "unauthorized",
            "message": "Missing or invalid virtual key: send 'Authorization: Bearer <key>'",
        }
        unknown_model = (await ask_model(gw, "mgw_never_issued")).json()["error"]["message"]
        assert unknown_model == "Invalid virtual key (unknown, revoked or disabled)"


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env")
async def test_a_database_keys_own_settings_apply_and_an_update_reaches_the_running_gateway(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    policy = model_config("")
    policy["mcp"]["team_permissions"] = {"eng": "*"}
    policy["teams"] = [{"name": "eng", "allowed_models": ["claude-sonnet-*"]}]
    async with mock_api() as (_, upstream):
        policy["providers"][0]["base_url"] = upstream
        async with run_gateway(policy, tmp_path, app_options={"clock": clock}) as gw:
            admin = admin_for(gw, clock)
            own = {
                "team": "eng",
                "allowed_models": ["claude-haiku-*"],
                "rate_limit": {"requests_per_minute": 2},
                "tool_permissions": {"alpha": ["echo"]},
            }
            secret = admin.create("vk_own", parse_settings(own)).secret
            mate = admin.create("vk_mate", parse_settings({"team": "eng"})).secret
            listed = (await post_mcp(gw, secret, TOOLS_LIST)).json()["result"]["tools"]
            assert [t["name"] for t in listed] == ["alpha__echo"]
            assert len((await post_mcp(gw, mate, TOOLS_LIST)).json()["result"]["tools"]) > 1  # the team's "*"
            assert (await ask_model(gw, secret, "claude-sonnet-4-5")).status_code == 403
            assert (await ask_model(gw, mate, "claude-sonnet-4-5")).status_code == 200
            assert [(await ask_model(gw, secret)).status_code for _ in range(3)] == [200, 200, 429]

            await mcp_gateway_cli(
                "keys",
                "update",
                "vk_own",
                "--unset",
                "tool_permissions",
                "--database-url",
                str(gw.runtime.engine.url),
            )
            with anyio.fail_after(WAIT):
                while len((await post_mcp(gw, secret, TOOLS_LIST)).json()["result"]["tools"]) == 1:
                    await anyio.sleep(0.05)
            rows = await gw.flushed_calls()
    assert {(r.key_id, r.team) for r in rows} <= {("vk_own", "eng"), ("vk_mate", "eng")}
