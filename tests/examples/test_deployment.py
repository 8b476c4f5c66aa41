"""The deployment example server: state file changes, rollback rules and progress, via a real MCP client."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.shared.dispatcher import ProgressFnT

from examples.servers.deployment import build_server
from tests.examples._support import error_text, stdio_params

pytestmark = pytest.mark.anyio

Progress = tuple[float, float | None, str | None]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "deployments.json"


def _read(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state.read_text())
    return data


def _recorder() -> tuple[list[Progress], ProgressFnT]:
    seen: list[Progress] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    return seen, on_progress


async def test_tools_are_listed_with_annotations(state: Path) -> None:
    async with Client(build_server(state, step_delay=0)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {"deploy_staging", "rollback", "status"}
    deploy = tools["deploy_staging"]
    assert deploy.annotations is not None
    assert deploy.annotations.destructive_hint is True
    assert deploy.input_schema["required"] == ["service", "version"]
    assert "ctx" not in deploy.input_schema["properties"]
    status = tools["status"].annotations
    assert status is not None
    assert status.read_only_hint is True


async def test_deploy_rollback_and_status_change_the_state_file(state: Path) -> None:
    async with Client(build_server(state, step_delay=0, actor="alice")) as client:
        empty = await client.call_tool("status", {})
        first = await client.call_tool("deploy_staging", {"service": "checkout", "version": "1.0.0"})
        after_first = _read(state)
        second = await client.call_tool("deploy_staging", {"service": "checkout", "version": "1.1.0"})
        await client.call_tool("deploy_staging", {"service": "search", "version": "2024.06.1"})
        after_second = _read(state)
        rolled = await client.call_tool("rollback", {"service": "checkout"})
        after_rollback = _read(state)
        one = await client.call_tool("status", {"service": "checkout"})
        every = await client.call_tool("status", {})

    assert empty.structured_content == {"services": []}
    assert first.structured_content is not None
    assert second.structured_content is not None
    assert first.structured_content["current"]["version"] == "1.0.0"
    assert first.structured_content["previous"] == []

    entry = after_first["services"]["checkout"]
    assert entry["current"]["version"] == "1.0.0"
    assert entry["current"]["deployed_by"] == "alice"
    assert entry["current"]["deployed_at"].endswith("+00:00")
    assert [e["action"] for e in entry["events"]] == ["deploy"]

    entry = after_second["services"]["checkout"]
    assert entry["current"]["version"] == "1.1.0"
    assert [r["version"] for r in entry["previous"]] == ["1.0.0"]
    assert after_second["services"]["search"]["current"]["version"] == "2024.06.1"
    assert second.structured_content == entry

    entry = after_rollback["services"]["checkout"]
    assert entry["current"]["version"] == "1.0.0"
    assert entry["previous"] == []
    assert [(e["action"], e["from_version"], e["to_version"], e["by"]) for e in entry["events"]] == [
        ("deploy", None, "1.0.0", "alice"),
        ("deploy", "1.0.0", "1.1.0", "alice"),
        ("rollback", "1.1.0", "1.0.0", "alice"),
    ]
    assert rolled.structured_content == entry
    assert one.structured_content == {"services": [entry]}
    assert every.structured_content is not None
    assert [s["service"] for s in every.structured_content["services"]] == ["checkout", "search"]
    # Atomic replace: only the state file itself, no temp files left next to it.
    assert [p.name for p in state.parent.iterdir()] == ["deployments.json"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 and the 2025 handshake era
async def test_deploy_reports_progress(state: Path, mode: Literal["auto", "legacy"]) -> None:
    seen, on_progress = _recorder()
    async with Client(build_server(state, step_delay=0), mode=mode) as client:
        result = await client.call_tool(
            "deploy_staging", {"service": "api", "version": "3.2.1"}, progress_callback=on_progress
        )

    assert not result.is_error
    assert seen == [
        (1, 4, "api 3.2.1: validated release"),
        (2, 4, "api 3.2.1: pulled image"),
        (3, 4, "api 3.2.1: rolled out to staging"),
        (4, 4, "api 3.2.1: health checks passed"),
    ]


async def test_rollback_without_previous_version_is_an_error(state: Path) -> None:
    async with Client(build_server(state, step_delay=0)) as client:
        never = await client.call_tool("rollback", {"service": "api"})
        await client.call_tool("deploy_staging", {"service": "api", "version": "1.0.0"})
        before = state.read_bytes()
        only_one = await client.call_tool("rollback", {"service": "api"})
        unknown_status = await client.call_tool("status", {"service": "billing"})

    assert "unknown service 'api'; deployed services: none yet" in error_text(never)
    assert "service 'api' has no previous version to roll back to (running 1.0.0)" in error_text(only_one)
    assert "unknown service 'billing'; deployed services: api" in error_text(unknown_status)
    assert state.read_bytes() == before


async def test_invalid_or_repeated_deploys_are_refused(state: Path) -> None:
    async with Client(build_server(state, step_delay=0)) as client:
        await client.call_tool("deploy_staging", {"service": "api", "version": "1.0.0"})
        before = state.read_bytes()
        again = await client.call_tool("deploy_staging", {"service": "api", "version": "1.0.0"})
        bad_service = await client.call_tool("deploy_staging", {"service": "../etc", "version": "1.0.1"})
        bad_version = await client.call_tool("deploy_staging", {"service": "api", "version": "1.0; rm -rf /"})

    assert "service 'api' is already at 1.0.0 on staging" in error_text(again)
    assert "service" in error_text(bad_service)
    assert "pattern" in error_text(bad_service)
    assert "version" in error_text(bad_version)
    assert "pattern" in error_text(bad_version)
    assert state.read_bytes() == before


async def test_state_survives_a_restart_and_corruption_is_reported(state: Path) -> None:
    async with Client(build_server(state, step_delay=0, actor="bob")) as client:
        await client.call_tool("deploy_staging", {"service": "api", "version": "1.0.0"})
    async with Client(build_server(state, step_delay=0)) as client:
        status = await client.call_tool("status", {"service": "api"})
    assert status.structured_content is not None
    assert status.structured_content["services"][0]["current"]["deployed_by"] == "bob"

    state.write_text("{not json")
    async with Client(build_server(state, step_delay=0)) as client:
        corrupt = await client.call_tool("status", {})
    assert f"state file {state} is corrupt" in error_text(corrupt)


async def test_runs_as_stdio_subprocess(state: Path) -> None:
    params = stdio_params("deployment", "--state", os.fspath(state), "--step-delay", "0", "--actor", "ci")
    async with Client(params) as client:
        result = await client.call_tool("deploy_staging", {"service": "web", "version": "0.9.0"})

    assert result.structured_content is not None
    assert result.structured_content["current"]["version"] == "0.9.0"
    assert _read(state)["services"]["web"]["current"]["deployed_by"] == "ci"


async def test_runs_over_streamable_http_with_progress(state: Path, http_server: Callable[..., str]) -> None:
    url = http_server("deployment", "--state", os.fspath(state), "--step-delay", "0", "--actor", "http")
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/mcp")
    seen, on_progress = _recorder()
    async with Client(url) as client:
        deployed = await client.call_tool(
            "deploy_staging", {"service": "web", "version": "1.0.0"}, progress_callback=on_progress
        )
        await client.call_tool("deploy_staging", {"service": "web", "version": "1.1.0"})
        rolled = await client.call_tool("rollback", {"service": "web"})
        refused = await client.call_tool("rollback", {"service": "web"})

    assert not deployed.is_error
    assert [p[0] for p in seen] == [1, 2, 3, 4]
    assert rolled.structured_content is not None
    assert rolled.structured_content["current"]["version"] == "1.0.0"
    assert "no previous version" in error_text(refused)
    assert _read(state)["services"]["web"]["current"]["version"] == "1.0.0"
