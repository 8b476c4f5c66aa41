"""The dashboard under /ui: its sessions, templates and routes, made once per app by `create_app`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.staticfiles import StaticFiles

from gateway_app.ui import auth, pages_audit, pages_keys, pages_money, pages_ops
from gateway_app.ui.render import HERE, context_defaults, make_templates
from gateway_app.ui.sessions import SessionTable, UiSession
from gateway_app.ui.web import COOKIE, Handler, SecurityHeaders, identify, page
from mcp_gateway.runtime import GatewayRuntime


class Dashboard:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.sessions = SessionTable(clock)
        self.templates = make_templates()

    def session_of(self, request: Request) -> UiSession | None:
        """The request's session while its admin token still identifies the same id and role in the
        policy in force; otherwise the session ends here."""
        cookie = request.cookies.get(COOKIE)
        session = self.sessions.get(cookie)
        if session is None:
            return None
        runtime: GatewayRuntime = request.state.runtime
        if identify(runtime.state.current, session.token_digest) != session.identity:
            self.sessions.end(cookie)
            return None
        return session

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        return self.templates.TemplateResponse(
            request, template, context_defaults(**context), status_code=status
        )

    def _page(self, path: str, handler: Handler, methods: list[str], changes_state: bool = False) -> Route:
        return Route(path, page(self, handler, changes_state=changes_state), methods=methods)

    def routes(self) -> list[BaseRoute]:
        get, post = ["GET"], ["POST"]
        inner: list[BaseRoute] = [
            Route("/login", auth.login_endpoint(self), methods=["GET", "POST"]),
            self._page("/logout", auth.logout, post),
            self._page("/", pages_money.overview, get),
            self._page("/spend", pages_money.spend_page, get),
            self._page("/budgets", pages_money.budgets_page, get),
            self._page("/limits", pages_money.limits_page, get),
            self._page("/tool-calls", pages_audit.tool_calls, get),
            self._page("/tool-calls/{call_id}", pages_audit.tool_call, get),
            self._page("/upstreams", pages_ops.upstreams, get),
            self._page("/policy", pages_ops.policy, get),
            self._page("/policy/reload", pages_ops.reload_policy, post, changes_state=True),
            self._page("/keys", pages_keys.keys, get),
            self._page("/keys", pages_keys.create_key, post, changes_state=True),
            self._page("/keys/{key_id}/edit", pages_keys.edit_key_form, get),
            self._page("/keys/{key_id}/edit", pages_keys.edit_key, post, changes_state=True),
            self._page("/keys/{key_id}/rotate", pages_keys.rotate_key, post, changes_state=True),
            self._page("/keys/{key_id}/revoke", pages_keys.revoke_key, post, changes_state=True),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="ui-static"),
        ]
        return [Mount("/ui", app=SecurityHeaders(Router(inner)))]
