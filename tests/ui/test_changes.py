"""What an admin changes from the dashboard: keys created (the secret shown once, with the
onboarding lines), rotated and revoked through `keys_admin`, in force in this process at once;
the policy reloaded; each change recorded in ``admin_actions`` with door ``ui``. Also the
Upstreams page over a real stdio upstream."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from gateway_app.admin_actions import AdminAction
from gateway_app.reload_log import PolicyReload
from gateway_common.keystore import list_keys
from tests.conftest import upstream_stdio
from tests.ui.harness import config, dashboard, figures, logged_in

pytestmark = pytest.mark.anyio
SECRET = re.compile(r'<pre class="secret" id="secret">(mgw_[^<]+)</pre>')


def actions(engine: Engine) -> list[tuple[str, str, str, str | None, str]]:
    with Session(engine) as db:
        rows = db.exec(select(AdminAction).order_by(col(AdminAction.at)))
        return [(a.actor, a.door, a.action, a.target, a.outcome) for a in rows]


async def test_create_rotate_revoke_in_force_at_once(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        csrf = await logged_in(ui.http)
        state = ui.runtime.state
        form = {
            "csrf": csrf,
            "key_id": "vk_dev_sam",
            "name": "Sam",
            "team": "backend",
            "allowed_models": "claude-haiku-*, fast",
            "requests_per_minute": "30",
            "monthly_limit_usd": "20",
            "expires_in_days": "90",
        }
        created = await ui.http.post("/ui/keys", data=form)
        assert created.status_code == 200, created.text
        secret = SECRET.search(created.text)
        assert secret, created.text
        first = secret.group(1)
        assert f'Authorization: Bearer {first}"' in created.text.replace("&#34;", '"')
        assert "ANTHROPIC_AUTH_TOKEN" in created.text
        assert first not in str(created.headers)
        principal, _ = await state.authenticate(first)  # no wait for the key watcher
        assert principal is not None and principal.key_id == "vk_dev_sam" and principal.team == "backend"
        listing = await ui.http.get("/ui/keys")
        prefix = list_keys(ui.engine)[0].prefix
        assert first not in listing.text and f"<code>{prefix}…</code>" in listing.text, "only its prefix now"
        assert figures(listing.text)["vk_dev_sam"]["state"] == "active"

        again = await ui.http.post("/ui/keys", data=form)
        assert again.status_code == 422 and "already exists" in again.text and not SECRET.search(again.text)
        bad = await ui.http.post("/ui/keys", data={**form, "key_id": "vk_b", "team": "nosuch"})
        assert bad.status_code == 422 and "is not declared under teams" in bad.text.replace("&#39;", "'")

        rotated = await ui.http.post("/ui/keys/vk_dev_sam/rotate", data={"csrf": csrf, "grace": "0"})
        second = SECRET.search(rotated.text)
        assert rotated.status_code == 200 and second and second.group(1) != first
        assert (await state.authenticate(second.group(1)))[0] is not None
        assert (await state.authenticate(first))[0] is None, "grace 0: the old secret stops now"

        revoked = await ui.http.post("/ui/keys/vk_dev_sam/revoke", data={"csrf": csrf})
        assert revoked.status_code == 200 and "revoked" in revoked.text
        assert (await state.authenticate(second.group(1)))[0] is None, "refused at once"
        missing = await ui.http.post("/ui/keys/vk_nobody/revoke", data={"csrf": csrf})
        assert missing.status_code == 404
        assert (await ui.http.post("/ui/keys/vk_nobody/rotate", data={"csrf": csrf})).status_code == 404

        # The file's key can be revoked here too.
        file_key = "mgw_ui_file_key_0123456789abcdef"
        assert (await state.authenticate(file_key))[0] is not None
        assert (await ui.http.post("/ui/keys/vk_file/revoke", data={"csrf": csrf})).status_code == 200
        assert (await state.authenticate(file_key))[0] is None

        assert actions(ui.engine) == [
            ("ops", "ui", "key.create", "vk_dev_sam", "ok"),
            ("ops", "ui", "key.create", "vk_dev_sam", "refused"),
            ("ops", "ui", "key.create", "vk_b", "refused"),
            ("ops", "ui", "key.rotate", "vk_dev_sam", "ok"),
            ("ops", "ui", "key.revoke", "vk_dev_sam", "ok"),
            ("ops", "ui", "key.revoke", "vk_nobody", "refused"),
            ("ops", "ui", "key.rotate", "vk_nobody", "refused"),
            ("ops", "ui", "key.revoke", "vk_file", "ok"),
        ]
        with Session(ui.engine) as db:
            details = str([a.detail for a in db.exec(select(AdminAction))])
        assert first not in details and second.group(1) not in details
        policy_page = await ui.http.get("/ui/policy")
        assert policy_page.text.count("key.create") == 3


async def test_reload_from_the_policy_page(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    cfg = config()
    async with dashboard(tmp_path, cfg, seeded=False, policy_file=path) as ui:
        csrf = await logged_in(ui.http)
        gateway = ui.runtime.state.current.policy.gateway.model_dump(mode="json")
        teams = [*cfg["teams"], {"name": "platform"}]
        path.write_text(yaml.safe_dump({**cfg, "teams": teams, "gateway": gateway}))
        page = await ui.http.post("/ui/policy/reload", data={"csrf": csrf})
        assert page.status_code == 200 and "Reload applied" in page.text, page.text
        assert '<option value="platform">' in (await ui.http.get("/ui/keys")).text
        path.write_text("teams: [\n")
        refused = await ui.http.post("/ui/policy/reload", data={"csrf": csrf})
        assert refused.status_code == 422 and "Reload refused" in refused.text
        with Session(ui.engine) as db:
            triggers = [
                (r.trigger, r.outcome)
                for r in db.exec(select(PolicyReload).order_by(col(PolicyReload.started_at)))
            ]
        assert triggers == [("ui", "applied"), ("ui", "refused")]
        assert [a[2:] for a in actions(ui.engine)] == [
            ("policy.reload", str(path), "ok"),
            ("policy.reload", str(path), "refused"),
        ]
        shown = (await ui.http.get("/ui/policy")).text
        assert shown.count('<span class="status refused">refused</span>') == 2  # the reload and the action
        assert 'data-row="Snapshot version"' in shown


async def test_upstreams_page_shows_the_hub(tmp_path: Path) -> None:
    cfg = config(mcp={"servers": [upstream_stdio("alpha")], "team_permissions": {"frontend": "*"}})
    async with dashboard(tmp_path, cfg, seeded=False) as ui:
        assert await ui.runtime.hub.wait_ready(30)
        await logged_in(ui.http)
        page = await ui.http.get("/ui/upstreams")
        status = ui.runtime.hub.status()[0]
        shown = figures(page.text)["alpha"]
        assert int(shown["tools"]) == status["tools"] > 0 and int(shown["restarts"]) == status["restarts"]
        assert status["protocol_version"] in page.text and 'class="state ready"' in page.text
        overview = figures((await ui.http.get("/ui/")).text)
        assert overview["upstreams"]["value"] == "1"
