"""What every dashboard page shares: who is asking (the session, re-checked against the policy in
force), the CSRF check on every POST, the auditor's refusal, security headers, and rendering.

A page is an async function of a `View`; `page(...)` turns it into a Starlette endpoint that
answers a visitor without a session with the login form (GET) or 403 (POST).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from sqlalchemy import Engine
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway_app.admin_actions import AdminActions
from gateway_common.policy_state import PolicyState
from mcp_gateway.runtime import GatewayRuntime
from policies.admin import AdminIdentity, AdminRole
from policies.snapshot import PolicySnapshot

if TYPE_CHECKING:
    from gateway_app.ui.dashboard import Dashboard

T = TypeVar("T")

COOKIE = "mcpgw_ui"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
MAX_FORM_FIELDS = 40
MAX_FIELD_BYTES = 16 * 1024


class SecurityHeaders:
    """Adds the CSP and framing headers to every response under /ui; pages are never cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/ui/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *SECURITY_HEADERS]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def identify(snapshot: PolicySnapshot, token_digest: str) -> AdminIdentity | None:
    """The admin token with this digest in ``snapshot``; a virtual key's secret never counts."""
    if snapshot.knows_secret(token_digest):
        return None
    return snapshot.admin.identify_digest(token_digest)


@dataclass
class View:
    """One request to a page, with the session behind it."""

    request: Request
    dashboard: Dashboard
    identity: AdminIdentity
    csrf: str
    form: FormData | None = None

    @property
    def runtime(self) -> GatewayRuntime:
        runtime: GatewayRuntime = self.request.state.runtime
        return runtime

    @property
    def state(self) -> PolicyState:
        return self.runtime.state

    @property
    def snapshot(self) -> PolicySnapshot:
        return self.runtime.state.current

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.dashboard.clock(), UTC)

    @property
    def is_admin(self) -> bool:
        return self.identity.role == AdminRole.ADMIN

    @property
    def actions(self) -> AdminActions:
        found = getattr(self.request.app.state, "admin_actions", None)
        if isinstance(found, AdminActions):
            return found
        return AdminActions(self.engine)

    def arg(self, name: str) -> str | None:
        """A query parameter, stripped and bounded; None when empty."""
        value = self.request.query_params.get(name, "").strip()[:256]
        return value or None

    def field(self, name: str) -> str:
        value = self.form.get(name, "") if self.form is not None else ""
        return value.strip() if isinstance(value, str) else ""

    async def db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A blocking database call, off the event loop."""
        return await asyncio.to_thread(partial(call, *args, **kwargs))

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        return self.dashboard.render(
            self.request, template, status, identity=self.identity, csrf=self.csrf, **context
        )


Handler = Callable[[View], Awaitable[Response]]


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)


def refusal(dashboard: Dashboard, request: Request, status: int, message: str) -> Response:
    return dashboard.render(request, "refused.html", status, message=message, identity=None, csrf="")


async def read_form(request: Request) -> FormData:
    return await request.form(max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES)


def page(dashboard: Dashboard, handler: Handler, *, changes_state: bool = False) -> Callable[..., Any]:
    """The endpoint for ``handler``: a session is required; a POST must carry the session's CSRF
    token; ``changes_state`` endpoints are for the admin role only (an auditor gets 403)."""

    async def endpoint(request: Request) -> Response:
        session = dashboard.session_of(request)
        if session is None:
            if request.method == "GET":
                return _login_redirect(request)
            return refusal(dashboard, request, 403, "Your session has ended: log in again.")
        form = None
        if request.method == "POST":
            try:
                form = await read_form(request)
            except Exception:
                return refusal(dashboard, request, 400, "The form could not be read.")
            sent = form.get("csrf")
            if not isinstance(sent, str) or not secrets.compare_digest(sent, session.csrf):
                return refusal(
                    dashboard, request, 403, "This form is out of date or did not come from this dashboard."
                )
            if changes_state and session.identity.role != AdminRole.ADMIN:
                return refusal(dashboard, request, 403, "The auditor role can look, not change anything.")
        view = View(request, dashboard, session.identity, session.csrf, form)
        return await handler(view)

    return endpoint


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status)
