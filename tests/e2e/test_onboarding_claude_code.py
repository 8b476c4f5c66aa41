"""The onboarding kit works as written with the real Claude Code: a key restricted to Haiku models is
created with ``keys create --onboard --write DIR``; a developer with an empty home runs the
``claude mcp add`` script and puts the ``settings.json`` in ``~/.claude/``, then runs ``claude -p``
with no model flag and no environment of their own. Every model request must be one the key may
use (Claude Code's own default model would be refused with a 403), and the MCP tool call goes
through the gateway under the key. Runs both pinned Claude Code versions."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gateway_app.cli import main
from llm_proxy.ledger import ModelRequest
from tests.conftest import REPO_ROOT, run_gateway
from tests.llm_proxy.conftest import mock_api, provider_env  # noqa: F401  (a fixture)

CLIENTS = {
    "2.1.332": REPO_ROOT / "tests/e2e/node_modules/claude-code-2026/bin/claude.exe",
    "2.1.197": REPO_ROOT / "tests/e2e/node_modules/claude-code-2025/bin/claude.exe",
}
TOOL = "mcp__gateway__filesystem__list_directory"

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def policy(upstream: str, files: Path) -> dict[str, Any]:
    return {
        "teams": [{"name": "eng"}],
        "mcp": {
            "servers": [
                {
                    "name": "filesystem",
                    "command": sys.executable,
                    "args": ["-m", "examples.servers.filesystem", "--root", str(files)],
                    "cwd": str(REPO_ROOT),
                }
            ],
            "team_permissions": {"eng": "*"},
        },
        "providers": [
            {
                "name": "primary",
                "kind": "anthropic",
                "base_url": upstream,
                "api_key_env": "TEST_PROVIDER_KEY",
                "models": ["claude-sonnet-4-5", "claude-haiku-4-5"],
            }
        ],
        "routes": [{"match": "claude-*", "provider": "primary"}],
    }


async def run(*command: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        "timeout",
        "90",
        *command,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env")
@pytest.mark.parametrize("version", list(CLIENTS))
async def test_a_restricted_key_works_out_of_the_box_with_the_onboarding_kit(
    tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    binary = CLIENTS[version]
    if not binary.exists():
        pytest.skip(f"Claude Code {version} is not installed ({binary}); run `npm ci` in tests/e2e")
    files, home, bin_dir, kit = tmp_path / "files", tmp_path / "home", tmp_path / "bin", tmp_path / "kit"
    for directory in (files, home, bin_dir):
        directory.mkdir()
    (files / "notes.txt").write_text("hello\n")
    (bin_dir / "claude").symlink_to(binary)
    async with mock_api() as (_, upstream):
        config = policy(upstream, files)
        async with run_gateway(config, tmp_path) as gw:
            config_file = tmp_path / "policy.yaml"
            config_file.write_text(
                yaml.safe_dump({**config, "gateway": {"database_url": str(gw.runtime.engine.url)}})
            )
            created = main(
                [
                    "keys", "create", "vk_dev", "--team", "eng", "--allowed-models", "claude-haiku-*",
                    "--config", str(config_file), "--onboard", "--write", str(kit), "--gateway-url", gw.base,
                ]
            )  # fmt: skip
            assert created == 0, capsys.readouterr().err
            secret = capsys.readouterr().out.splitlines()[1]

            # The developer's side: nothing but the kit.
            env = {
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                "HOME": str(home),
                "DISABLE_TELEMETRY": "1",
                "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
                "DISABLE_ERROR_REPORTING": "1",
                "CLAUDE_CODE_MAX_RETRIES": "0",
                "ENABLE_TOOL_SEARCH": "false",  # the mock needs the MCP tools listed
            }
            code, out, err = await run("sh", str(kit / "claude-mcp-add.sh"), env=env, cwd=tmp_path)
            assert code == 0, out + err
            (home / ".claude").mkdir(exist_ok=True)
            shutil.copy(kit / "settings.json", home / ".claude" / "settings.json")
            assert secret not in (tmp_path / "policy.yaml").read_text()

            code, out, err = await run(
                "claude", "-p", f'call {TOOL} {{"path": "."}}', "--allowedTools", TOOL, "--output-format", "json",
                env=env, cwd=tmp_path,
            )  # fmt: skip
            assert code == 0, f"claude exited {code}: {err[-2000:]}"
            outcome = orjson.loads(out.strip().splitlines()[-1])
            assert outcome["is_error"] is False and outcome["num_turns"] == 2, outcome
            assert "notes.txt" in outcome["result"]
            await gw.llm.ledger.flush()
            rows: list[ModelRequest] = await asyncio.to_thread(ledger_rows, gw)
            calls = await gw.flushed_calls()
    assert rows and {(r.key_id, r.requested_model, r.status) for r in rows} == {
        ("vk_dev", "claude-haiku-4-5", "ok")
    }
    assert [(c.key_id, c.exposed_name, c.status) for c in calls] == [
        ("vk_dev", "filesystem__list_directory", "ok")
    ]


def ledger_rows(gw: Any) -> list[ModelRequest]:
    from sqlmodel import Session, select

    with Session(gw.runtime.engine) as db:
        return list(db.exec(select(ModelRequest)).all())
