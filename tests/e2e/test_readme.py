"""The README's commands, run as written against a real gateway, so the README cannot drift.

Blocks marked ``<!-- readme-test: NAME -->`` in README.md are extracted and run: the curl
examples of both protocol eras, the Claude Code demo (``claude mcp add`` then ``claude -p``,
with the real pinned releases of both eras as ``claude``), ``mcp-gateway check`` and the
SQLModel snippets. The gateway runs as ``make run`` runs it: `examples/gateway.yaml`,
secrets from ``mcp-gateway demo-secrets`` in ``data/demo-secrets.env``, the mock model API
behind it. The one edit to a block is the port: 8080 and 8100 may be taken on a shared machine.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from sqlmodel import Session

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from llm_proxy.ledger import ModelRequest
from mcp_gateway.audit import ToolCall
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
NODE_MODULES = REPO / "tests" / "e2e" / "node_modules"
CLAUDE = {
    "2.1.197": NODE_MODULES / "claude-code-2025" / "bin" / "claude.exe",
    "2.1.332": NODE_MODULES / "claude-code-2026" / "bin" / "claude.exe",
}
_BLOCK = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.DOTALL)
# Variables of the machine that would change what the demo does; `make run` is started without them.
_UNSET = ("CLAUDE_PROVIDER", "UPSTREAM_ANTHROPIC_API_KEY", "MOCK_MODEL_API_URL", "ANTHROPIC_MODEL")

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def readme_blocks() -> dict[str, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return {name: code for name, _language, code in _BLOCK.findall(text)}


def block(name: str, port: int | None = None) -> str:
    code = readme_blocks()[name]
    if port is not None:
        assert "127.0.0.1:8080" in code, f"README block {name!r} no longer talks to the gateway"
        code = code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    return code


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UNSET and not k.startswith("MCPGW_KEY_")}
    env.update(extra)
    return env


@dataclass
class Demo:
    root: Path
    """Plays the repository's directory (its .venv and examples/ are links to this one's); data/
    lives here, as after `make run`."""
    port: int


def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited"
        try:
            status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
            if all(u["state"] == "ready" for u in status["upstreams"]):
                return
        except (httpx.TransportError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError("the demo gateway did not become ready")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("repo")
    (root / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (root / "examples").symlink_to(REPO / "examples")
    config = "examples/gateway.yaml"
    mock_port, port = free_port(), free_port()
    env = clean_env(MOCK_MODEL_API_URL=f"http://127.0.0.1:{mock_port}")
    cli = [sys.executable, "-m", "gateway_app"]
    subprocess.run(
        [*cli, "demo-secrets", "--config", config, "--out", "data/demo-secrets.env"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
    )
    mock = subprocess.Popen(
        [sys.executable, "-m", "examples.servers.mock_model_api", "--port", str(mock_port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = subprocess.Popen(
        [*cli, "serve", "--config", config, "--env-file", "data/demo-secrets.env", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(port, gateway)
        yield Demo(root, port)
    finally:
        for process in (gateway, mock):
            process.send_signal(signal.SIGTERM)
        for process in (gateway, mock):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_shell(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["timeout", "100", "bash", "-euo", "pipefail", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_setup_commands_come_first() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    first = re.search(r"```sh\n(.*?)\n```", text, re.DOTALL)
    assert first is not None
    assert [line.split()[:2] for line in first.group(1).splitlines()] == [["make", "run"], ["make", "test"]]


@pytest.mark.parametrize("era", ["2025", "2026"])
def test_the_curl_examples_work_as_written(demo: Demo, era: str) -> None:
    result = run_shell(block(f"curl-{era}", demo.port), demo.root, clean_env())
    assert result.returncode == 0, result.stderr
    replies = [orjson.loads(line) for line in re.findall(r'\{"jsonrpc".*?(?=\{"jsonrpc"|\Z)', result.stdout)]
    assert [reply["id"] for reply in replies] == ([2, 3] if era == "2025" else [1, 2]), result.stdout
    tools, call = replies
    names = {tool["name"] for tool in tools["result"]["tools"]}
    assert names == {"filesystem__read_file", "filesystem__write_file", "filesystem__list_directory"}
    assert call["result"]["isError"] is False
    assert call["result"]["structuredContent"]["path"] == "."


@pytest.mark.parametrize("version", list(CLAUDE))
def test_the_claude_code_demo_works_as_written(demo: Demo, version: str, tmp_path: Path) -> None:
    binary = CLAUDE[version]
    if not binary.exists():
        pytest.skip(f"Claude Code {version} is not installed ({binary}); run `npm ci` in tests/e2e")
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    bin_dir.mkdir()
    home.mkdir()
    (bin_dir / "claude").symlink_to(binary)
    env = clean_env(
        HOME=str(home),
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        DISABLE_TELEMETRY="1",
        DISABLE_AUTOUPDATER="1",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CODE_MAX_RETRIES="0",
    )
    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ENABLE_TOOL_SEARCH"):
        env.pop(name, None)
    # One terminal: the `claude mcp add` block, then the `claude -p` block.
    code = block("claude-mcp-add", demo.port) + "\n" + block("claude-print", demo.port)
    result = run_shell(code, demo.root, env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    outcome = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["is_error"] is False, outcome.get("result")
    assert outcome["num_turns"] == 2
    assert '"entries"' in outcome["result"]


def test_the_check_command_works_as_written(demo: Demo) -> None:
    result = run_shell(block("check"), demo.root, clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("examples/gateway.yaml: OK")
    assert "warning" not in result.stdout  # every demo key has its secret from data/demo-secrets.env


def test_the_keys_commands_work_as_written(demo: Demo) -> None:
    result = run_shell(block("keys"), demo.root, clean_env())
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"Created key 'vk_dev_sam' \(team backend, .*\nmgw_\S+\n", out), out
    assert re.search(
        r"^ *vk_dev_sam +- +backend +mgw_\S+ +models, limits, budget .* active *$", out, re.MULTILINE
    ), out
    assert re.search(r"Rotated key 'vk_dev_sam' .*\nmgw_\S+\nthe replaced secret works until", out), out
    assert re.search(
        r"^ *tool_permissions +\{\"filesystem\":\[\"read_file\",\"list_directory\"\]\} *$", out, re.MULTILINE
    ), out
    assert "revoked 2 database secret(s) of key 'vk_dev_sam'" in out


def test_the_onboarding_command_works_as_written(demo: Demo) -> None:
    result = run_shell(block("onboard"), demo.root, clean_env())
    assert result.returncode == 0, result.stderr
    secret = result.stdout.splitlines()[1]
    kit = demo.root / "onboarding" / "ana"
    assert oct((kit / "settings.json").stat().st_mode & 0o777) == "0o600"
    settings = orjson.loads((kit / "settings.json").read_text())
    assert settings["env"] == {
        "ANTHROPIC_BASE_URL": "https://gateway.example.com",
        "ANTHROPIC_AUTH_TOKEN": secret,
    }
    assert (
        f'https://gateway.example.com/mcp --header "Authorization: Bearer {secret}"'
        in (kit / "claude-mcp-add.sh").read_text()
    )


def test_the_audit_commands_work_as_written(demo: Demo) -> None:
    result = run_shell(block("audit-cli"), demo.root, clean_env())
    assert result.returncode == 0, result.stderr
    # The demo's calls so far may include no backend ones: then a note instead of a table.
    summary = re.search(r"^KEY +TEAM +SERVER +TOOL +STATUS +CALLS$", result.stdout, re.MULTILINE)
    assert summary or "no tool calls match" in result.stderr, result.stdout + result.stderr


def _seed(database: Path) -> None:
    engine = make_engine(f"sqlite:///{database}")
    create_schema(engine)
    now = datetime.now(UTC)
    calls = [
        ("a", "vk_team_frontend", "frontend", "read_file", "ok"),
        ("b", "vk_team_frontend", "frontend", "read_file", "ok"),
        ("c", "vk_team_frontend", "frontend", "write_file", "denied"),
        ("d", "vk_team_backend", "backend", "query", "ok"),
    ]
    with Session(engine) as db:
        for ident, key, team, tool, status in calls:
            server = "database" if tool == "query" else "filesystem"
            db.add(
                ToolCall(
                    id=ident,
                    timestamp=now,
                    key_id=key,
                    key_name=key,
                    team=team,
                    exposed_name=f"{server}__{tool}",
                    server=server,
                    tool=tool,
                    status=status,
                    latency_ms=1.0,
                )
            )
        for ident, team, cost in (("r1", "frontend", 0.25), ("r2", "frontend", 0.5), ("r3", "backend", 1.0)):
            db.add(
                ModelRequest(
                    request_id=ident,
                    timestamp=now,
                    endpoint="messages",
                    key_id=f"vk_team_{team}",
                    key_name=team,
                    team=team,
                    cost_usd=cost,
                    status="ok",
                )
            )
        db.commit()
    engine.dispose()


def test_the_sqlmodel_snippets_print_their_answers_and_refuse_a_missing_database(tmp_path: Path) -> None:
    elsewhere = tmp_path / "another-project"
    (elsewhere / "data").mkdir(parents=True)
    _seed(elsewhere / "data" / "gateway.db")
    audit = subprocess.run(
        [sys.executable, "-c", block("sqlmodel-audit")], cwd=elsewhere, capture_output=True, text=True
    )
    assert audit.returncode == 0, audit.stderr
    assert sorted(audit.stdout.splitlines()) == [
        "frontend filesystem/read_file ok: 2",
        "frontend filesystem/write_file denied: 1",
        "vk_team_backend: 1 calls this week",
        "vk_team_frontend: 3 calls this week",
    ]
    ledger = subprocess.run(
        [sys.executable, "-c", block("sqlmodel-ledger")], cwd=elsewhere, capture_output=True, text=True
    )
    assert ledger.returncode == 0, ledger.stderr
    assert sorted(ledger.stdout.splitlines()) == [
        "backend: $1.0000 over 1 requests this month",
        "frontend: $0.7500 over 2 requests this month",
    ]

    empty = tmp_path / "no-database-here"
    empty.mkdir()
    for name in ("sqlmodel-audit", "sqlmodel-ledger"):
        missing = subprocess.run(
            [sys.executable, "-c", block(name)], cwd=empty, capture_output=True, text=True
        )
        assert missing.returncode != 0
        assert f"DatabaseNotFound: no gateway database at {empty}/data/gateway.db" in missing.stderr
    assert list(empty.iterdir()) == []  # nothing created: no data/, no empty gateway.db
