"""Reloading the policy file: servers added, removed, restarted and kept; broken files refused with
the old policy in force; restart-only settings kept; every attempt recorded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from gateway_app.queries.reloads import recent_reloads
from gateway_app.reload_log import ReloadOutcome
from policies.secrets import hash_secret
from tests.conftest import mcp_client, upstream_stdio
from tests.gateway.reload_support import serve_policy_file, wait_for

KEY_A = "reload-key-a-0123456789"
KEY_B = "reload-key-b-0123456789"


def policy(
    servers: dict[str, dict[str, Any]] | None = None,
    team_a: Any = ("alpha",),
    team_b: Any = ("alpha",),
    **sections: Any,
) -> dict[str, Any]:
    chosen = servers if servers is not None else {"alpha": {}}
    return {
        "teams": [{"name": "a"}, {"name": "b"}],
        "virtual_keys": [
            {"id": "ka", "team": "a", "secret_sha256": hash_secret(KEY_A)},
            {"id": "kb", "team": "b", "secret_sha256": hash_secret(KEY_B)},
        ],
        "mcp": {
            "servers": [upstream_stdio(name, **extra) for name, extra in chosen.items()],
            "team_permissions": {"a": list(team_a), "b": list(team_b)},
        },
        **sections,
    }


async def tool_names(url: str, key: str) -> set[str]:
    async with mcp_client(url, key, "2026-07-28") as client:
        return {tool.name for tool in (await client.list_tools()).tools}


async def echo(url: str, key: str, name: str) -> str:
    async with mcp_client(url, key, "2026-07-28") as client:
        result = await client.call_tool(name, {"text": "hi"})
        assert not result.is_error, result
        return str(result.content[0].text)  # type: ignore[union-attr]


def pid(gw: Any, server: str) -> int:
    status = gw.runtime.hub.supervisors[server].status()
    return int(status["pid"])


def alive(process_id: int) -> bool:
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.anyio
async def test_servers_are_added_removed_restarted_and_kept(tmp_path: Path) -> None:
    async with serve_policy_file(policy({"alpha": {}, "gamma": {}}), tmp_path) as gw:
        alpha, gamma = pid(gw, "alpha"), pid(gw, "gamma")
        kept = gw.runtime.hub.supervisors["alpha"]
        assert await tool_names(gw.url, KEY_A) >= {"alpha__echo"}

        # Add beta (granted to team a at the same time), restart gamma (new arguments), keep alpha.
        servers = {"alpha": {}, "beta": {}, "gamma": {"env": {"CHANGED": "1"}}}
        record = await gw.reload(policy(servers, team_a=["alpha", "beta"]))
        assert record.outcome is ReloadOutcome.APPLIED, record
        assert record.changes["servers"] == {"added": ["beta"], "restarted": ["gamma"]}
        assert record.changes["permissions"] == ["team:a"]
        # The new server's tools are there with the new permission: on the very next request.
        names = await tool_names(gw.url, KEY_A)
        assert {"alpha__echo", "beta__echo"} <= names
        assert "beta__echo" not in await tool_names(gw.url, KEY_B)
        assert await echo(gw.url, KEY_A, "beta__echo") == "hi"
        assert gw.runtime.hub.supervisors["alpha"] is kept and pid(gw, "alpha") == alpha
        assert pid(gw, "gamma") != gamma
        await wait_for(lambda: not alive(gamma))  # the replaced process ends once its calls are done

        # Remove alpha: its tools leave every catalogue, its process stops; beta carries on.
        record = await gw.reload(policy({"beta": {}, "gamma": {"env": {"CHANGED": "1"}}}, ["beta"], ["beta"]))
        assert record.changes["servers"] == {"removed": ["alpha"]}
        assert not any(n.startswith("alpha__") for n in await tool_names(gw.url, KEY_A))
        async with mcp_client(gw.url, KEY_A, "2026-07-28") as client:
            with pytest.raises(MCPError, match="Unknown tool"):
                await client.call_tool("alpha__echo", {"text": "hi"})
        assert await echo(gw.url, KEY_B, "beta__echo") == "hi"
        await wait_for(lambda: not alive(alpha))
        assert "alpha" not in {s["name"] for s in gw.runtime.hub.status()}


@pytest.mark.anyio
async def test_a_server_whose_allowed_tools_change_keeps_its_connection(tmp_path: Path) -> None:
    async with serve_policy_file(policy(), tmp_path) as gw:
        before = pid(gw, "alpha")
        record = await gw.reload(policy({"alpha": {"allowed_tools": ["echo"], "timeout_seconds": 5}}))
        assert record.changes["servers"] == {"updated": ["alpha"]}
        assert await tool_names(gw.url, KEY_A) == {"alpha__echo"}
        assert pid(gw, "alpha") == before
        assert gw.runtime.hub.bindings["alpha__echo"].timeout == 5


BROKEN = {
    "syntax": ("virtual_keys: [\n", ":2: invalid YAML"),
    "unknown field": (
        "gateway:\n  port: 1\nvirtual_keys:\n  - id: ka\n    rate_limit: {request_per_minute: 5}\n",
        "gateway.yaml:5: virtual_keys[0].rate_limit.request_per_minute: unknown field 'request_per_minute'",
    ),
    "bad reference": (
        "mcp:\n  servers: []\n  team_permissions:\n    a: [nowhere]\n",
        "gateway.yaml:4: mcp.team_permissions.a: server 'nowhere' is not defined under mcp.servers",
    ),
}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", sorted(BROKEN))
async def test_a_broken_file_leaves_the_old_policy_in_force(tmp_path: Path, kind: str) -> None:
    text, expected = BROKEN[kind]
    async with serve_policy_file(policy(), tmp_path) as gw:
        version = gw.runtime.state.current.version
        before = await tool_names(gw.url, KEY_A)
        record = await gw.reload(text)
        assert record.outcome is ReloadOutcome.REFUSED
        assert any(expected in error for error in record.errors), record.errors
        assert record.errors[0].startswith(str(gw.path)), "errors name the file"
        assert gw.runtime.state.current.version == version and record.snapshot_version == version
        assert await tool_names(gw.url, KEY_A) == before
        assert await echo(gw.url, KEY_A, "alpha__echo") == "hi"
        assert gw.reloader.history()[0] is record
        rows = await asyncio.to_thread(recent_reloads, gw.runtime.engine)
        assert rows[0]["id"] == record.id and rows[0]["outcome"] == "refused"
        assert rows[0]["errors"] == record.errors and rows[0]["trigger"] == "api"

        # Fixed, it applies.
        record = await gw.reload(policy(team_b=[]))
        assert record.outcome is ReloadOutcome.APPLIED and record.changes["permissions"] == ["team:b"]
        assert await tool_names(gw.url, KEY_B) == set()


@pytest.mark.anyio
async def test_settings_only_a_restart_changes_keep_their_values(tmp_path: Path) -> None:
    async with serve_policy_file(policy(), tmp_path) as gw:
        doc = policy()
        doc["gateway"] = {"max_connections": 7, "max_body_bytes": 2048}
        record = await gw.reload(doc)
        assert record.outcome is ReloadOutcome.APPLIED
        assert record.changes["restart_required"] == ["gateway.max_connections"]
        assert record.changes["settings"] == ["gateway.max_body_bytes"]
        assert any("gateway.max_connections changed" in w and "restart" in w for w in record.warnings)
        current = gw.runtime.state.current.policy.gateway
        assert current.max_connections == 2000 and current.max_body_bytes == 2048

        # Only a restart-only change: nothing to apply, and it says why.
        doc["gateway"] = {"max_connections": 9, "max_body_bytes": 2048}
        record = await gw.reload(doc)
        assert record.outcome is ReloadOutcome.UNCHANGED
        assert record.changes == {"restart_required": ["gateway.max_connections"]}
        assert record.snapshot_version == gw.runtime.state.current.version

        # The same file again: unchanged, no new snapshot.
        record = await gw.reload()
        assert record.outcome is ReloadOutcome.UNCHANGED


@pytest.mark.anyio
async def test_allowed_hosts_apply_to_the_next_request(tmp_path: Path) -> None:
    import httpx

    async with serve_policy_file(policy(), tmp_path) as gw, httpx.AsyncClient(base_url=gw.base) as http:
        headers = {"Host": "gw.example.com"}
        assert (await http.get("/healthz", headers=headers)).status_code == 421
        doc = policy()
        doc["gateway"] = {"allowed_hosts": ["gw.example.com"]}
        await gw.reload(doc)
        assert (await http.get("/healthz", headers=headers)).status_code == 200


@pytest.mark.anyio
async def test_a_reload_that_fails_to_apply_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve_policy_file(policy(), tmp_path) as gw:
        version = gw.runtime.state.current.version

        hub = gw.runtime.hub
        started: list[Any] = []

        async def broken(timeout: float) -> bool:
            started.extend(hub._incoming.values())  # beta, started for this reload
            raise RuntimeError("something went wrong")

        monkeypatch.setattr(hub, "wait_prepared", broken)
        record = await gw.reload(policy({"alpha": {}, "beta": {}}, team_a=["alpha", "beta"]))
        assert record.outcome is ReloadOutcome.FAILED
        assert record.errors == ["RuntimeError: something went wrong"]
        assert gw.runtime.state.current.version == version
        assert set(hub.supervisors) == {"alpha"} and not hub._incoming
        assert [s.name for s in started] == ["beta"]
        await wait_for(lambda: started[0].state == "stopped")
        assert "beta__echo" not in await tool_names(gw.url, KEY_A)


@pytest.mark.anyio
async def test_a_reload_asked_for_while_starting_runs_once_the_gateway_is_up() -> None:
    from gateway_app.reload import ReloadRequests

    runs: list[str] = []

    class Recorder:
        async def reload(self, trigger: str) -> None:
            runs.append(trigger)

    requests = ReloadRequests()
    requests.request("signal")
    assert runs == []
    requests.bind(Recorder())  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert runs == ["signal"]
    await requests.aclose()
