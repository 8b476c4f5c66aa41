"""MCP Inspector's CLI (`@modelcontextprotocol/inspector --cli`, pinned 0.21.2) through the gateway.

The six methods its CLI offers, against a gateway whose upstream is the conformance fixture over
stdio, with a key sent as a header; a wrong key makes it fail (exit 1).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import REPO_ROOT, RunningGateway, run_gateway
from tests.e2e.node_tools import INSPECTOR, NODE22, require

pytestmark = pytest.mark.e2e

KEY = "alice-secret-0123456789"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    require(NODE22, INSPECTOR)
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


async def inspector(gateway: RunningGateway, home: Path, *args: str, key: str = KEY) -> tuple[int, Any]:
    home.mkdir(exist_ok=True)
    command = [str(NODE22), str(INSPECTOR), "--cli", gateway.url, "--transport", "http"]
    command += ["--header", f"Authorization: Bearer {key}", *args]
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    with anyio.fail_after(60):
        result = await anyio.run_process(command, env=env, check=False)
    output = result.stdout.decode()
    return result.returncode, json.loads(
        output
    ) if result.returncode == 0 else output + result.stderr.decode()


URI = "mcpgw://fixture/test://static-text"
CALLS = {
    "tools/list": ["--method", "tools/list"],
    "tools/call": ["--method", "tools/call", "--tool-name", "fixture__test_simple_text"],
    "resources/list": ["--method", "resources/list"],
    "resources/read": ["--method", "resources/read", "--uri", URI],
    "prompts/list": ["--method", "prompts/list"],
    "prompts/get": [
        "--method",
        "prompts/get",
        "--prompt-name",
        "fixture__test_prompt_with_arguments",
        "--prompt-args",
        "arg1=a",
        "arg2=b",
    ],
}


@pytest.mark.anyio
@pytest.mark.timeout(90)
async def test_the_six_methods_through_the_gateway_and_a_wrong_key_fails(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    # Each run of the CLI takes ~3 s of mostly waiting (it starts a second Node process): run them at once.
    results: dict[str, tuple[int, Any]] = {}

    async def run(name: str, args: list[str], key: str = KEY) -> None:
        results[name] = await inspector(gateway, tmp_path / name.replace("/", "-"), *args, key=key)

    async with anyio.create_task_group() as tg:
        for name, args in CALLS.items():
            tg.start_soon(run, name, args)
        tg.start_soon(run, "wrong key", CALLS["tools/list"], "not-a-key")

    for name in CALLS:
        assert results[name][0] == 0, (name, results[name][1])
    out = {name: result for name, (_, result) in results.items()}
    assert "fixture__test_simple_text" in {t["name"] for t in out["tools/list"]["tools"]}
    assert out["tools/call"]["content"] == [
        {"type": "text", "text": "This is a simple text response for testing."}
    ]
    assert URI in {r["uri"] for r in out["resources/list"]["resources"]}
    assert out["resources/read"]["contents"][0]["text"] == "This is the content of the static text resource."
    assert "fixture__test_prompt_with_arguments" in {p["name"] for p in out["prompts/list"]["prompts"]}
    assert out["prompts/get"]["messages"][0]["content"]["text"] == "Prompt with arguments: arg1='a', arg2='b'"
    assert results["wrong key"][0] == 1, results["wrong key"]

    kinds = {(c.kind, c.tool, c.status, c.key_id) for c in await gateway.flushed_calls()}
    assert {
        ("tool", "test_simple_text", "ok", "alice"),
        ("resource", "test://static-text", "ok", "alice"),
        ("prompt", "test_prompt_with_arguments", "ok", "alice"),
    } <= kinds, kinds
