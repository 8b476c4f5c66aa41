"""End to end with the real client: ``claude -p`` with ANTHROPIC_BASE_URL at the gateway, the mock model API behind it.

The mock answers the prompt with a ``tool_use`` for the gateway's MCP filesystem
tool, Claude Code calls it over /mcp and sends the result back in a second model
request; both model requests must be in the ledger under the key, with Claude
Code's session id, and the tool call in the audit log. Runs both pinned Claude
Code versions (tests/e2e/package.json; ``make test`` installs them).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest
from sqlmodel import Session, select

from mcp_gateway.audit import ToolCall
from tests.llm_proxy.conftest import KEY_ALICE, PROVIDER_KEY, mock_api, proxy_config, start_proxy

REPO = Path(__file__).resolve().parents[2]
CLIENTS = {
    "2.1.332": REPO / "tests/e2e/node_modules/claude-code-2026/bin/claude.exe",
    "2.1.197": REPO / "tests/e2e/node_modules/claude-code-2025/bin/claude.exe",
}
TOOL = "mcp__gw__filesystem__list_directory"

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.e2e, pytest.mark.usefixtures("provider_env")]


@pytest.mark.parametrize("version", list(CLIENTS))
async def test_claude_code_runs_through_the_proxy_and_is_in_the_ledger(tmp_path: Path, version: str) -> None:
    binary = CLIENTS[version]
    if not binary.exists():
        pytest.skip(f"Claude Code {version} is not installed ({binary}); run `npm ci` in tests/e2e")
    files = tmp_path / "files"
    files.mkdir()
    (files / "notes.txt").write_text("hello\n")
    home = tmp_path / "home"
    home.mkdir()
    async with mock_api(api_key=PROVIDER_KEY) as (api, url):
        config = proxy_config(url)
        config["mcp"] = {
            "servers": [
                {
                    "name": "filesystem",
                    "command": sys.executable,
                    "args": ["-m", "examples.servers.filesystem", "--root", str(files)],
                    "cwd": str(REPO),
                }
            ],
            "team_permissions": {"eng": "*"},
        }
        async with start_proxy(config, tmp_path, socket=True) as proxy:
            assert await proxy.app.state.runtime.hub.wait_ready(30)
            mcp_config = {
                "mcpServers": {
                    "gw": {
                        "type": "http",
                        "url": f"{proxy.url}/mcp",
                        "headers": {"Authorization": f"Bearer {KEY_ALICE}"},
                    }
                }
            }
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(home),
                "DISABLE_TELEMETRY": "1",
                "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_ERROR_REPORTING": "1",
                "CLAUDE_CODE_MAX_RETRIES": "0",
                "ENABLE_TOOL_SEARCH": "false",
                "ANTHROPIC_BASE_URL": proxy.url,
                "ANTHROPIC_API_KEY": KEY_ALICE,
            }
            process = await asyncio.create_subprocess_exec(
                "timeout",
                "90",
                str(binary),
                "-p",
                f'Please call {TOOL} {{"path": "."}}',
                "--strict-mcp-config",
                "--mcp-config",
                orjson.dumps(mcp_config).decode(),
                "--allowedTools",
                TOOL,
                "--output-format",
                "json",
                cwd=tmp_path,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await process.communicate()
            assert process.returncode == 0, f"claude exited {process.returncode}: {stderr.decode()[-2000:]}"
            result = orjson.loads(stdout)
            assert result["is_error"] is False and result["num_turns"] == 2, result
            assert "notes.txt" in result["result"]

            rows = [r for r in await proxy.ledger() if r.key_id == "alice"]
            await proxy.app.state.runtime.audit.flush()
            with Session(proxy.app.state.runtime.engine) as db:
                calls = list(db.exec(select(ToolCall)).all())
        assert len(rows) >= 2
        assert all(r.status == "ok" and r.stream and r.provider == "primary" for r in rows)
        assert all(r.session_id == result["session_id"] for r in rows)
        assert all(r.cost_usd > 0 and r.input_tokens > 0 and r.output_tokens > 0 for r in rows)
        assert all(r.user_agent and f"claude-cli/{version}" in r.user_agent for r in rows)
        # Claude Code prices the same usage itself: the ledger agrees with it
        assert sum(r.cost_usd for r in rows) == pytest.approx(result["total_cost_usd"], rel=1e-6)
        assert [(c.key_id, c.exposed_name, c.status) for c in calls] == [
            ("alice", "filesystem__list_directory", "ok")
        ]
        model_calls = [r for r in api.received if r.path == "/v1/messages"]
        assert model_calls and all(r.headers["x-api-key"] == PROVIDER_KEY for r in model_calls)
        assert all(r.query == "beta=true" for r in model_calls)
