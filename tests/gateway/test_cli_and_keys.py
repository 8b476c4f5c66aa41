"""The mcp-gateway command: check, keys create/list/revoke (and their effect on a live gateway),
audit queries and demo secrets."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx2
import pytest
import yaml
from mcp.shared.exceptions import MCPError
from sqlmodel import Session, select

from gateway_app.cli import main
from gateway_app.database import create_schema
from gateway_common.db import make_engine
from gateway_common.keystore import ApiKey, create_key
from policies.keys import KeySettings
from policies.secrets import hash_secret
from tests.conftest import PYTHON, REPO_ROOT, mcp_client, run_gateway, upstream_stdio


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "gateway_app", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_reports_the_location_of_a_typo_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("virtual_keys:\n  - id: k\n    rate_limit:\n      request_per_minute: 10\n")
    result = run_cli("check", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:4: virtual_keys[0].rate_limit.request_per_minute: unknown field" in result.stderr


def test_check_accepts_the_demo_config_and_lists_live_tools() -> None:
    result = run_cli("check", "--config", "examples/gateway.yaml", "--connect")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "examples/gateway.yaml: OK" in result.stdout
    assert (
        "server filesystem: 3 tools: filesystem__list_directory, filesystem__read_file, filesystem__write_file"
        in result.stdout
    )
    assert "server deployment: 3 tools" in result.stdout
    assert (
        "key vk_dev_rahul (key:vk_dev_rahul): 2 tools: filesystem__list_directory, filesystem__read_file"
        in result.stdout
    )
    assert "key vk_team_platform (team:platform): 9 tools" in result.stdout


def test_keys_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"teams": [{"name": "backend"}], "gateway": {"database_url": url}}))
    assert main(["keys", "create", "vk_dev_sam", "--team", "backend", "--config", str(policy)]) == 0
    out = capsys.readouterr().out
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("mgw_") and len(secret) > 40
    assert main(["keys", "list", "--database-url", url]) == 0
    listing = capsys.readouterr().out
    assert "vk_dev_sam" in listing and "backend" in listing and "active" in listing
    assert secret not in listing and secret[:10] in listing
    engine = make_engine(url)
    with Session(engine) as db:
        stored = db.exec(select(ApiKey)).one()
    assert stored.secret_sha256 == hash_secret(secret)
    assert main(["keys", "revoke", "vk_dev_sam", "--database-url", url]) == 0
    assert main(["keys", "revoke", "vk_dev_sam", "--database-url", url]) == 1
    capsys.readouterr()
    assert main(["keys", "list", "--database-url", url]) == 0
    assert "vk_dev_sam" not in capsys.readouterr().out
    assert main(["keys", "list", "--all", "--database-url", url]) == 0
    assert "revoked" in capsys.readouterr().out
    engine.dispose()


@pytest.mark.anyio
async def test_database_keys_take_effect_and_revocation_is_honoured(tmp_path: Path) -> None:
    config = {
        "gateway": {"key_refresh_seconds": 0.2},
        "teams": [{"name": "backend"}],
        "virtual_keys": [{"id": "vk_declared", "team": "backend"}],
        "mcp": {
            "servers": [upstream_stdio("alpha")],
            "team_permissions": {"backend": {"alpha": ["echo"]}},
        },
    }
    async with run_gateway(config, tmp_path) as gw:
        engine = gw.runtime.engine
        # A secret for a key declared in the file: the file decides its team and permissions.
        _, declared = create_key(engine, "vk_declared")
        # A standalone key with a team given at creation.
        _, standalone = create_key(engine, "vk_new", KeySettings(team="backend"))
        past = datetime.now(UTC) - timedelta(seconds=1)
        _, expired = create_key(engine, "vk_old", KeySettings(team="backend", expires_at=past))
        for secret in (declared, standalone):
            async with mcp_client(gw.url, secret, "2026-07-28") as client:
                assert [t.name for t in (await client.list_tools()).tools] == ["alpha__echo"]
                assert (await client.call_tool("alpha__echo", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]
        async with httpx2.AsyncClient() as http:
            response = await http.post(gw.url, json={}, headers={"Authorization": f"Bearer {expired}"})
            assert response.status_code == 401
        assert main(["keys", "revoke", "vk_new", "--database-url", str(engine.url)]) == 0
        deadline = time.monotonic() + 20  # the machine is shared: a generous bound, no timing assertion
        async with httpx2.AsyncClient() as http:
            while True:
                headers = {"Authorization": f"Bearer {standalone}"}
                response = await http.post(gw.url, json={}, headers=headers)
                if response.status_code == 401 or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.05)
        assert response.status_code == 401
        rows = await gw.flushed_calls()
    assert {(r.key_id, r.team) for r in rows} == {("vk_declared", "backend"), ("vk_new", "backend")}


@pytest.mark.anyio
async def test_file_keys_by_digest_and_disabled_keys(tmp_path: Path) -> None:
    config = {
        "virtual_keys": [
            {"id": "digest", "secret_sha256": hash_secret("digest-secret")},
            {"id": "off", "secret_sha256": hash_secret("off-secret"), "disabled": True},
            {"id": "past", "secret_sha256": hash_secret("past-secret"), "expires_at": "2020-01-01T00:00:00Z"},
        ],
        "mcp": {
            "servers": [upstream_stdio("alpha")],
            "virtual_key_permissions": {"digest": "*", "off": "*", "past": "*"},
        },
    }
    async with run_gateway(config, tmp_path) as gw:
        async with mcp_client(gw.url, "digest-secret", "legacy") as client:
            assert len((await client.list_tools()).tools) == 9
        async with httpx2.AsyncClient() as http:
            for secret in ("off-secret", "past-secret"):
                response = await http.post(gw.url, json={}, headers={"Authorization": f"Bearer {secret}"})
                assert response.status_code == 401


@pytest.mark.anyio
async def test_audit_command_answers_questions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keys_env: dict[str, str]
) -> None:
    config = {
        "virtual_keys": [{"id": "alice", "team": "eng", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {
            "servers": [upstream_stdio("alpha")],
            "virtual_key_permissions": {"alice": {"alpha": ["echo"]}},
        },
    }
    async with run_gateway(config, tmp_path) as gw:
        async with mcp_client(gw.url, keys_env["TEST_KEY_ALICE"], "2026-07-28") as client:
            await client.call_tool("alpha__echo", {"text": "one"})
            await client.call_tool("alpha__echo", {"text": "two"})
            with pytest.raises(MCPError):
                await client.call_tool("alpha__crash", {})
        await gw.flushed_calls()
        url = str(gw.runtime.engine.url)
    assert main(["audit", "--database-url", url, "--summary", "--since", "1h"]) == 0
    summary = capsys.readouterr().out
    assert "alice" in summary and "echo" in summary and "ok" in summary and "denied" in summary
    assert main(["audit", "--database-url", url, "--status", "denied"]) == 0
    denied = capsys.readouterr().out
    assert "alpha__crash" in denied and "Unknown tool: 'alpha__crash'" in denied
    since = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert main(["audit", "--database-url", url, "--since", since]) == 0
    assert capsys.readouterr().out == ""


def test_demo_secrets_are_created_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MCPGW_KEY_FRONTEND", "MCPGW_KEY_BACKEND", "MCPGW_KEY_PLATFORM", "MCPGW_KEY_RAHUL"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "demo.env"
    assert (
        main(["demo-secrets", "--config", str(REPO_ROOT / "examples/gateway.yaml"), "--out", str(out)]) == 0
    )
    first = out.read_text()
    assert first.count("MCPGW_KEY_") == 4
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert (
        main(["demo-secrets", "--config", str(REPO_ROOT / "examples/gateway.yaml"), "--out", str(out)]) == 0
    )
    assert out.read_text() == first


def test_database_url_forms(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'g.db'}")
    create_schema(engine)
    assert (tmp_path / "nested" / "dir" / "g.db").exists()
    engine.dispose()
    assert str(make_engine("postgresql://u@127.0.0.1/test").url).startswith("postgresql+psycopg://")


def test_a_policy_written_by_yaml_dump_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"mcp": {"servers": [upstream_stdio("alpha")]}}))
    assert run_cli("check", "--config", str(path)).returncode == 0


def test_the_start_up_banner_shows_how_to_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """With --show-demo-secrets (the local demo): ready-to-paste lines with the secrets a process can see."""
    from gateway_app.cli import connect_lines
    from policies import load_policy

    monkeypatch.setenv("MCPGW_KEY_FRONTEND", "mgw_demo_front")
    for name in ("MCPGW_KEY_BACKEND", "MCPGW_KEY_PLATFORM", "MCPGW_KEY_RAHUL"):
        monkeypatch.delenv(name, raising=False)
    policy = load_policy(REPO_ROOT / "examples/gateway.yaml").policy
    lines = connect_lines(policy, "0.0.0.0", 8080, show_secrets=True)
    assert lines[:3] == [
        "# Frontend Team (vk_team_frontend, team frontend)",
        'claude mcp add --transport http gateway http://127.0.0.1:8080/mcp --header "Authorization: Bearer mgw_demo_front"',
        "export ANTHROPIC_BASE_URL=http://127.0.0.1:8080 ANTHROPIC_API_KEY=mgw_demo_front",
    ]
    # A key whose secret this process cannot see gets the placeholder lines even then.
    assert lines[3] == "# Backend Team (vk_team_backend, team backend): secret in $MCPGW_KEY_BACKEND"
    assert "mgw_demo_front" not in "\n".join(connect_lines(policy, "0.0.0.0", 8080))
