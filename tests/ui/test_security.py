"""The dashboard's defences: CSRF on every POST, the auditor refused by the server (not only shown
no buttons), security headers and no inline script or style on any page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from gateway_app.admin_actions import AdminAction
from gateway_common.keystore import list_keys
from tests.ui.harness import AUDITOR, PAGES, dashboard, logged_in

pytestmark = pytest.mark.anyio

POSTS = ["/ui/keys", "/ui/keys/vk_file/rotate", "/ui/keys/vk_file/revoke", "/ui/policy/reload"]


async def test_every_post_needs_the_sessions_csrf_token(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        csrf = await logged_in(ui.http)
        tampered = csrf[:-1] + ("B" if csrf.endswith("A") else "A")  # never the token itself
        for path in POSTS:
            for data in ({"key_id": "vk_x"}, {"csrf": "", "key_id": "vk_x"}, {"csrf": tampered}):
                answer = await ui.http.post(path, data=data)
                assert answer.status_code == 403, (path, data)
                assert "did not come from this dashboard" in answer.text
        # Another session's token is no good either.
        async with ui.client() as other:
            theirs = await logged_in(other)
            assert (
                await ui.http.post("/ui/keys", data={"csrf": theirs, "key_id": "vk_x"})
            ).status_code == 403
        assert list_keys(ui.engine, include_revoked=True) == []
        # The right token goes through.
        made = await ui.http.post("/ui/keys", data={"csrf": csrf, "key_id": "vk_x"})
        assert made.status_code == 200 and "Created key" in made.text


async def test_the_auditor_sees_no_controls_and_is_refused(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as ui:
        csrf = await logged_in(ui.http, AUDITOR)
        for path in PAGES:
            page = await ui.http.get(path)
            assert page.status_code == 200, path
            assert "data-mutates" not in page.text, path
            forms = re.findall(r'<form method="post" action="([^"]+)"', page.text)
            assert forms == ["/ui/logout"], (path, forms)
        for path in POSTS:
            answer = await ui.http.post(path, data={"csrf": csrf, "key_id": "vk_forged", "grace": "0"})
            assert answer.status_code == 403, path
            assert "auditor role can look" in answer.text
        assert list_keys(ui.engine, include_revoked=True) == []
        principal, _ = await ui.runtime.state.authenticate("mgw_ui_file_key_0123456789abcdef")  # unchanged
        assert principal is not None and principal.key_id == "vk_file"
        with Session(ui.engine) as db:
            assert list(db.exec(select(AdminAction))) == []
        # What the auditor may do: log out.
        assert (await ui.http.post("/ui/logout", data={"csrf": csrf})).status_code == 303


async def test_headers_and_no_inline_code_on_any_page(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as ui:
        await logged_in(ui.http)
        for path in [*PAGES, "/ui/tool-calls/tc0001", "/ui/login", "/ui/tool-calls/nope"]:
            page = await ui.http.get(path, follow_redirects=True)
            assert page.status_code in (200, 404), path
            csp = page.headers["content-security-policy"]
            assert (
                "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            )
            assert "unsafe-inline" not in csp
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["cache-control"] == "no-store"
            assert page.headers["x-content-type-options"] == "nosniff"
            assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == [], path
            assert (
                " style=" not in page.text and "<style" not in page.text and " on" + "click" not in page.text
            )
        static = await ui.http.get("/ui/static/ui.js")
        assert static.status_code == 200 and "cache-control" not in static.headers
        assert "frame-ancestors 'none'" in static.headers["content-security-policy"]
