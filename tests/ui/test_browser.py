"""The dashboard in a real browser (Debian's chromium driven by Playwright) over a real
``mcp-gateway serve`` on a seeded database: log in; every page shows the figures the CLI's
``--json`` gives; filters narrow the tool calls; a redacted argument reads as redacted; a key
created here shows its secret once and works on /mcp, edited here shows its new settings, and once
revoked here is refused; the
auditor gets no controls and a forged POST is refused; no page logs a console error. A screenshot
of every page is written (tests/ui/artifacts, or $TEST_ARTIFACTS/ui)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from policies.budgeting import period_bounds
from policies.secrets import hash_secret
from tests.conftest import free_port, mcp_client, upstream_stdio
from tests.reports.seed import seed
from tests.ui.browser import Served, artifacts_dir, chromium, start_gateway
from tests.ui.harness import figures

ADMIN = "browser-admin-secret-0123456789"
AUDITOR = "browser-auditor-secret-0123456789"
SECRET = re.compile(r"^mgw_\S{20,}$")


def policy(database_url: str) -> dict[str, Any]:
    return {
        "gateway": {"database_url": database_url, "audit": {"fallback_file": "audit-fallback.jsonl"}},
        "teams": [{"name": "frontend"}, {"name": "backend"}],
        "admin": {
            "tokens": [
                {"id": "ops", "role": "admin", "secret_env": "BROWSER_ADMIN_TOKEN"},
                {"id": "audit", "role": "auditor", "secret_sha256": hash_secret(AUDITOR)},
            ]
        },
        "budgets": {
            "org": {"monthly_limit_usd": 100.0, "alert_threshold": 0.8},
            "teams": [{"name": "backend", "monthly_limit_usd": 3.0, "alert_threshold": 0.5}],
        },
        "mcp": {"servers": [upstream_stdio("alpha")], "team_permissions": {"frontend": "*", "backend": "*"}},
    }


@pytest.fixture
def served(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    engine = make_engine(url)
    create_schema(engine)
    seed(engine, datetime.now(UTC))
    engine.dispose()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(policy(url), sort_keys=False))
    gateway = start_gateway(
        config, free_port(), url, tmp_path / "gateway.log", {"BROWSER_ADMIN_TOKEN": ADMIN}
    )
    yield gateway
    gateway.stop()


def rows_of(html: str) -> dict[str, dict[str, str]]:
    return figures(html)


def group(value: str | None) -> str:
    return "" if value is None else value


async def check_figures(page: Any, gateway: Served, shots: Path) -> None:
    """Every page, its screenshot, and its figures against the CLI's."""
    midnight = period_bounds("daily", datetime.now(UTC).timestamp())[0].isoformat()

    await page.goto(f"{gateway.base}/ui/")
    await page.screenshot(path=str(shots / "overview.png"), full_page=True)
    overview = rows_of(await page.content())
    calls_today = gateway.cli(
        "audit", "--summary", "--since", midnight, "--database-url", gateway.database_url
    )
    assert int(overview["tool_calls"]["value"]) == sum(row["calls"] for row in calls_today)
    spend_today = gateway.cli("report", "spend", "--since", midnight, "--database-url", gateway.database_url)
    assert int(overview["model_requests"]["value"]) == sum(row["requests"] for row in spend_today["rows"])

    await page.goto(f"{gateway.base}/ui/spend?by=team&month=this")
    await page.screenshot(path=str(shots / "spend.png"), full_page=True)
    shown = rows_of(await page.content())
    report = gateway.cli(
        "report", "spend", "--by", "team", "--month", "this", "--database-url", gateway.database_url
    )
    assert report["rows"], "the seed has spend this month"
    for row in report["rows"]:
        cells = shown[group(row["group"])]
        assert (
            float(cells["cost"]) == pytest.approx(row["cost_usd"])
            and int(cells["requests"]) == row["requests"]
        )
    assert float(shown["total"]["cost"]) == pytest.approx(report["total_usd"])
    assert await page.locator("svg.chart rect.bar").count() >= 1

    await page.goto(f"{gateway.base}/ui/budgets")
    await page.screenshot(path=str(shots / "budgets.png"), full_page=True)
    shown = rows_of(await page.content())
    budgets = gateway.cli("report", "budgets", "--config", str(gateway.config))
    assert len(budgets["rows"]) == 2
    for row in budgets["rows"]:
        cells = shown[f"{row['budget']}/{row['period']}"]
        assert float(cells["spent"]) == pytest.approx(row["spent_usd"])
        assert float(cells["limit"]) == row["limit_usd"]
    assert await page.get_by_text("threshold 50 %").count() == 1, "the seeded alert of team:backend"

    await page.goto(f"{gateway.base}/ui/limits")
    await page.screenshot(path=str(shots / "limits.png"), full_page=True)
    shown = rows_of(await page.content())
    hits = gateway.cli("report", "limits", "--database-url", gateway.database_url)
    assert hits["rows"]
    for row in hits["rows"]:
        key = f"{row['key_id']}/{row['surface']}/{row['status']}/{row['blocked_by'] or ''}"
        assert int(shown[key]["refusals"]) == row["refusals"]

    await page.goto(f"{gateway.base}/ui/tool-calls")
    await page.screenshot(path=str(shots / "tool-calls.png"), full_page=True)
    listing = gateway.cli("audit", "--database-url", gateway.database_url)
    shown_ids = [row for row in rows_of(await page.content()) if row.startswith("tc")]
    assert shown_ids == [item["id"] for item in listing["items"]]

    # Filters narrow the table: the same rows the CLI's filter gives.
    await page.get_by_label("Team").fill("frontend")
    await page.get_by_label("Status").select_option("ok")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"team=frontend"))
    narrowed = [row for row in rows_of(await page.content()) if row.startswith("tc")]
    expected = gateway.cli(
        "audit", "--team", "frontend", "--status", "ok", "--database-url", gateway.database_url
    )
    assert narrowed == [item["id"] for item in expected["items"]]
    assert 0 < len(narrowed) < len(shown_ids)

    await page.goto(f"{gateway.base}/ui/upstreams")
    await page.screenshot(path=str(shots / "upstreams.png"), full_page=True)
    shown = rows_of(await page.content())
    detail = httpx.get(f"{gateway.base}/readyz", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert int(shown["alpha"]["tools"]) == detail["upstreams"][0]["tools"] > 0
    assert await page.locator("#alpha .state.ready").count() == 1

    await page.goto(f"{gateway.base}/ui/policy")
    await page.screenshot(path=str(shots / "policy.png"), full_page=True)
    await page.get_by_role("button", name="Reload the policy file").click()
    await page.get_by_text("Reload unchanged").wait_for()


async def mcp_works(gateway: Served, secret: str) -> list[str]:
    async with mcp_client(f"{gateway.base}/mcp", secret) as client:
        tools = await client.list_tools()
        await client.call_tool("alpha__echo", {"text": "deploy with password=hunter2-browser"})
    return [tool.name for tool in tools.tools]


def mcp_status(gateway: Served, secret: str) -> int:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "browser-test", "version": "1"},
        },
    }
    headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json, text/event-stream"}
    return httpx.post(f"{gateway.base}/mcp", json=body, headers=headers, timeout=10).status_code


