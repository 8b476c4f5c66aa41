"""Upstreams (their state, protocol, tools, restarts, last error) and Policy (the snapshot in force,
the last reloads, the admin actions, and the reload button for the admin role)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from gateway_app.admin_actions import ActionOutcome
from gateway_app.health import readiness
from gateway_app.queries.reloads import recent_reloads
from gateway_app.reload import Reloader
from gateway_app.reload_log import ReloadOutcome
from gateway_app.ui.web import View
from policies.bounds import clip

RELOADS_SHOWN = 20
ACTIONS_SHOWN = 20


async def upstreams(view: View) -> Response:
    _, body = readiness(view.runtime, getattr(view.request.state, "llm", None))
    rows = []
    for upstream in body["upstreams"]:
        error = upstream.get("last_error")
        rows.append({**upstream, "last_error": clip(str(error), 2000) if error else None})
    return view.render(
        "upstreams.html",
        active="upstreams",
        status_text=body["status"],
        upstreams=rows,
        tools=body["tools"],
        sessions=body["sessions"],
        problems=body["catalogue_problems"],
    )


def summary(view: View) -> list[tuple[str, Any]]:
    snapshot = view.snapshot
    policy = snapshot.policy
    budgets = snapshot.budget_scopes.all_scopes()
    servers = policy.mcp.servers
    return [
        ("Snapshot version", snapshot.version),
        ("Policy file", view.request.app.state.settings.source or "(none: started without a file)"),
        ("Teams", len(policy.teams) or "(none listed)"),
        ("Virtual keys in the file", len(policy.virtual_keys)),
        ("MCP servers", f"{sum(1 for s in servers if s.enabled)} enabled of {len(servers)}"),
        ("Model providers", len(policy.providers)),
        ("Model routes", len(policy.routes)),
        ("Budgets", len(budgets)),
        ("Admin tokens usable", len(snapshot.admin)),
        ("Database", policy.gateway.database_url.split("://", 1)[0]),
        ("Watch the policy file", "yes" if policy.gateway.watch_policy_file else "no"),
    ]


async def _policy_page(view: View, status: int = 200, **extra: Any) -> Response:
    reloads = await view.db(recent_reloads, view.engine, limit=RELOADS_SHOWN)
    actions = await view.db(view.actions.recent, ACTIONS_SHOWN)
    return view.render(
        "policy.html",
        status=status,
        active="policy",
        summary=summary(view),
        reloads=reloads,
        actions=actions,
        **extra,
    )


async def policy(view: View) -> Response:
    return await _policy_page(view)


_OUTCOMES: dict[ReloadOutcome, ActionOutcome] = {
    ReloadOutcome.APPLIED: "ok",
    ReloadOutcome.UNCHANGED: "ok",
    ReloadOutcome.REFUSED: "refused",
    ReloadOutcome.FAILED: "failed",
}


async def reload_policy(view: View) -> Response:
    reloader: Reloader | None = getattr(view.request.state, "reloader", None)
    if reloader is None:
        return await _policy_page(view, 503, error="The gateway is starting or stopping: try again.")
    record = await reloader.reload("ui")
    await view.actions.record(
        view.identity,
        "ui",
        "policy.reload",
        record.source,
        _OUTCOMES[record.outcome],
        {
            "outcome": record.outcome.value,
            "snapshot_version": record.snapshot_version,
            "errors": record.errors,
        },
    )
    if record.outcome in (ReloadOutcome.APPLIED, ReloadOutcome.UNCHANGED):
        said = "applied" if record.outcome == ReloadOutcome.APPLIED else "unchanged: nothing to apply"
        return await _policy_page(view, notice=f"Reload {said} (snapshot {record.snapshot_version}).")
    return await _policy_page(view, 422, error=f"Reload {record.outcome.value}: " + "; ".join(record.errors))
