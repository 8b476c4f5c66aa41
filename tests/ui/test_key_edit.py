"""Editing a key's settings from the dashboard: the form shows every setting the key has (also
those made through the admin API, which the create form has no field for), saves the whole set
(an emptied field returns to inheriting), is in force at once, is refused for bad input with what
was typed kept, and is for the admin role only; each attempt is recorded in ``admin_actions``."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

import pytest

from gateway_app.keys_admin import KeysAdmin, parse_settings
from tests.conftest import upstream_stdio
from tests.ui.harness import AUDITOR, FILE_KEY, config, dashboard, logged_in
from tests.ui.test_changes import actions

pytestmark = pytest.mark.anyio
FIELD = re.compile(r'<input name="([a-z_]+)"[^>]*?value="([^"]*)"')


def shown_fields(page: str) -> dict[str, str]:
    found = {name: html.unescape(value) for name, value in FIELD.findall(page)}
    team = re.search(r'<select name="team">.*?<option value="([^"]*)" selected', page, re.S)
    if team:
        found["team"] = team.group(1)
    return found


async def test_edit_shows_every_setting_saves_the_whole_form_and_is_in_force_at_once(tmp_path: Path) -> None:
    servers = {"servers": [upstream_stdio("github")], "team_permissions": {"frontend": "*", "backend": "*"}}
    async with dashboard(tmp_path, config(mcp=servers), seeded=False) as ui:
        csrf = await logged_in(ui.http)
        admin = KeysAdmin(ui.engine, ui.runtime.state.current.policy)
        made = {
            "name": "Sam",
            "team": "backend",
            "rate_limit": {"requests_per_minute": 30, "tokens_per_minute": 5000},
            "budget": {"daily_limit_usd": 1234567.89, "monthly_limit_usd": 20.0, "alert_threshold": 0.5},
            "tool_permissions": {"github": ["search_*"]},
        }
        issued = await asyncio.to_thread(admin.create, "vk_sam", parse_settings(made))
        await ui.runtime.state.refresh_keys()

        listing = await ui.http.get("/ui/keys")
        assert 'href="/ui/keys/vk_sam/edit"' in listing.text
        page = await ui.http.get("/ui/keys/vk_sam/edit")
        assert page.status_code == 200, page.text
        fields = shown_fields(page.text)
        assert fields["name"] == "Sam" and fields["team"] == "backend"
        assert fields["requests_per_minute"] == "30" and fields["tokens_per_minute"] == "5000"
        assert fields["monthly_limit_usd"] == "20" and fields["alert_threshold"] == "0.5"
        assert fields["daily_limit_usd"] == "1234567.89", "shown exactly, so saving it unchanged keeps it"
        assert fields["tools"] == '{"github":["search_*"]}', "a shape the create form has no field for"
        assert fields["concurrent_requests"] == fields["expires_at"] == ""

        # Move to another team, raise the limit, drop the budget; the rest is sent back as shown.
        form = {**fields, "csrf": csrf, "team": "frontend", "requests_per_minute": "60"}
        form |= {"daily_limit_usd": "", "monthly_limit_usd": "", "alert_threshold": ""}
        form |= {"expires_at": "2027-06-30T00:00:00"}
        saved = await ui.http.post("/ui/keys/vk_sam/edit", data=form)
        assert saved.status_code == 200, saved.text
        assert "updated" in saved.text
        settings = (await asyncio.to_thread(admin.show, "vk_sam")).settings
        assert settings.model_dump(mode="json", exclude_none=True) == {
            "name": "Sam",
            "team": "frontend",
            "rate_limit": {"requests_per_minute": 60, "tokens_per_minute": 5000},
            "tool_permissions": {"github": ["search_*"]},
            "expires_at": "2027-06-30T00:00:00Z",
        }
        principal, _ = await ui.runtime.state.authenticate(issued.secret)
        assert principal is not None and principal.team == "frontend", "in force at once, secret unchanged"

        # Bad input: refused with the reason, what was typed kept, nothing changed.
        bad = await ui.http.post("/ui/keys/vk_sam/edit", data={**form, "requests_per_minute": "lots"})
        assert bad.status_code == 422 and "is not a number" in html.unescape(bad.text)
        assert shown_fields(bad.text)["requests_per_minute"] == "lots"
        nosuch = await ui.http.post("/ui/keys/vk_sam/edit", data={**form, "team": "nosuch"})
        assert nosuch.status_code == 422 and "is not declared under teams" in html.unescape(nosuch.text)
        tools = await ui.http.post("/ui/keys/vk_sam/edit", data={**form, "tools": '{"github": '})
        assert tools.status_code == 422 and "not a JSON object" in html.unescape(tools.text)
        assert (await asyncio.to_thread(admin.show, "vk_sam")).settings == settings

        # Every field emptied: the key inherits everything (its team's models and tools, no limits).
        cleared = await ui.http.post(
            "/ui/keys/vk_sam/edit", data={name: "" for name in fields} | {"csrf": csrf}
        )
        assert cleared.status_code == 200, cleared.text
        assert (await asyncio.to_thread(admin.show, "vk_sam")).settings.model_dump(exclude_none=True) == {}

        assert (await ui.http.get("/ui/keys/vk_nobody/edit")).status_code == 404
        missing = await ui.http.post("/ui/keys/vk_nobody/edit", data={"csrf": csrf, "name": "x"})
        assert missing.status_code == 404
        assert actions(ui.engine) == [
            ("ops", "ui", "key.update", "vk_sam", "ok"),
            ("ops", "ui", "key.update", "vk_sam", "refused"),
            ("ops", "ui", "key.update", "vk_sam", "refused"),
            ("ops", "ui", "key.update", "vk_sam", "refused"),
            ("ops", "ui", "key.update", "vk_sam", "ok"),
            ("ops", "ui", "key.update", "vk_nobody", "refused"),
        ]


async def test_a_key_the_policy_file_declares_gets_only_its_expiry_here(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        csrf = await logged_in(ui.http)
        admin = KeysAdmin(ui.engine, ui.runtime.state.current.policy)
        await asyncio.to_thread(admin.create, "vk_file", parse_settings({}))
        page = await ui.http.get("/ui/keys/vk_file/edit")
        assert page.status_code == 200 and "decides its team" in page.text
        assert set(shown_fields(page.text)) == {"expires_at"}
        form = {"csrf": csrf, "expires_at": "2027-01-01T00:00:00", "name": "not from the file"}
        saved = await ui.http.post("/ui/keys/vk_file/edit", data=form)
        assert saved.status_code == 200, saved.text
        settings = (await asyncio.to_thread(admin.show, "vk_file")).settings
        assert settings.model_dump(mode="json", exclude_none=True) == {"expires_at": "2027-01-01T00:00:00Z"}
        assert (await ui.runtime.state.authenticate(FILE_KEY))[0] is not None, (
            "the file's secret is untouched"
        )


async def test_the_auditor_cannot_edit(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        admin = KeysAdmin(ui.engine, ui.runtime.state.current.policy)
        await asyncio.to_thread(admin.create, "vk_sam", parse_settings({"name": "Sam"}))
        csrf = await logged_in(ui.http, AUDITOR)
        listing = await ui.http.get("/ui/keys")
        assert "/ui/keys/vk_sam/edit" not in listing.text
        assert (await ui.http.get("/ui/keys/vk_sam/edit")).status_code == 403
        refused = await ui.http.post("/ui/keys/vk_sam/edit", data={"csrf": csrf, "name": "Mallory"})
        assert refused.status_code == 403
        assert (await asyncio.to_thread(admin.show, "vk_sam")).settings.name == "Sam"
