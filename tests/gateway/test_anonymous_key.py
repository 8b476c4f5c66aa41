"""`mcp.anonymous_key`: /mcp requests with no credentials at all are served as one named key.

Off by default; wrong credentials are never "upgraded" to the anonymous key; the model API
never accepts anonymous requests; `check` refuses an unknown key id and
warns loudly about a known one (so does `serve`, through the same warnings).
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway_app.cli import main
from policies import ConfigError, load_policy_text
from tests.conftest import RunningGateway, mcp_client, run_gateway, upstream_stdio

KEY = "alice-secret-0123456789"
LEGACY = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def config(anonymous_key: str | None) -> dict[str, Any]:
    mcp: dict[str, Any] = {
        "servers": [upstream_stdio("alpha")],
        "virtual_key_permissions": {"alice": "*", "local": {"alpha": ["echo"]}},
    }
    if anonymous_key is not None:
        mcp["anonymous_key"] = anonymous_key
    return {
        "virtual_keys": [
            {"id": "alice", "secret_env": "TEST_KEY_ALICE"},
            {"id": "local", "secret_env": "TEST_KEY_BOB"},
        ],
        "mcp": mcp,
    }


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_KEY_ALICE", KEY)
        mp.setenv("TEST_KEY_BOB", "bob-secret-0123456789")
        async with run_gateway(config("local"), tmp_path_factory.mktemp("gw")) as gw:
            yield gw


@pytest.mark.anyio
async def test_no_credentials_are_served_as_the_anonymous_key(gateway: RunningGateway) -> None:
    async with mcp_client(gateway.url, None, mode="legacy") as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        assert tools == ["alpha__echo"]  # local's grant, not alice's "*"
        result = await client.call_tool("alpha__echo", {"text": "hi"})
        assert not result.is_error
    async with mcp_client(gateway.url, None, mode="2026-07-28") as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["alpha__echo"]
    calls = [c for c in await gateway.flushed_calls() if c.tool == "echo"]
    assert [c.key_id for c in calls] == ["local"]
    # A key still gets its own grant.
    async with mcp_client(gateway.url, KEY, mode="legacy") as client:
        assert len((await client.list_tools()).tools) > 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization", ["Bearer nope-not-a-key", "Basic YWxpY2U6c2VjcmV0", "Bearer", "", "Token x"]
)
async def test_wrong_credentials_are_refused_not_served_anonymously(
    gateway: RunningGateway, authorization: str
) -> None:
    async with httpx2.AsyncClient(base_url=gateway.base, timeout=10) as http:
        response = await http.post("/mcp", json=INIT, headers={**LEGACY, "Authorization": authorization})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"


@pytest.mark.anyio
async def test_only_mcp_is_anonymous(gateway: RunningGateway) -> None:
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx2.AsyncClient(base_url=gateway.base, timeout=10) as http:
        model = await http.post("/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
        anonymous_mcp = await http.post("/mcp", json=INIT, headers=LEGACY)
    assert model.status_code == 401, model.text
    assert anonymous_mcp.status_code == 200, anonymous_mcp.text


@pytest.mark.anyio
async def test_off_by_default(tmp_path: Path, keys_env: dict[str, str]) -> None:
    async with (
        run_gateway(config(None), tmp_path) as gw,
        httpx2.AsyncClient(base_url=gw.base, timeout=10) as http,
    ):
        response = await http.post("/mcp", json=INIT, headers=LEGACY)
    assert response.status_code == 401, response.text


@pytest.mark.anyio
async def test_serve_warns_loudly_at_start(
    tmp_path: Path, keys_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    async with run_gateway(config("local"), tmp_path, wait_ready=False):
        pass
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith("mcp.anonymous_key: ANONYMOUS ACCESS IS ON") for m in warnings), warnings


def test_an_unknown_key_is_a_policy_error() -> None:
    text = textwrap.dedent(
        """
        virtual_keys: [{id: alice, secret_env: A}]
        mcp:
          anonymous_key: nobody
        """
    )
    with pytest.raises(ConfigError) as exc:
        load_policy_text(text)
    assert "4: mcp.anonymous_key: virtual key 'nobody' is not defined under virtual_keys" in str(exc.value)
    assert load_policy_text("virtual_keys: [{id: alice, secret_env: A}]")


def test_check_warns_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys_env: dict[str, str]
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("virtual_keys: [{id: local, secret_env: TEST_KEY_ALICE}]\nmcp: {anonymous_key: local}\n")
    assert main(["check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: mcp.anonymous_key: ANONYMOUS ACCESS IS ON" in out
    assert "served as key 'local'" in out
