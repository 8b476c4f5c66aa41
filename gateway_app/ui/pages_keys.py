"""Keys: the list, and create, edit, rotate and revoke through `gateway_app.keys_admin` (the rules
the CLI and the admin API follow). A new secret is shown once, in the answer to the POST that made it,
with the ``claude mcp add`` line and settings block of `gateway_app.onboarding`; it is never put in
a URL, a cookie or the log. A change takes effect in this process at once (the keys are read
again), every other gateway on the database within about a second, and each is recorded in
``admin_actions`` with door ``ui``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.responses import Response

from gateway_app.keys_admin import (
    SETTING_FIELDS,
    IssuedKey,
    KeyInfo,
    KeyNotFound,
    KeyRequestError,
    KeysAdmin,
    known_teams,
    parse_settings,
    settings_json,
)
from gateway_app.onboarding import OnboardingError, OnboardingKit, build_kit
from gateway_app.ui.key_form import TEXT_FIELDS, form_values, shown
from gateway_app.ui.web import View, refusal
from policies.keys import KeySettings

GRACES = {"0": timedelta(0), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}


def _admin(view: View) -> KeysAdmin:
    return KeysAdmin(view.engine, view.snapshot.policy, clock=lambda: view.now)


def _choices(view: View) -> dict[str, list[str]]:
    """What the key forms offer: the teams a key may join, the servers its tools may name."""
    policy = view.snapshot.policy
    return {"teams": sorted(known_teams(policy)), "servers": [s.name for s in policy.mcp.servers]}


async def _page(view: View, status: int = 200, **extra: Any) -> Response:
    admin = _admin(view)
    show_all = view.arg("all") == "1"
    keys = await view.db(admin.keys, show_all)
    revocations = await view.db(admin.file_revocations)
    return view.render(
        "keys.html",
        status=status,
        active="keys",
        keys=keys,
        file_keys=view.snapshot.policy.virtual_keys,
        revoked_file_keys={r.key_id: r.revoked_at for r in revocations},
        **_choices(view),
        show_all=show_all,
        graces=list(GRACES),
        **extra,
    )


async def keys(view: View) -> Response:
    return await _page(view)


def form_settings(view: View) -> tuple[str, KeySettings]:
    """The create form as key settings in the policy file's shapes (left empty: inherited)."""
    values = form_values(view.field)
    values.pop("expires_at", None)  # the create form gives a number of days
    days = _days(view)
    if days is not None:
        values["expires_at"] = (view.now + timedelta(days=days)).isoformat()
    return view.field("key_id"), parse_settings(values)


def _days(view: View) -> float | None:
    text = view.field("expires_in_days")
    if not text:
        return None
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not 0 < days <= 3650:
        raise KeyRequestError("expires in: give 1 to 3650 days, or leave it empty for no expiry")
    return days


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


# -- editing a key's settings ------------------------------------------------------------------


def _editable(view: View, admin: KeysAdmin, key_id: str) -> KeyInfo | None:
    """The key, if it has a live database secret to edit the settings of."""
    try:
        key = admin.show(key_id)
    except KeyNotFound:
        return None
    return key if key.state != "revoked" else None


async def _edit_page(
    view: View, key: KeyInfo, fields: dict[str, str], status: int = 200, error: str | None = None
) -> Response:
    return view.render(
        "key_edit.html",
        status=status,
        active="keys",
        key=key,
        fields=fields,
        error=error,
        **_choices(view),
    )


async def edit_key_form(view: View) -> Response:
    if not view.is_admin:
        return refusal(view.dashboard, view.request, 403, "The auditor role can look, not change anything.")
    key_id = _key_id(view)
    key = await view.db(_editable, view, _admin(view), key_id)
    if key is None:
        return await _page(view, 404, error=f"No key {key_id!r} with a live secret to edit.")
    return await _edit_page(view, key, shown(key.settings))


async def edit_key(view: View) -> Response:
    """The form holds every setting: a filled field sets it, an empty one returns it to inheriting.
    For a key the policy file declares, only the expiry of its database secret is set here."""
    admin = _admin(view)
    key_id = _key_id(view)
    key = await view.db(_editable, view, admin, key_id)
    if key is None:
        await view.actions.record(
            view.identity, "ui", "key.update", key_id, "refused", {"reason": "not found"}
        )
        return await _page(view, 404, error=f"No key {key_id!r} with a live secret to edit.")
    typed = {name: view.field(name) for name in TEXT_FIELDS}
    try:
        if key.declared_in_file:
            changes = form_values(lambda name: typed[name] if name == "expires_at" else "")
            unset = [] if changes else ["expires_at"]
        else:
            changes = form_values(lambda name: typed[name])
            unset = [name for name in SETTING_FIELDS if name not in changes]
        updated = await view.db(admin.update, key_id, changes, unset)
    except KeyRequestError as exc:
        await view.actions.record(view.identity, "ui", "key.update", key_id, "refused", {"reason": str(exc)})
        return await _edit_page(view, key, typed, 422, f"Key not changed: {exc}")
    await view.state.refresh_keys()
    await view.actions.record(
        view.identity, "ui", "key.update", key_id, "ok", {"settings": settings_json(updated.settings)}
    )
    return await _page(view, notice=f"Key {key_id!r} updated: in force from its next request.")
