"""Keys: the list, and create, rotate and revoke through `gateway_app.keys_admin` (the rules the
CLI and the admin API follow). A new secret is shown once, in the answer to the POST that made it,
with the ``claude mcp add`` line and settings block of `gateway_app.onboarding`; it is never put in
a URL, a cookie or the log. A change takes effect in this process at once (the keys are read
again), every other gateway on the database within about a second, and each is recorded in
``admin_actions`` with door ``ui``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.responses import Response

from gateway_app.keys_admin import (
    IssuedKey,
    KeyNotFound,
    KeyRequestError,
    KeysAdmin,
    known_teams,
    parse_settings,
    settings_json,
)
from gateway_app.onboarding import OnboardingError, OnboardingKit, build_kit
from gateway_app.ui.web import View
from policies.keys import KeySettings

GRACES = {"0": timedelta(0), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}


def _admin(view: View) -> KeysAdmin:
    return KeysAdmin(view.engine, view.snapshot.policy, clock=lambda: view.now)


async def _page(view: View, status: int = 200, **extra: Any) -> Response:
    admin = _admin(view)
    show_all = view.arg("all") == "1"
    keys = await view.db(admin.keys, show_all)
    revocations = await view.db(admin.file_revocations)
    policy = view.snapshot.policy
    return view.render(
        "keys.html",
        status=status,
        active="keys",
        keys=keys,
        file_keys=policy.virtual_keys,
        revoked_file_keys={r.key_id: r.revoked_at for r in revocations},
        teams=sorted(known_teams(policy)),
        servers=[s.name for s in policy.mcp.servers],
        show_all=show_all,
        graces=list(GRACES),
        **extra,
    )


async def keys(view: View) -> Response:
    return await _page(view)


def _number(view: View, name: str, kind: type[int] | type[float]) -> int | float | None:
    text = view.field(name)
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise KeyRequestError(f"{name.replace('_', ' ')}: {text[:40]!r} is not a number") from None


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def form_settings(view: View) -> tuple[str, KeySettings]:
    """The create form as key settings in the policy file's shapes (left empty: inherited)."""
    values: dict[str, Any] = {}
    if view.field("name"):
        values["name"] = view.field("name")[:200]
    if view.field("team"):
        values["team"] = view.field("team")
    if view.field("allowed_models"):
        values["allowed_models"] = _list(view.field("allowed_models"))
    tools = view.field("tools")
    if tools:
        values["tool_permissions"] = "*" if tools == "*" else _list(tools)
    rate = {
        name: value
        for name in ("requests_per_minute", "tool_calls_per_minute")
        if (value := _number(view, name, int)) is not None
    }
    if rate:
        values["rate_limit"] = rate
    budget = {
        name: value
        for name in ("daily_limit_usd", "monthly_limit_usd", "alert_threshold")
        if (value := _number(view, name, float)) is not None
    }
    if budget:
        values["budget"] = budget
    days = _number(view, "expires_in_days", float)
    if days is not None:
        if not 0 < days <= 3650:
            raise KeyRequestError("expires in: give 1 to 3650 days, or leave it empty for no expiry")
        values["expires_at"] = (view.now + timedelta(days=days)).isoformat()
    return view.field("key_id"), parse_settings(values)


def _kit(view: View, admin: KeysAdmin, issued: IssuedKey) -> tuple[OnboardingKit | None, str | None]:
    url = f"{view.request.url.scheme}://{view.request.url.netloc}"
    try:
        principal, own_models = admin.subject(issued.key.key_id)
        return build_kit(
            admin.policy or view.snapshot.policy, principal, own_models, issued.secret, url
        ), None
    except (OnboardingError, KeyRequestError) as exc:
        return None, str(exc)


async def create_key(view: View) -> Response:
    admin = _admin(view)
    key_id = view.field("key_id")[:128]
    try:
        key_id, settings = form_settings(view)
        issued = await view.db(admin.create, key_id, settings)
    except KeyRequestError as exc:
        await view.actions.record(
            view.identity, "ui", "key.create", key_id or None, "refused", {"reason": str(exc)}
        )
        return await _page(view, 422, error=f"Key not created: {exc}", form=dict(view.form or {}))
    await view.state.refresh_keys()
    await view.actions.record(
        view.identity, "ui", "key.create", key_id, "ok", {"settings": settings_json(settings)}
    )
    kit, problem = await view.db(_kit, view, admin, issued)
    return await _page(view, issued=issued, verb="Created", kit=kit, kit_problem=problem)


def _key_id(view: View) -> str:
    return str(view.request.path_params["key_id"])[:128]


async def rotate_key(view: View) -> Response:
    admin = _admin(view)
    key_id = _key_id(view)
    grace = GRACES.get(view.field("grace"), GRACES["1h"])
    try:
        issued = await view.db(admin.rotate, key_id, grace)
    except KeyRequestError as exc:
        await view.actions.record(view.identity, "ui", "key.rotate", key_id, "refused", {"reason": str(exc)})
        status = 404 if isinstance(exc, KeyNotFound) else 422
        return await _page(view, status, error=f"Key not rotated: {exc}")
    await view.state.refresh_keys()
    await view.actions.record(
        view.identity, "ui", "key.rotate", key_id, "ok", {"grace_seconds": grace.total_seconds()}
    )
    kit, problem = await view.db(_kit, view, admin, issued)
    return await _page(view, issued=issued, verb="Rotated", kit=kit, kit_problem=problem)


async def revoke_key(view: View) -> Response:
    admin = _admin(view)
    key_id = _key_id(view)
    result = await view.db(admin.revoke, key_id)
    detail = {"database_secrets": result.database_secrets, "file_secret": result.file_secret}
    if not (result.database_secrets or result.file_secret):
        await view.actions.record(view.identity, "ui", "key.revoke", key_id, "refused", detail)
        return await _page(view, 404, error=f"No active secret of key {key_id!r} to revoke.")
    await view.state.refresh_keys()  # refused here at once, and its MCP sessions closed
    await view.actions.record(view.identity, "ui", "key.revoke", key_id, "ok", detail)
    return await _page(view, notice=f"Key {key_id!r} revoked: its secrets are refused from now on.")
