"""``/admin/policy``: the policy in force (a summary without secrets), reloading the file, and the
record of reload attempts.

A reload is the SIGHUP's and the file watcher's (`gateway_app.reload.Reloader`, trigger ``api``):
a file with errors is refused with them (file, line, path) and the policy in force stays; the
answer is the attempt's record either way, and the history lists every attempt.
"""

from __future__ import annotations

from typing import Any

from gateway_app.admin_api.errors import Conflict, Failed, Refused
from gateway_app.admin_api.operation import Call, Operation, Param, Reply
from gateway_app.queries.reloads import recent_reloads
from gateway_app.reload_log import ReloadOutcome

MAX_HISTORY = 200


async def summary(call: Call) -> Reply:
    snapshot = call.runtime.state.current
    policy = snapshot.policy
    reloader = call.reloader
    history = reloader.history() if reloader is not None else []
    last = history[0].to_json() if history else None
    settings = getattr(call.request.app.state, "settings", None)
    # The warnings of the policy in force: its reload's, or (none yet) the start's.
    in_force = next(
        (r for r in history if r.outcome in (ReloadOutcome.APPLIED, ReloadOutcome.UNCHANGED)), None
    )
    warnings = list(in_force.warnings) if in_force else list(getattr(settings, "warnings", []))
    keys = set(snapshot.usable_key_ids(call.now()).values())
    budgets = [
        {"budget": scope.ident, "limits_usd": dict(scope.limits), "alert_threshold": scope.alert_threshold}
        for scope in snapshot.budget_scopes.all_scopes()
    ]
    body: dict[str, Any] = {
        "snapshot_version": snapshot.version,
        "source": str(reloader.source.path) if reloader is not None and reloader.source is not None else None,
        "counts": {
            "keys": len(keys),
            "file_keys": len(policy.virtual_keys),
            "teams": len(policy.teams),
            "servers": len(policy.mcp.servers),
            "providers": len(policy.providers),
            "routes": len(policy.routes),
            "budgets": len(budgets),
            "admin_tokens": len(snapshot.admin),
        },
        "teams": sorted(t.name for t in policy.teams),
        "servers": [{"name": s.name, "enabled": s.enabled} for s in policy.mcp.servers],
        "providers": [p.name for p in policy.providers],
        "routes": [r.match for r in policy.routes],
        "budgets": budgets,
        "warnings": warnings,
        "last_reload": last,
    }
    return Reply(body)


async def reload_policy(call: Call) -> Reply:
    reloader = call.reloader
    if reloader is None:
        raise Conflict("the gateway is not running a reloader (starting or stopping)")
    record = await reloader.reload("api")
    body = record.to_json()
    call.detail = {"reload": record.id, "outcome": record.outcome.value, "version": record.snapshot_version}
    if record.outcome == ReloadOutcome.REFUSED:
        raise Refused(
            "the policy file was refused; the policy in force is unchanged",
            errors=record.errors,
            reload=body,
        )
    if record.outcome == ReloadOutcome.FAILED:
        raise Failed("the policy could not be applied; the policy in force is unchanged", reload=body)
    return Reply(body)


async def reloads(call: Call) -> Reply:
    limit = call.integer("limit", 50, 1, MAX_HISTORY)
    engine = call.runtime.engine
    return Reply({"items": await call.db(lambda: recent_reloads(engine, limit=limit))})


OPERATIONS = (
    Operation(
        "GET",
        "/admin/policy",
        summary,
        "The policy in force: snapshot version, counts, budgets, warnings, last reload",
        "policy",
        responses={200: "A summary of the policy in force (no secrets)."},
    ),
    Operation(
        "POST",
        "/admin/policy/reload",
        reload_policy,
        "Read the policy file again and apply it",
        "policy",
        access="write",
        action="policy.reload",
        responses={
            200: "Applied (or unchanged): the attempt's record.",
            422: "Refused: `errors` (file, line, path); the policy in force is unchanged.",
            409: "No reloader (the gateway is starting or stopping).",
        },
    ),
    Operation(
        "GET",
        "/admin/policy/reloads",
        reloads,
        "The last reload attempts, newest first (every gateway on this database)",
        "policy",
        params=(Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY}, "How many."),),
        responses={200: "`{items: [...]}`: each attempt's record."},
    ),
)
