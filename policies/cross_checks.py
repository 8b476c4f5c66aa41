"""What the policy models cannot check one at a time: references between sections (teams, keys,
servers, providers named elsewhere), duplicates, and names that would collide for clients."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from policies.admin import admin_conflicts
from policies.naming import PrefixMode
from policies.permissions import PermissionSpec
from policies.yaml_source import DocPath, format_path

if TYPE_CHECKING:
    from policies.config import GatewayPolicy


def _duplicates(values: list[str]) -> list[str]:
    return sorted(name for name, count in Counter(values).items() if count > 1)


def cross_check(policy: GatewayPolicy) -> tuple[list[tuple[DocPath, str]], list[str]]:
    """References between sections; returns (errors, warnings)."""
    errors: list[tuple[DocPath, str]] = []
    warnings: list[str] = []
    team_names = {t.name for t in policy.teams}
    key_ids = {k.id for k in policy.virtual_keys}
    server_names = {s.name for s in policy.mcp.servers}
    provider_names = {p.name for p in policy.providers}
    separator = policy.mcp.tool_naming.separator

    for dup in _duplicates([t.name for t in policy.teams]):
        errors.append((("teams",), f"team {dup!r} is defined more than once"))
    for dup in _duplicates([k.id for k in policy.virtual_keys]):
        errors.append((("virtual_keys",), f"virtual key {dup!r} is defined more than once"))
    for dup in _duplicates([s.name for s in policy.mcp.servers]):
        errors.append((("mcp", "servers"), f"server {dup!r} is defined more than once"))
    for dup in _duplicates([p.name for p in policy.providers]):
        errors.append((("providers",), f"provider {dup!r} is defined more than once"))
    digests = [k.secret_sha256 for k in policy.virtual_keys if k.secret_sha256]
    if _duplicates(digests):
        errors.append((("virtual_keys",), "two virtual keys share the same secret_sha256"))

    # Teams may be implied (the common seed shape has budgets per team but no team list);
    # once a `teams` list exists, every reference must name one of its entries.
    teams_declared = bool(policy.teams)

    def team_ref(path: DocPath, name: str) -> None:
        if name in team_names:
            return
        if teams_declared:
            errors.append((path, f"team {name!r} is not defined under teams"))
        else:
            warnings.append(
                f"{format_path(path)}: team {name!r} is implied (no teams list); check its spelling"
            )

    for i, key in enumerate(policy.virtual_keys):
        if key.team is not None:
            team_ref(("virtual_keys", i, "team"), key.team)
        if key.provider_config is not None and key.provider_config not in provider_names and policy.providers:
            errors.append(
                (("virtual_keys", i, "provider_config"), f"provider {key.provider_config!r} is not defined")
            )

    for i, server in enumerate(policy.mcp.servers):
        if separator in server.name and policy.mcp.tool_naming.prefix is not PrefixMode.NEVER:
            errors.append(
                (
                    ("mcp", "servers", i, "name"),
                    f"server name {server.name!r} contains the tool name separator {separator!r}",
                )
            )

    def check_spec(path: DocPath, spec: PermissionSpec) -> None:
        if spec == "*":
            return
        names = spec if isinstance(spec, list) else list(spec)
        for name in names:
            if name != "*" and name not in server_names:
                errors.append((path, f"server {name!r} is not defined under mcp.servers"))

    for key_id, spec in policy.mcp.virtual_key_permissions.items():
        check_spec(("mcp", "virtual_key_permissions", key_id), spec)
        if key_id not in key_ids:
            warnings.append(
                f"mcp.virtual_key_permissions.{key_id}: no virtual_keys entry has this id; "
                "it applies to a key of that id created with `mcp-gateway keys create`"
            )
    anonymous = policy.mcp.anonymous_key
    if anonymous is not None:
        if anonymous not in key_ids:
            errors.append(
                (("mcp", "anonymous_key"), f"virtual key {anonymous!r} is not defined under virtual_keys")
            )
        else:
            warnings.append(
                "mcp.anonymous_key: ANONYMOUS ACCESS IS ON: requests to /mcp without credentials are "
                f"served as key {anonymous!r}; anyone who can reach the gateway can use that key's tools"
            )
    for team_name, spec in policy.mcp.team_permissions.items():
        check_spec(("mcp", "team_permissions", team_name), spec)
        team_ref(("mcp", "team_permissions", team_name), team_name)

    if policy.mcp.tool_naming.prefix is PrefixMode.NEVER:
        for noun in ("tool", "prompt"):
            owners: dict[str, list[str]] = {}
            for server in policy.mcp.servers:
                ceiling = server.allowed_tools if noun == "tool" else server.allowed_prompts
                for name in ceiling or []:
                    if not any(ch in name for ch in "*?["):
                        owners.setdefault(name, []).append(server.name)
            for name, servers in sorted(owners.items()):
                if len(servers) > 1:
                    errors.append(
                        (
                            ("mcp", "tool_naming", "prefix"),
                            f"with prefix 'never', {noun} {name!r} is exposed by servers "
                            f"{', '.join(servers)}",
                        )
                    )

    for i, route in enumerate(policy.routes):
        for j, target in enumerate(route.targets()):
            if target.provider not in provider_names:
                path: DocPath = ("routes", i, "provider") if j == 0 else ("routes", i, "fallbacks", j - 1)
                errors.append((path, f"provider {target.provider!r} is not defined under providers"))

    exact_routes: dict[str, int] = {}
    for i, route in enumerate(policy.routes):
        if not any(ch in route.match for ch in "*?["):
            if route.match in exact_routes:
                warnings.append(
                    f"routes[{i}]: model {route.match!r} is already routed by "
                    f"routes[{exact_routes[route.match]}]; this route is never used"
                )
            exact_routes.setdefault(route.match, i)

    for i, team_budget in enumerate(policy.budgets.teams):
        team_ref(("budgets", "teams", i, "name"), team_budget.name)
    for i, key_budget in enumerate(policy.budgets.keys):
        if key_budget.id not in key_ids:
            warnings.append(
                f"budgets.keys[{i}]: no virtual_keys entry has id {key_budget.id!r}; "
                "it applies to a key of that id created with `mcp-gateway keys create`"
            )
    for i, provider_budget in enumerate(policy.budgets.providers):
        if provider_budget.name not in provider_names:
            errors.append(
                (("budgets", "providers", i, "name"), f"provider {provider_budget.name!r} is not defined")
            )
    errors.extend(admin_conflicts(policy.admin, policy.virtual_keys))
    return errors, warnings
