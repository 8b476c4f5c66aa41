"""The policy through the admin API: a summary of the one in force (no secrets), a reload that
applies, one that is refused with the file's errors (file, line, path) leaving the old policy in
force, and the history showing both; each reload recorded in ``admin_actions``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.admin_api.conftest import ADMIN, ALICE, AUDITOR, admin_gateway, policy_doc


@pytest.mark.anyio
async def test_a_reload_applies_or_is_refused_and_the_history_shows_both(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        before = (await gw.get("/admin/policy", AUDITOR)).json()
        assert before["counts"] | {"keys": 2, "teams": 2, "servers": 0, "admin_tokens": 2} == before["counts"]
        assert before["teams"] == ["eng", "ops"] and before["source"] == str(gw.path)
        assert {b["budget"] for b in before["budgets"]} == {"org", "team:eng", "key:alice"}
        text = str(before)
        assert ADMIN not in text and ALICE not in text

        gw.write(policy_doc(teams=[{"name": "eng"}, {"name": "ops"}, {"name": "design"}]))
        applied = await gw.call("POST", "/admin/policy/reload")
        assert applied.status_code == 200, applied.text
        assert applied.json()["outcome"] == "applied" and applied.json()["trigger"] == "api"
        version = applied.json()["snapshot_version"]
        assert version > before["snapshot_version"]
        now = (await gw.get("/admin/policy")).json()
        assert now["teams"] == ["design", "eng", "ops"] and now["snapshot_version"] == version
        assert now["last_reload"]["id"] == applied.json()["id"]

        broken = policy_doc(teams=[{"name": "eng", "colour": "red"}, {"name": "ops"}])
        gw.write(broken)
        refused = await gw.call("POST", "/admin/policy/reload")
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["error"] == "refused" and body["reload"]["outcome"] == "refused"
        (error,) = body["errors"]
        assert error.startswith(f"{gw.path}:") and "teams[0].colour" in error, error
        line = int(error.split(":")[1])
        assert "colour: red" in gw.path.read_text().splitlines()[line - 1]
        still = (await gw.get("/admin/policy")).json()
        assert still["teams"] == ["design", "eng", "ops"] and still["snapshot_version"] == version

        history = (await gw.get("/admin/policy/reloads", limit=10)).json()["items"]
        assert [(h["outcome"], h["trigger"]) for h in history] == [("refused", "api"), ("applied", "api")]
        assert history[0]["errors"] == [error]
        assert (await gw.get("/admin/policy/reloads", limit=0)).status_code == 400

        actions = (await gw.get("/admin/actions", action="policy.reload")).json()["items"]
        assert [(a["outcome"], a["detail"]["reload"]) for a in actions] == [
            ("refused", history[0]["id"]),
            ("ok", history[1]["id"]),
        ]


@pytest.mark.anyio
async def test_the_health_route_shows_what_readyz_shows_an_operator(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        health = (await gw.get("/admin/health", AUDITOR)).json()
        readyz = (await gw.call("GET", "/readyz", AUDITOR)).json()
        assert health == {**readyz, "ready": True}
        assert {"upstreams", "audit", "ledger", "sessions"} <= set(health)
        # The helper /readyz and the admin API share refuses a virtual key on both.
        assert (await gw.call("GET", "/readyz", ALICE)).status_code == 401
