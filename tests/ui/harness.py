"""The dashboard's test harness: a gateway app over a seeded SQLite database (tests/reports/seed.py),
its lifespan running, reached in memory through httpx's ASGITransport with a fake clock; logging
in as the admin or the auditor; and a reader of the figures pages carry in ``data-*`` attributes."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

from gateway_app.app import create_app
from gateway_app.database import create_schema
from gateway_app.reload import PolicySource
from gateway_common.db import make_engine
from mcp_gateway.runtime import GatewayRuntime
from policies.secrets import hash_secret
from tests.llm_proxy.conftest import FakeClock, settings_for
from tests.reports.seed import Seeded, seed

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
ADMIN = "ui-admin-secret-0123456789abcdef"
AUDITOR = "ui-auditor-secret-0123456789abcdef"
FILE_KEY = "mgw_ui_file_key_0123456789abcdef"
ADMIN_ENV = "UI_TEST_ADMIN_TOKEN"
PAGES = [
    "/ui/",
    "/ui/spend",
    "/ui/budgets",
    "/ui/limits",
    "/ui/tool-calls",
    "/ui/upstreams",
    "/ui/keys",
    "/ui/policy",
]


def config(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "teams": [{"name": "frontend"}, {"name": "backend"}],
        "virtual_keys": [{"id": "vk_file", "team": "frontend", "secret_sha256": hash_secret(FILE_KEY)}],
        "admin": {
            "tokens": [
                {"id": "ops", "role": "admin", "secret_env": ADMIN_ENV},
                {"id": "audit", "role": "auditor", "secret_sha256": hash_secret(AUDITOR)},
            ]
        },
        "budgets": {
            "org": {"monthly_limit_usd": 100.0, "alert_threshold": 0.8},
            "teams": [
                {"name": "backend", "monthly_limit_usd": 3.0, "alert_threshold": 0.5},
                {"name": "frontend", "daily_limit_usd": 2.0},
            ],
        },
        "mcp": {"servers": [], "team_permissions": {"frontend": "*", "backend": "*"}},
    }
    cfg.update(extra)
    return cfg


@dataclass
class Ui:
    app: Any
    state: dict[str, Any]
    clock: FakeClock
    seeded: Seeded | None
    http: httpx.AsyncClient

    @property
    def runtime(self) -> GatewayRuntime:
        runtime: GatewayRuntime = self.state["runtime"]
        return runtime

    @property
    def engine(self) -> Any:
        return self.runtime.engine

    def client(self, base_url: str = "http://localhost") -> httpx.AsyncClient:
        state = self.state

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            await self.app({**scope, "state": dict(state)}, receive, send)

        transport = httpx.ASGITransport(app=with_state, client=("127.0.0.1", 50000))
        return httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30)


@contextlib.asynccontextmanager
async def dashboard(
    tmp_path: Path,
    cfg: dict[str, Any] | None = None,
    *,
    seeded: bool = True,
    policy_file: Path | None = None,
) -> AsyncIterator[Ui]:
    settings = settings_for(cfg or config(), tmp_path)
    engine = make_engine(settings.policy.gateway.database_url)
    create_schema(engine)
    rows = seed(engine, NOW) if seeded else None
    engine.dispose()
    clock = FakeClock(NOW)
    source = PolicySource(policy_file) if policy_file is not None else None
    app = create_app(settings, clock=clock, policy_source=source)
    async with app.router.lifespan_context(app) as maybe_state:
        ui = Ui(app, dict(maybe_state or {}), clock, rows, None)  # type: ignore[arg-type]
        async with ui.client() as http:
            ui.http = http
            yield ui


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def login(http: httpx.AsyncClient, token: str, next_path: str = "/ui/") -> httpx.Response:
    form = await http.get("/ui/login")
    assert form.status_code == 200, form.text
    return await http.post("/ui/login", data={"csrf": csrf_of(form.text), "token": token, "next": next_path})


async def logged_in(http: httpx.AsyncClient, token: str = ADMIN) -> str:
    """Log in; returns the session's CSRF token (read from a page)."""
    answer = await login(http, token)
    assert answer.status_code == 303, answer.text
    page = await http.get("/ui/keys")
    assert page.status_code == 200
    return csrf_of(page.text)


class Figures(HTMLParser):
    """``data-row`` elements and the ``data-col``/``data-value`` cells inside them:
    ``{row: {col: value}}`` (values as text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self._stack: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        row = found.get("data-row")
        if tag not in ("input", "br", "meta", "link", "img", "hr"):
            self._stack.append((tag, row))
        if row is not None:
            self.rows.setdefault(row, {})
            if "data-col" in found and "data-value" in found:
                self.rows[row][found["data-col"] or ""] = found["data-value"] or ""
        elif "data-col" in found and "data-value" in found:
            current = next((r for _, r in reversed(self._stack) if r is not None), None)
            if current is not None:
                self.rows[current][found["data-col"] or ""] = found["data-value"] or ""

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == tag:
                break


def figures(html: str) -> dict[str, dict[str, str]]:
    parser = Figures()
    parser.feed(html)
    return parser.rows
