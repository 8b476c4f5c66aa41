"""`keys create` checks teams against the policy; `keys revoke` reaches keys declared in the file.

A revocation of a file key is a row in the database: a running gateway refuses that key's file
secret on /mcp and /v1/messages at its next key refresh, without a restart. Database secrets
created for the id afterwards work (the revocation covers the secrets that existed when it was
made; the file's secret is one of them whatever value it is later given).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from sqlmodel import Session, select

from gateway_app.cli import main
from gateway_app.database import create_schema
from gateway_app.keys_admin import known_teams
from gateway_common.db import make_engine
from gateway_common.keystore import ApiKey, FileKeyRevocation, revoke_file_key
from gateway_common.policy_state import PolicyState
from policies import load_policy_text
from policies.secrets import hash_secret
from tests.conftest import RunningGateway, run_gateway, upstream_stdio
from tests.llm_proxy.conftest import mock_api

FILE_SECRET = "file-secret-0123456789abcdef"
OTHER_SECRET = "other-secret-0123456789abcdef"


def write_policy(tmp_path: Path, policy: dict[str, Any]) -> tuple[str, str]:
    """The policy file (with a database in tmp_path); returns its path and database URL."""
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({**policy, "gateway": {**policy.get("gateway", {}), "database_url": url}}))
    return str(path), url


def stored_keys(url: str) -> list[ApiKey]:
    engine = make_engine(url)
    create_schema(engine)
    with Session(engine) as db:
        rows = list(db.exec(select(ApiKey)).all())
    engine.dispose()
    return rows


TEAMS_POLICY: dict[str, Any] = {
    "teams": [{"name": "backend"}, {"name": "frontend"}],
    "virtual_keys": [{"id": "vk_declared", "team": "backend"}, {"id": "vk_teamless"}],
}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["vk_new", "--team", "bakend"],
            "team 'bakend' is not declared under teams (known teams: backend, frontend)",
        ),
        (
            ["vk_declared", "--team", "frontend"],
            "key 'vk_declared' is declared in the policy file with team 'backend'",
        ),
        (
            ["vk_teamless", "--team", "backend"],
            "key 'vk_teamless' is declared in the policy file with no team",
        ),
    ],
)
def test_keys_create_refuses_a_team_the_policy_does_not_allow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    config, url = write_policy(tmp_path, TEAMS_POLICY)
    assert main(["keys", "create", *args, "--config", config]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "mgw_" not in captured.out
    assert stored_keys(url) == []


def test_keys_create_accepts_known_teams(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, url = write_policy(tmp_path, TEAMS_POLICY)
    assert main(["keys", "create", "vk_new", "--team", "frontend", "--config", config]) == 0
    assert main(["keys", "create", "vk_declared", "--team", "backend", "--config", config]) == 0
    assert main(["keys", "create", "vk_loner", "--config", config]) == 0
    # One key per id: a second secret is a rotation, not a second create.
    capsys.readouterr()
    assert main(["keys", "create", "vk_declared", "--config", config]) == 2
    assert "key 'vk_declared' already exists: `keys rotate vk_declared`" in capsys.readouterr().err
    assert sorted((k.key_id, k.team or "-") for k in stored_keys(url)) == [
        ("vk_declared", "backend"),
        ("vk_loner", "-"),
        ("vk_new", "frontend"),
    ]


def test_keys_create_with_a_team_needs_the_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    assert main(["keys", "create", "vk_new", "--team", "backend", "--database-url", url]) == 2
    assert "a team is checked against the policy: give --config FILE" in capsys.readouterr().err
    assert stored_keys(url) == []


def test_without_a_teams_list_every_team_the_policy_names_is_known(tmp_path: Path) -> None:
    policy = {
        "virtual_keys": [{"id": "a", "team": "from-key"}],
        "mcp": {"servers": [upstream_stdio("alpha")], "team_permissions": {"from-permissions": "*"}},
        "budgets": {"teams": [{"name": "from-budget", "monthly_limit_usd": 10}]},
    }
    loaded = load_policy_text(yaml.safe_dump(policy))
    assert known_teams(loaded.policy) == {"from-key", "from-permissions", "from-budget"}
    config, url = write_policy(tmp_path, policy)
    assert main(["keys", "create", "b", "--team", "from-budget", "--config", config]) == 0
    assert main(["keys", "create", "c", "--team", "from-bugdet", "--config", config]) == 2
    assert [k.key_id for k in stored_keys(url)] == ["b"]


def test_revoking_a_file_key_records_it_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = {
        "virtual_keys": [
            {"id": "vk_file", "secret_sha256": hash_secret(FILE_SECRET)},
            {"id": "vk_nosecret"},
        ]
    }
    config, url = write_policy(tmp_path, policy)
    assert main(["keys", "revoke", "vk_file", "--config", config]) == 0
    assert "revoked the policy-file secret of key 'vk_file'" in capsys.readouterr().out
    assert main(["keys", "revoke", "vk_file", "--config", config]) == 1
    assert "already revoked" in capsys.readouterr().err
    # A declared key without a file secret has nothing to revoke in the file.
    assert main(["keys", "revoke", "vk_nosecret", "--config", config]) == 1
    # Without the policy the CLI cannot know the key is declared there, and says so.
    assert main(["keys", "revoke", "vk_other", "--database-url", url]) == 1
    assert "give --config FILE" in capsys.readouterr().err
    assert main(["keys", "list", "--all", "--config", config]) == 0
    listing = capsys.readouterr().out
    assert "vk_file" in listing and "(file)" in listing and "revoked" in listing
    engine = make_engine(url)
    with Session(engine) as db:
        assert [r.key_id for r in db.exec(select(FileKeyRevocation)).all()] == ["vk_file"]
    engine.dispose()


@pytest.mark.anyio
async def test_the_policy_state_refuses_a_revoked_file_key_after_a_refresh(tmp_path: Path) -> None:
    policy = load_policy_text(
        yaml.safe_dump(
            {
                "gateway": {"key_refresh_seconds": 3600},
                "virtual_keys": [
                    {"id": "vk_file", "secret_sha256": hash_secret(FILE_SECRET)},
                    {"id": "vk_other", "secret_sha256": hash_secret(OTHER_SECRET)},
                ],
            }
        )
    ).policy
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    create_schema(engine)
    state = PolicyState(policy, engine, clock=time.time)
    await state.refresh_keys()
    assert (await state.authenticate(FILE_SECRET))[0] is not None
    assert revoke_file_key(engine, "vk_file")
    assert (await state.authenticate(FILE_SECRET))[0] is not None  # not refreshed yet
    await state.refresh_keys()
    assert (await state.authenticate(FILE_SECRET))[0] is None
    principal, _ = await state.authenticate(OTHER_SECRET)
    assert principal is not None and principal.key_id == "vk_other"
    engine.dispose()


async def until(check: Any, accepted: bool) -> None:
    """Poll until ``check()`` says ``accepted`` (the gateway reloads keys every 0.2 s here; the
    bound is generous because the machine is shared, and no assertion depends on time)."""
    deadline = time.monotonic() + 20
    while await check() is not accepted:
        assert time.monotonic() < deadline, "the key change never took effect"
        await anyio.sleep(0.05)


async def mcp_ok(gw: RunningGateway, secret: str) -> bool:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "alpha__echo",
            "arguments": {"text": "hi"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "Authorization": f"Bearer {secret}",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "alpha__echo",
        "Accept": "application/json, text/event-stream",
    }
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(gw.url, json=body, headers=headers)
    if response.status_code == 401:
        return False
    assert response.json()["result"]["content"][0]["text"] == "hi", response.text
    return True


async def messages_ok(gw: RunningGateway, secret: str) -> bool:
    body = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(f"{gw.base}/v1/messages", json=body, headers={"x-api-key": secret})
    if response.status_code == 401:
        assert response.json()["error"]["type"] == "authentication_error"
        return False
    assert response.status_code == 200, response.text
    return True


@pytest.mark.anyio
async def test_a_running_gateway_refuses_a_revoked_file_key_and_accepts_a_new_database_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REVOKE_TEST_FILE_KEY", FILE_SECRET)
    async with mock_api() as (_, upstream):
        policy: dict[str, Any] = {
            "gateway": {"key_refresh_seconds": 0.2},
            "teams": [{"name": "eng"}],
            "virtual_keys": [
                {"id": "vk_file", "team": "eng", "secret_env": "REVOKE_TEST_FILE_KEY"},
                {"id": "vk_other", "team": "eng", "secret_sha256": hash_secret(OTHER_SECRET)},
            ],
            "mcp": {"servers": [upstream_stdio("alpha")], "team_permissions": {"eng": {"alpha": ["echo"]}}},
            "providers": [{"name": "mock", "kind": "anthropic", "base_url": upstream}],
            "routes": [{"match": "claude-*", "provider": "mock"}],
        }
        config, _ = write_policy(tmp_path, policy)
        async with run_gateway(policy, tmp_path) as gw:
            for check in (mcp_ok, messages_ok):
                assert await check(gw, FILE_SECRET) and await check(gw, OTHER_SECRET)
            assert main(["keys", "revoke", "vk_file", "--config", config]) == 0
            await until(lambda: mcp_ok(gw, FILE_SECRET), accepted=False)
            assert not await messages_ok(gw, FILE_SECRET)
            assert await mcp_ok(gw, OTHER_SECRET) and await messages_ok(gw, OTHER_SECRET)
            # A new database secret for the revoked id works; the file's secret stays refused.
            capsys.readouterr()
            assert main(["keys", "create", "vk_file", "--config", config]) == 0
            captured = capsys.readouterr()
            new_secret = captured.out.strip().splitlines()[-1]
            assert "policy-file secret of 'vk_file' stays revoked" in captured.err
            await until(lambda: mcp_ok(gw, new_secret), accepted=True)
            assert await messages_ok(gw, new_secret)
            assert not await mcp_ok(gw, FILE_SECRET) and not await messages_ok(gw, FILE_SECRET)
            rows = await gw.flushed_calls()
    # The new secret acts as the declared key: the file's team, and the same key id in the audit log.
    assert {(r.key_id, r.team) for r in rows} == {("vk_file", "eng"), ("vk_other", "eng")}
