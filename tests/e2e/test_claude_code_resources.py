"""Claude Code (both pinned releases) reads an MCP resource through the gateway.

The model API is the mock on loopback: asked to, it answers with a ``tool_use`` of Claude Code's
resource-reading tool, Claude Code reads the resource over MCP through the gateway (2.1.197 over
the 2025-11-25 handshake, 2.1.332 over 2026-07-28), and sends the content back to the model in its
next request. The audit log holds a ``resource`` row for the read, under the key.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import orjson
import pytest

from tests.conftest import REPO_ROOT, RunningGateway, run_gateway
from tests.e2e.test_claude_code import RELEASES
from tests.llm_proxy.conftest import mock_api

pytestmark = pytest.mark.e2e

KEY = "alice-secret-0123456789"
READ_TOOL = "ReadMcpResourceTool"
URI = "mcpgw://fixture/test://static-text"
CONTENT = "This is the content of the static text resource."


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    fixture = {
        "name": "fixture",
        "command": sys.executable,
        "args": ["-m", "examples.servers.conformance_fixture"],
        "cwd": str(REPO_ROOT),
    }
    config = {
        "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {"servers": [fixture], "virtual_key_permissions": {"alice": "*"}},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_KEY_ALICE", KEY)
        async with run_gateway(config, tmp_path_factory.mktemp("gateway")) as gw:
            yield gw


@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.parametrize("release", sorted(RELEASES), ids=lambda r: r.split()[0])
async def test_claude_p_reads_a_resource_through_the_gateway(
    gateway: RunningGateway, release: str, tmp_path: Path
) -> None:
    binary = RELEASES[release]
    if not binary.exists():
        pytest.skip(f"{binary} is missing: run `npm ci` in tests/e2e (make test does)")
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir(parents=True)
    mcp_config = {
        "mcpServers": {
            "gw": {"type": "http", "url": gateway.url, "headers": {"Authorization": f"Bearer {KEY}"}}
        }
    }
    arguments = json.dumps({"server": "gw", "uri": URI})
    async with mock_api() as (api, url):
        env = {
            "HOME": str(home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ANTHROPIC_BASE_URL": url,
            "ANTHROPIC_API_KEY": "sk-ant-test-0123456789",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "ENABLE_TOOL_SEARCH": "false",  # the mock needs the tools listed in the request
        }
        command = [
            "timeout", "90", str(binary), "-p", f"call {READ_TOOL} {arguments}",
            "--strict-mcp-config", "--mcp-config", json.dumps(mcp_config),
            "--allowedTools", READ_TOOL, "--output-format", "json",
        ]  # fmt: skip
        result = await anyio.run_process(command, cwd=project, env=env, check=False)
        requests = [orjson.loads(r.body) for r in api.received if r.path.startswith("/v1/messages")]
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, f"claude exited {result.returncode}: {out[-1000:]} {err[-2000:]}"
    outcome = orjson.loads(out.strip().splitlines()[-1])
    assert outcome["is_error"] is False and outcome["num_turns"] == 2, outcome

    # The tool was offered, and the resource's content went back to the model with the tool result.
    assert any(READ_TOOL in {t.get("name") for t in r.get("tools", [])} for r in requests)
    answered = [r for r in requests if CONTENT in json.dumps(r["messages"][-1])]
    assert answered, [json.dumps(r["messages"][-1])[:500] for r in requests]
    assert CONTENT in outcome["result"]

    rows = [(c.kind, c.exposed_name, c.tool, c.status, c.key_id) for c in await gateway.flushed_calls()]
    assert ("resource", URI, "test://static-text", "ok", "alice") in rows, rows
