"""Logging in and out of the dashboard: admin tokens only (never a virtual key), a strict cookie,
sessions that end on logout, on expiry, and when a reload takes their token away or changes its
role; CSRF on every form, the login form included."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_app.ui.sessions import IDLE_SECONDS, LIFETIME_SECONDS, SessionTable
from policies.admin import AdminIdentity, AdminRole, AdminSettings, AdminTokenConfig
from policies.secrets import hash_secret
from tests.ui.harness import ADMIN, AUDITOR, FILE_KEY, dashboard, logged_in, login

pytestmark = pytest.mark.anyio


async def test_pages_ask_for_a_login_and_come_back(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        answer = await ui.http.get("/ui/spend?by=key")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/ui/login?next=%2Fui%2Fspend%3Fby%3Dkey"
        assert (await ui.http.post("/ui/keys", data={"key_id": "x"})).status_code == 403
        done = await login(ui.http, ADMIN, "/ui/spend?by=key")
        assert done.status_code == 303 and done.headers["location"] == "/ui/spend?by=key"
        assert (await ui.http.get("/ui/spend?by=key")).status_code == 200
        # Somewhere else after logging in: never.
        async with ui.client() as other:
            elsewhere = await login(other, ADMIN, "https://evil.example/ui/")
            assert elsewhere.headers["location"] == "/ui/"


async def test_the_session_cookie_is_strict_and_secure_over_https(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        answer = await login(ui.http, ADMIN)
        cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "mcpgw_ui=" in v)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert "Secure" not in cookie
        assert ADMIN not in str(answer.headers)
        async with ui.client("https://localhost") as https:
            answer = await login(https, ADMIN)
            cookie = next(
                v for k, v in answer.headers.multi_items() if k == "set-cookie" and "mcpgw_ui=" in v
            )
            assert "Secure" in cookie and "HttpOnly" in cookie


async def test_only_admin_tokens_log_in(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        for token in (FILE_KEY, "not-a-token", "", "x" * 5000):
            answer = await login(ui.http, token)
            assert answer.status_code == 401, token[:20]
            assert "not an admin token" in answer.text and "mcpgw_ui=" not in answer.headers.get(
                "set-cookie", ""
            )
        # The login form's own CSRF token: a form posted from elsewhere is refused.
        async with ui.client() as fresh:
            forged = await fresh.post("/ui/login", data={"csrf": "guess", "token": ADMIN})
            assert forged.status_code == 403 and "mcpgw_ui=" not in forged.headers.get("set-cookie", "")
        assert len(ui.app.state.dashboard.sessions) == 0


async def test_logout_ends_the_session(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        csrf = await logged_in(ui.http)
        cookie = ui.http.cookies["mcpgw_ui"]
        answer = await ui.http.post("/ui/logout", data={"csrf": csrf})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
        async with ui.client() as replay:
            replay.cookies.set("mcpgw_ui", cookie, domain="localhost", path="/ui")
            assert (await replay.get("/ui/")).status_code == 303
        # Logging out takes the session's CSRF token too.
        async with ui.client() as other:
            await logged_in(other)
            assert (await other.post("/ui/logout", data={"csrf": "nope"})).status_code == 403
            assert (await other.get("/ui/")).status_code == 200


async def test_sessions_expire_when_idle(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        await logged_in(ui.http)
        ui.clock.advance(IDLE_SECONDS - 5)
        assert (await ui.http.get("/ui/")).status_code == 200
        ui.clock.advance(IDLE_SECONDS - 5)
        assert (await ui.http.get("/ui/")).status_code == 200, "each request restarts the idle time"
        ui.clock.advance(IDLE_SECONDS)
        assert (await ui.http.get("/ui/")).status_code == 303


async def test_a_reload_that_removes_or_reroles_the_token_ends_its_sessions(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        await logged_in(ui.http)
        async with ui.client() as auditor:
            await logged_in(auditor, AUDITOR)
            state = ui.runtime.state
            policy = state.current.policy
            # The auditor's token becomes an admin token: a new role needs a new login.
            reroled = AdminSettings(
                tokens=[
                    *[t for t in policy.admin.tokens if t.id == "ops"],
                    AdminTokenConfig(id="audit", role=AdminRole.ADMIN, secret_sha256=hash_secret(AUDITOR)),
                ]
            )
            state.swap_policy(policy.model_copy(update={"admin": reroled}))
            assert (await auditor.get("/ui/")).status_code == 303
            assert (await ui.http.get("/ui/")).status_code == 200, "the admin's token is unchanged"
            # The admin's token is removed.
            state.swap_policy(policy.model_copy(update={"admin": AdminSettings(tokens=reroled.tokens[1:])}))
            assert (await ui.http.get("/ui/")).status_code == 303
            assert len(ui.app.state.dashboard.sessions) == 0


def test_the_session_table_bounds_lifetime_and_size() -> None:
    now = [1000.0]
    table = SessionTable(lambda: now[0], max_sessions=3)
    who = AdminIdentity("ops", AdminRole.ADMIN)
    cookies = [table.open(who, "d")[0] for _ in range(4)]
    assert len(table) == 3 and table.get(cookies[0]) is None, "the least recently used one went"
    assert table.get(cookies[3]) is not None
    for _ in range(int(LIFETIME_SECONDS // (IDLE_SECONDS / 2)) + 1):
        now[0] += IDLE_SECONDS / 2
        table.get(cookies[3])
    assert table.get(cookies[3]) is None, "no session outlives its lifetime, however busy"
    assert table.get(None) is None and table.get("x" * 500) is None


async def test_login_page_explains_a_gateway_without_admin_tokens(tmp_path: Path) -> None:
    from tests.ui.harness import config

    async with dashboard(tmp_path, config(admin={"tokens": []}), seeded=False) as ui:
        page = await ui.http.get("/ui/login")
        assert "no usable admin token" in page.text and 'name="token"' not in page.text