async def check_keys(page: Any, gateway: Served, shots: Path) -> None:
    await page.goto(f"{gateway.base}/ui/keys")
    await page.get_by_label("Key id").fill("vk_browser")
    await page.get_by_label("Team").select_option("frontend")
    await page.get_by_role("button", name="Create key").click()
    secret = (await page.locator("#secret").inner_text()).strip()
    assert SECRET.match(secret)
    assert secret in await page.locator("#mcp-add").inner_text()
    assert secret in await page.locator("#settings-block").inner_text()
    await page.screenshot(path=str(shots / "keys-created.png"), full_page=True)
    assert "secret" not in page.url and secret not in page.url
    cookies = await page.context.cookies()
    assert all(secret not in cookie["value"] for cookie in cookies)
    await page.goto(f"{gateway.base}/ui/keys")
    assert secret not in await page.content(), "the secret is shown once"
    await page.screenshot(path=str(shots / "keys.png"), full_page=True)

    tools = await mcp_works(gateway, secret)
    assert "alpha__echo" in tools

    # The call just made, redacted in the audit log, and so on its detail page.
    await page.goto(f"{gateway.base}/ui/tool-calls?key=vk_browser")
    for _ in range(50):
        if await page.locator("table.calls tbody tr").count():
            break
        await page.wait_for_timeout(100)
        await page.reload()
    await page.locator("table.calls tbody tr a[aria-label^='Tool call']").first.click()
    arguments = await page.locator("#arguments").inner_text()
    assert "[redacted:assignment]" in arguments and "hunter2" not in await page.content()
    await page.screenshot(path=str(shots / "tool-call.png"), full_page=True)

    # Edit it: the form shows what it has, and saving changes the list.
    await page.goto(f"{gateway.base}/ui/keys")
    await page.locator("tr[data-row='vk_browser']").get_by_role("link", name="Edit…").click()
    assert await page.get_by_label("Team").input_value() == "frontend"
    await page.get_by_label("Name").fill("Browser Sam")
    await page.get_by_label("Team").select_option("backend")
    await page.get_by_label("Tool calls", exact=True).fill("100")
    await page.screenshot(path=str(shots / "key-edit.png"), full_page=True)
    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Key 'vk_browser' updated").wait_for()
    row = page.locator("tr[data-row='vk_browser']")
    assert "Browser Sam" in await row.inner_text() and "backend" in await row.inner_text()
    shown = gateway.cli("keys", "show", "vk_browser", "--database-url", gateway.database_url)
    assert shown["settings"]["rate_limit"] == {"tool_calls_per_minute": 100}

    row = page.locator("tr[data-row='vk_browser']")
    await row.get_by_text("Revoke…").click()
    await row.get_by_role("button", name="Revoke vk_browser now").click()
    await page.get_by_text("Key 'vk_browser' revoked").wait_for()
    assert mcp_status(gateway, secret) == 401, "refused at once after the revocation"


