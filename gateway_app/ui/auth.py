"""Logging in and out: an admin token is exchanged for a session cookie once, at the login form.

The cookie is HttpOnly, SameSite=Strict, scoped to /ui, and Secure when the request came over
https. The login form itself carries a CSRF token too (a random value in a short-lived cookie of
its own, sent back in the form: a page elsewhere can neither read nor send it), so nobody can log
a browser into someone else's session.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway_app.admin_guesses import TooManyWrongTokens, client_address, guesses_of
from gateway_app.ui.web import COOKIE, View, identify, read_form
from mcp_gateway.runtime import GatewayRuntime
from policies.secrets import hash_secret

if TYPE_CHECKING:
    from gateway_app.ui.dashboard import Dashboard

LOGIN_COOKIE = "mcpgw_ui_login"
MAX_TOKEN_CHARS = 512


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _next(target: str | None) -> str:
    """Where to go after logging in: a dashboard path only (never another site)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


def _form(dashboard: Dashboard, request: Request, status: int, message: str | None, target: str) -> Response:
    token = request.cookies.get(LOGIN_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(24)
    runtime: GatewayRuntime = request.state.runtime
    has_tokens = len(runtime.state.current.admin) > 0
    response = dashboard.render(
        request,
        "login.html",
        status,
        identity=None,
        csrf=token,
        error=message,
        next=target,
        has_tokens=has_tokens,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=3600,
        path="/ui/login",
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )
    return response


def login_endpoint(dashboard: Dashboard) -> Callable[[Request], Any]:
    async def login(request: Request) -> Response:
        if request.method == "GET":
            if dashboard.session_of(request) is not None:
                return RedirectResponse(_next(request.query_params.get("next")), status_code=303)
            return _form(dashboard, request, 200, None, _next(request.query_params.get("next")))
        try:
            form = await read_form(request)
        except Exception:
            return _form(dashboard, request, 400, "The form could not be read.", "/ui/")
        target = _next(str(form.get("next") or ""))
        sent, expected = form.get("csrf"), request.cookies.get(LOGIN_COOKIE)
        if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, expected):
            return _form(dashboard, request, 403, "The login form expired: please try again.", target)
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""
        runtime: GatewayRuntime = request.state.runtime
        guesses, address = guesses_of(request), client_address(request)
        if guesses is not None:
            try:
                guesses.check(address)
            except TooManyWrongTokens as exc:
                message = f"Too many wrong tokens from your address: try again in {exc.retry_after} s."
                response = _form(dashboard, request, 429, message, target)
                response.headers["Retry-After"] = str(exc.retry_after)
                return response
        identity = None
        digest = ""
        if 0 < len(token) <= MAX_TOKEN_CHARS:
            digest = hash_secret(token)
            identity = identify(runtime.state.current, digest)
        if identity is None:
            if token and guesses is not None:
                guesses.wrong(address)
            return _form(dashboard, request, 401, "That is not an admin token of this gateway.", target)
        cookie, _ = dashboard.sessions.open(identity, digest)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            path="/ui",
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
        return response

    return login


async def logout(view: View) -> Response:
    view.dashboard.sessions.end(view.request.cookies.get(COOKIE))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui", secure=_secure(view.request), httponly=True, samesite="strict")
    return response
