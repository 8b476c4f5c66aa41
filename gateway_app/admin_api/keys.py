"""``/admin/keys``: the virtual keys kept in the database, through the CLI's own service.

`gateway_app.keys_admin.KeysAdmin` decides what a change may be (the CLI's ``keys`` command calls
it too), checked against the policy in force. Settings take the policy file's shapes. A new secret
is in the answer to a create or a rotation, once; it is never recorded. After a change this
gateway reads its keys again at once, so a revoked key is refused by the next request and its open
MCP sessions end (other gateways on the database follow within about a second).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway_app.admin_api.errors import BadRequest, Conflict, NotFound
from gateway_app.admin_api.operation import Call, Operation, Param, Reply
from gateway_app.keys_admin import DEFAULT_ROTATION_GRACE, SETTING_FIELDS, KeysAdmin, parse_settings
from policies.keys import KeySettings

MAX_GRACE = timedelta(days=365)


def _service(call: Call) -> KeysAdmin:
    clock = call.runtime.state.clock
    return KeysAdmin(
        call.runtime.engine,
        call.runtime.state.current.policy,
        clock=lambda: datetime.fromtimestamp(clock(), UTC),
    )


async def _applied(call: Call) -> None:
    """This gateway applies the change now (its key watcher would within about a second)."""
    await call.runtime.state.refresh_keys()


async def list_keys(call: Call) -> Reply:
    include_revoked = call.flag("all")
    keys = _service(call)

    def read() -> dict[str, Any]:
        listing: dict[str, Any] = {"keys": [k.to_json() for k in keys.keys(include_revoked=include_revoked)]}
        if include_revoked:
            listing["file_revocations"] = [
                {"key_id": r.key_id, "revoked_at": r.revoked_at.isoformat()} for r in keys.file_revocations()
            ]
        return listing

    return Reply(await call.db(read))


async def show_key(call: Call) -> Reply:
    keys, key_id = _service(call), call.path("key_id")
    return Reply((await call.db(lambda: keys.show(key_id))).to_json())


async def create_key(call: Call) -> Reply:
    body = await call.json_object()
    key_id = body.pop("key_id", None)
    if not isinstance(key_id, str) or not key_id:
        raise BadRequest("give the new key's id as key_id (a string)")
    call.target = key_id
    settings = parse_settings(body)
    keys = _service(call)
    issued = await call.db(lambda: keys.create(key_id, settings))
    await _applied(call)
    call.detail = {"settings": sorted(body), "prefix": issued.key.current_prefix}
    return Reply({**issued.key.to_json(), "secret": issued.secret, "notes": issued.notes}, status=201)


async def update_key(call: Call) -> Reply:
    body = await call.json_object()
    changes = {name: value for name, value in body.items() if value is not None}
    unset = [name for name, value in body.items() if value is None]
    keys, key_id = _service(call), call.path("key_id")
    key = await call.db(lambda: keys.update(key_id, changes, unset))
    await _applied(call)
    call.detail = {"set": sorted(changes), "unset": sorted(unset)}
    return Reply(key.to_json())


async def rotate_key(call: Call) -> Reply:
    body = await call.json_object(optional=True)
    unknown = sorted(set(body) - {"grace_seconds"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}: a rotation takes grace_seconds")
    grace = DEFAULT_ROTATION_GRACE
    if "grace_seconds" in body:
        seconds = body["grace_seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise BadRequest("grace_seconds must be a number of seconds")
        if not 0 <= seconds <= MAX_GRACE.total_seconds():
            raise BadRequest(f"grace_seconds must be between 0 and {MAX_GRACE.total_seconds():.0f}")
        grace = timedelta(seconds=seconds)
    keys, key_id = _service(call), call.path("key_id")
    issued = await call.db(lambda: keys.rotate(key_id, grace))
    await _applied(call)
    until = issued.replaced_until.isoformat() if issued.replaced_until else None
    call.detail = {"grace_seconds": grace.total_seconds(), "prefix": issued.key.current_prefix}
    return Reply({**issued.key.to_json(), "secret": issued.secret, "replaced_secrets_work_until": until})


async def revoke_key(call: Call) -> Reply:
    keys, key_id = _service(call), call.path("key_id")
    result = await call.db(lambda: keys.revoke(key_id))
    if not (result.database_secrets or result.file_secret):
        if result.file_secret_already_revoked:
            raise Conflict(f"key {key_id!r} is already revoked")
        raise NotFound(f"no active secret for key {key_id!r}")
    await _applied(call)
    call.detail = {"database_secrets": result.database_secrets, "file_secret": result.file_secret}
    return Reply(
        {
            "key_id": key_id,
            "database_secrets_revoked": result.database_secrets,
            "file_secret_revoked": result.file_secret,
        }
    )


_SETTINGS = KeySettings.model_json_schema(ref_template="#/components/schemas/{model}")
SCHEMAS: dict[str, Any] = _SETTINGS.pop("$defs", {})
"""The settings' nested models (rate_limit, budget), for the OpenAPI document's components."""
_KEY_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"}
_PATH = (Param("key_id", _KEY_ID, "The key's id.", where="path", required=True),)
_CREATE = {
    **_SETTINGS,
    "title": "NewKey",
    "required": ["key_id"],
    "properties": {"key_id": {**_KEY_ID, "description": "The new key's id."}, **_SETTINGS["properties"]},
}
_PATCH = {
    **_SETTINGS,
    "title": "KeyChanges",
    "description": "Settings to change, in the policy file's shapes; null returns a setting to "
    f"inheriting. Fields: {', '.join(SETTING_FIELDS)}.",
}
_ROTATE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "grace_seconds": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_GRACE.total_seconds(),
            "description": f"How long the replaced secret keeps working (default "
            f"{DEFAULT_ROTATION_GRACE.total_seconds():.0f}; 0 stops it now).",
        }
    },
}
_ISSUED = "The key, with its new secret (shown this once)."

OPERATIONS = (
    Operation(
        "GET",
        "/admin/keys",
        list_keys,
        "The database keys and the state of their secrets",
        "keys",
        params=(Param("all", {"type": "boolean"}, "Include revoked keys and revoked file secrets."),),
        responses={200: "`{keys: [...]}` as `mcp-gateway keys list --json`."},
    ),
    Operation(
        "POST",
        "/admin/keys",
        create_key,
        "Create a key; its secret is in the answer, once",
        "keys",
        access="write",
        action="key.create",
        body=_CREATE,
        responses={201: _ISSUED},
    ),
    Operation(
        "GET",
        "/admin/keys/{key_id}",
        show_key,
        "One key's settings and secrets",
        "keys",
        params=_PATH,
        responses={200: "As `mcp-gateway keys show ID --json`."},
    ),
    Operation(
        "PATCH",
        "/admin/keys/{key_id}",
        update_key,
        "Change a key's settings (its secret stays)",
        "keys",
        access="write",
        action="key.update",
        params=_PATH,
        body=_PATCH,
        responses={200: "The key after the change."},
    ),
    Operation(
        "POST",
        "/admin/keys/{key_id}/rotate",
        rotate_key,
        "Give a key a new secret; the old one works for the grace period",
        "keys",
        access="write",
        action="key.rotate",
        params=_PATH,
        body=_ROTATE,
        body_required=False,
        responses={200: _ISSUED},
    ),
    Operation(
        "POST",
        "/admin/keys/{key_id}/revoke",
        revoke_key,
        "End a key now: refused at once, its MCP sessions closed",
        "keys",
        access="write",
        action="key.revoke",
        params=_PATH,
        responses={200: "How many secrets were revoked.", 409: "The key is already revoked."},
    ),
)