async def check_auditor(page: Any, gateway: Served, shots: Path) -> None:
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url(re.compile(r"/ui/login"))
    await page.get_by_label("Admin token").fill(AUDITOR)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(re.compile(r"/ui/$"))
    for path in ("/ui/keys", "/ui/policy"):
        await page.goto(gateway.base + path)
        assert await page.locator("[data-mutates]").count() == 0
        assert await page.locator("form[method=post]:not(.logout)").count() == 0
    await page.screenshot(path=str(shots / "keys-auditor.png"), full_page=True)
    csrf = await page.locator("form.logout input[name=csrf]").input_value()
    forged = await page.context.request.post(
        f"{gateway.base}/ui/keys", form={"csrf": csrf, "key_id": "vk_forged"}, max_redirects=0
    )
    assert forged.status == 403
    reload = await page.context.request.post(f"{gateway.base}/ui/policy/reload", form={"csrf": csrf})
    assert reload.status == 403
    listing = gateway.cli("keys", "list", "--database-url", gateway.database_url)
    assert "vk_forged" not in {key["key_id"] for key in listing["keys"]}


@pytest.mark.anyio
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_dashboard_in_a_real_browser(served: Served) -> None:
    from playwright.async_api import async_playwright

    executable = chromium()
    shots = artifacts_dir()
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.on(
                "console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            await page.goto(f"{served.base}/ui/spend")
            await page.wait_for_url(re.compile(r"/ui/login\?next="))
            await page.screenshot(path=str(shots / "login.png"))
            await page.get_by_label("Admin token").fill(ADMIN)
            await page.get_by_role("button", name="Log in").click()
            await page.wait_for_url(re.compile(r"/ui/spend$"))
            await check_figures(page, served, shots)
            await check_keys(page, served, shots)
            await page.set_viewport_size({"width": 390, "height": 800})
            await page.goto(f"{served.base}/ui/")
            await page.screenshot(path=str(shots / "overview-narrow.png"), full_page=True)
            await check_auditor(page, served, shots)
        finally:
            await browser.close()
    assert problems == [], problems
