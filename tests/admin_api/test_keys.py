"""Keys through the admin API: create, list, show, update, rotate (the old secret works through its
grace, then is refused), revoke (refused on /mcp by the very next request, an open MCP session
included); refusals with the CLI's messages; an ``admin_actions`` row for every change; and the
README's curl commands for keys, run as written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.admin_api.conftest import ADMIN, ALICE, Gateway, admin_gateway, on_socket, policy_doc, run_sh
from tests.e2e.test_readme import readme_blocks

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


async def mcp(gw: Gateway, secret: str, session: str | None = None) -> int:
    """tools/list on /mcp (2026 era, or in a 2025 session): its HTTP status."""
    headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json, text/event-stream"}
    body: dict[str, Any] = TOOLS_LIST
    if session is None:
        headers.update({"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"})
        body = {**TOOLS_LIST, "params": {"_meta": MODERN_META}}
    else:
        headers["Mcp-Session-Id"] = session
    return (await gw.http.post("/mcp", json=body, headers=headers)).status_code


async def limit_scopes(gw: Gateway, secret: str) -> list[str]:
    quota = await gw.call("GET", "/v1/quota", secret)
    assert quota.status_code == 200, quota.text
    return [limit["scope"] for limit in quota.json()["rate_limits"]]


async def open_session(gw: Gateway, secret: str) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json, text/event-stream"}
    answer = await gw.http.post("/mcp", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.headers["mcp-session-id"]


@pytest.mark.anyio
async def test_keys_are_created_changed_rotated_and_revoked(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        created = await gw.call(
            "POST",
            "/admin/keys",
            json={"key_id": "vk_new", "team": "eng", "rate_limit": {"requests_per_minute": 5}},
        )
        assert created.status_code == 201, created.text
        first = created.json()["secret"]
        assert created.json()["settings"]["team"] == "eng" and created.json()["state"] == "active"
        assert await mcp(gw, first) == 200
        assert await limit_scopes(gw, first) == ["key:vk_new", "team:eng"]

        listed = (await gw.get("/admin/keys")).json()["keys"]
        assert [k["key_id"] for k in listed] == ["vk_new"] and "secret" not in listed[0]
        assert first not in orjson.dumps(listed).decode()
        shown = (await gw.get("/admin/keys/vk_new")).json()
        assert shown["secrets"][0]["prefix"] and first not in orjson.dumps(shown).decode()

        changed = await gw.call("PATCH", "/admin/keys/vk_new", json={"name": "New", "rate_limit": None})
        assert changed.status_code == 200, changed.text
        assert (
            changed.json()["settings"]["name"] == "New" and changed.json()["settings"]["rate_limit"] is None
        )
        assert await limit_scopes(gw, first) == ["team:eng"]  # its own limit is gone at once

        # Rotation: both secrets work through the grace period, then only the new one.
        rotated = await gw.call("POST", "/admin/keys/vk_new/rotate", json={"grace_seconds": 60})
        assert rotated.status_code == 200, rotated.text
        second = rotated.json()["secret"]
        assert second != first and rotated.json()["replaced_secrets_work_until"]
        assert await mcp(gw, first) == 200 and await mcp(gw, second) == 200
        gw.clock.now += 61
        assert await mcp(gw, first) == 401 and await mcp(gw, second) == 200

        # Revocation: the next request is refused, in an open session too, and the session is gone.
        session = await open_session(gw, second)
        assert await mcp(gw, second, session) == 200
        revoked = await gw.call("POST", "/admin/keys/vk_new/revoke")
        assert revoked.json() == {
            "key_id": "vk_new",
            "database_secrets_revoked": 2,
            "file_secret_revoked": False,
        }
        assert await mcp(gw, second, session) == 401 and await mcp(gw, second) == 401
        assert gw.runtime.sessions.ids("vk_new") == set()
        assert (await gw.call("POST", "/admin/keys/vk_new/revoke")).status_code == 404
        assert (await gw.get("/admin/keys")).json() == {"keys": []}
        assert [k["state"] for k in (await gw.get("/admin/keys", all="true")).json()["keys"]] == ["revoked"]

        # A key the policy file declares: its file secret is revoked, once.
        alice_session = await open_session(gw, ALICE)
        file_key = await gw.call("POST", "/admin/keys/alice/revoke")
        assert file_key.json()["file_secret_revoked"] is True
        assert await mcp(gw, ALICE, alice_session) == 401 and await mcp(gw, ALICE) == 401
        again = await gw.call("POST", "/admin/keys/alice/revoke")
        assert again.status_code == 409 and again.json()["error"] == "conflict"

        actions = (await gw.get("/admin/actions")).json()["items"]
    assert [(a["action"], a["target"], a["outcome"]) for a in reversed(actions)] == [
        ("key.create", "vk_new", "ok"),
        ("key.update", "vk_new", "ok"),
        ("key.rotate", "vk_new", "ok"),
        ("key.revoke", "vk_new", "ok"),
        ("key.revoke", "vk_new", "refused"),
        ("key.revoke", "alice", "ok"),
        ("key.revoke", "alice", "refused"),
    ]
    assert {(a["actor"], a["role"], a["door"]) for a in actions} == {("ops", "admin", "api")}
    assert actions[-1]["detail"] == {
        "settings": ["rate_limit", "team"],
        "prefix": actions[-1]["detail"]["prefix"],
    }
    assert not any(first in orjson.dumps(a).decode() or second in orjson.dumps(a).decode() for a in actions)


@pytest.mark.anyio
async def test_refused_key_changes_say_why_and_are_recorded(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        assert (await gw.call("POST", "/admin/keys", json={"key_id": "vk_a"})).status_code == 201
        for method, path, body, status, words in (
            (
                "POST",
                "/admin/keys",
                {"key_id": "vk_b", "team": "nope"},
                422,
                "team 'nope' is not declared under teams",
            ),
            ("POST", "/admin/keys", {"key_id": "vk_a"}, 422, "key 'vk_a' already exists"),
            ("POST", "/admin/keys", {"key_id": "bad id!"}, 422, "must be 1-128 letters"),
            ("POST", "/admin/keys", {"key_id": "vk_c", "colour": "red"}, 422, "colour: unknown field"),
            ("POST", "/admin/keys", {"team": "eng"}, 400, "give the new key's id as key_id"),
            ("POST", "/admin/keys", "[1, 2]", 400, "the body must be a JSON object"),
            ("POST", "/admin/keys", "{nope", 400, "the body is not valid JSON"),
            ("PATCH", "/admin/keys/vk_a", {"colour": None}, 422, "unknown setting(s) colour"),
            ("PATCH", "/admin/keys/vk_zz", {"name": "x"}, 404, "no active database key 'vk_zz'"),
            ("PATCH", "/admin/keys/alice", {"name": "x"}, 404, "its secret comes from the policy file"),
            ("POST", "/admin/keys/vk_a/rotate", {"grace_seconds": -1}, 400, "grace_seconds must be between"),
            ("POST", "/admin/keys/vk_a/rotate", {"grace": 1}, 400, "unknown field(s) grace"),
        ):
            content = body if isinstance(body, str) else orjson.dumps(body).decode()
            answer = await gw.call(method, path, content=content)
            assert answer.status_code == status, (path, body, answer.text)
            assert words in answer.json()["message"], answer.json()
        assert (await gw.get("/admin/keys/vk_zz")).status_code == 404
        actions = (await gw.get("/admin/actions", action="key.create")).json()["items"]
        assert [a["outcome"] for a in actions] == ["refused"] * 7 + ["ok"]
        assert actions[0]["detail"]["error"] == "bad_request"
        assert [k["key_id"] for k in (await gw.get("/admin/keys")).json()["keys"]] == ["vk_a"]
        # Pages of actions: newest first, each once.
        first = (await gw.get("/admin/actions", limit=5)).json()
        rest = (await gw.get("/admin/actions", limit=100, cursor=first["next_cursor"])).json()
        everything = (await gw.get("/admin/actions", limit=100)).json()["items"]
        assert first["items"] + rest["items"] == everything and rest["next_cursor"] is None
        assert len(everything) == 13


@pytest.mark.anyio
async def test_the_readmes_key_commands_work_as_written(tmp_path: Path) -> None:
    doc = policy_doc(teams=[{"name": "eng"}, {"name": "backend"}])
    async with admin_gateway(tmp_path, doc) as gw, on_socket(gw) as base:
        code = readme_blocks()["admin-api-keys"].replace("127.0.0.1:8080", base.removeprefix("http://"))
        ran = await asyncio.to_thread(run_sh, code, MCPGW_ADMIN_TOKEN=ADMIN)
        assert ran.returncode == 0, ran.stderr
        created, changed, rotated, revoked, reload, calls = (
            orjson.loads(line) for line in ran.stdout.splitlines()
        )
        assert created["key_id"] == "vk_dev_sam" and created["settings"]["rate_limit"] == {
            "requests_per_minute": 60
        }
        assert changed["settings"]["rate_limit"] is None and changed["settings"]["name"] == "Sam"
        assert rotated["secret"] != created["secret"]
        assert revoked["database_secrets_revoked"] == 2
        assert reload["outcome"] == "unchanged"
        assert calls == {"items": [], "next_cursor": None, "limit": 20}


@pytest.mark.anyio
async def test_a_body_past_the_limit_is_refused_unread(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        huge = orjson.dumps({"key_id": "vk_big", "name": "x" * 70_000}).decode()
        answer = await gw.call("POST", "/admin/keys", content=huge)
        assert answer.status_code == 400 and "larger than 65536 bytes" in answer.json()["message"]
        assert (await gw.get("/admin/keys")).json() == {"keys": []}
