"""What changed between two policies, and which of it a running gateway cannot adopt.

A reload compares the policy in force with the one just read. Most of a policy
applies to the next request (it lives in the snapshot) or is reconciled in place
(upstream servers, model providers). A few settings are fixed when the process
starts (`RESTART_ONLY`): the listen address, the database, the serving limits,
the row writers. A reload keeps their old values, says so, and applies the rest.

The summary names what changed (servers, keys, teams, paths in the file), never
a value: expanded ``${VAR}`` references put secrets in headers and URLs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.bounds import MAX_NAME_CHARS, clip
from policies.config import GatewayPolicy
from policies.servers import UpstreamServerConfig

RESTART_ONLY: tuple[tuple[str, str], ...] = (
    ("gateway", "host"),
    ("gateway", "port"),
    ("gateway", "database_url"),
    ("gateway", "database_migrations"),
    ("gateway", "row_writer"),
    ("gateway", "shutdown_grace_seconds"),
    ("gateway", "session_idle_seconds"),
    ("gateway", "max_sessions"),
    ("gateway", "max_sessions_per_key"),
    ("gateway", "session_secret_env"),
    ("gateway", "header_timeout_seconds"),
    ("gateway", "keep_alive_seconds"),
    ("gateway", "max_connections"),
    ("gateway", "max_requests_in_flight"),
    ("gateway", "audit"),
    ("llm_proxy", "ledger_flush_interval_ms"),
    ("llm_proxy", "ledger_batch_size"),
    ("llm_proxy", "ledger_fallback_file"),
    ("llm_proxy", "alert_webhook_timeout_seconds"),
    ("budgets", "alert_webhook"),
)
"""Settings read once when the process starts: the listen address, the database, the session store,
the HTTP serving limits, the audit/ledger/alert writers and the alert webhook's client."""

SERVER_LIVE_FIELDS = frozenset({"description", "allowed_tools", "timeout_seconds"})
"""Server fields applied to the running connection; any other change restarts the server."""

NAMED_LISTS: Mapping[tuple[str, ...], str] = {
    ("teams",): "name",
    ("virtual_keys",): "id",
    ("mcp", "servers"): "name",
    ("providers",): "name",
    ("budgets", "teams"): "name",
    ("budgets", "keys"): "id",
    ("budgets", "providers"): "name",
    ("admin", "tokens"): "id",
}
"""Lists whose entries are compared by their name (a reordered list is no change)."""

MAX_LISTED = 100
"""Entries kept per list in a summary; the rest are counted."""

Path = tuple[str | int, ...]


def keep_restart_settings(old: GatewayPolicy, new: GatewayPolicy) -> tuple[GatewayPolicy, list[str]]:
    """``new`` with the `RESTART_ONLY` settings of ``old``, and the paths of those that differed."""
    kept: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    for section, name in RESTART_ONLY:
        before = getattr(getattr(old, section), name)
        if before != getattr(getattr(new, section), name):
            kept.append(f"{section}.{name}")
            sections.setdefault(section, {})[name] = before
    if not sections:
        return new, kept
    update = {
        section: getattr(new, section).model_copy(update=values) for section, values in sections.items()
    }
    return new.model_copy(update=update), kept


def server_needs_restart(old: UpstreamServerConfig, new: UpstreamServerConfig) -> bool:
    """Whether a server's connection must be replaced to adopt ``new`` (its command, URL, headers...)."""
    live = set(SERVER_LIVE_FIELDS)
    return old.model_dump(exclude=live) != new.model_dump(exclude=live)


@dataclass
class NamedChanges:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {name: _listed(values) for name, values in vars(self).items() if values}


@dataclass
class PolicyChanges:
    """Everything that differs between two policies, by what it affects (names and paths only)."""

    paths: list[str] = field(default_factory=list)
    """Every changed entry or value, as a path in the file (``virtual_keys[vk_a].rate_limit``)."""
    keys: NamedChanges = field(default_factory=NamedChanges)
    teams: NamedChanges = field(default_factory=NamedChanges)
    admin_tokens: NamedChanges = field(default_factory=NamedChanges)
    permissions: list[str] = field(default_factory=list)
    """``key:ID`` / ``team:NAME`` whose tool permissions or allowed models changed."""
    limits: list[str] = field(default_factory=list)
    """``key:ID`` / ``team:NAME`` whose rate limits changed."""
    budgets: list[str] = field(default_factory=list)
    routes: bool = False
    pricing: bool = False
    settings: list[str] = field(default_factory=list)
    """Settings applied live (``gateway.max_body_bytes``, ``mcp.tool_naming.prefix``...)."""
    restart_required: list[str] = field(default_factory=list)
    """`RESTART_ONLY` settings the file changed; their old values stay in force."""

    def __bool__(self) -> bool:
        return bool(self.paths)


def diff_policies(old: GatewayPolicy, new: GatewayPolicy) -> PolicyChanges:
    """What differs between ``old`` and ``new`` (compare before `keep_restart_settings`)."""
    changes = PolicyChanges()
    changed: list[tuple[Path, str]] = []
    _walk(old.model_dump(), new.model_dump(), (), changed)
    changes.paths = [_format(path) for path, _ in changed]
    restart = {f"{section}.{name}" for section, name in RESTART_ONLY}
    for path, kind in changed:
        _classify(path, kind, changes, restart)
    for names in (changes.permissions, changes.limits, changes.budgets, changes.settings):
        names[:] = sorted(set(names))
    changes.restart_required = sorted(set(changes.restart_required))
    return changes


def summarise(changes: PolicyChanges, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready summary (empty parts left out); ``extra`` adds reconciled parts (servers, providers)."""
    out: dict[str, Any] = {}
    for name, value in (extra or {}).items():
        if value:
            out[name] = value
    for name in ("keys", "teams", "admin_tokens"):
        named: NamedChanges = getattr(changes, name)
        if named:
            out[name] = named.to_json()
    for name in ("permissions", "limits", "budgets", "settings", "restart_required"):
        values: list[str] = getattr(changes, name)
        if values:
            out[name] = _listed(values)
    if changes.routes:
        out["routes"] = True
    if changes.pricing:
        out["pricing"] = True
    return out


def describe(summary: Mapping[str, Any]) -> str:
    """One short line for the log: ``servers (added: docs; removed: old); keys (added: 2 names); routes``."""
    parts = []
    for name, value in summary.items():
        if isinstance(value, Mapping):
            kinds = "; ".join(f"{kind}: {_few(names)}" for kind, names in value.items())
            parts.append(f"{name} ({kinds})")
        elif isinstance(value, list):
            parts.append(f"{name}: {_few(value)}")
        elif value:
            parts.append(name)
    return "; ".join(parts) or "no change"


def _few(names: list[str], shown: int = 5) -> str:
    text = ", ".join(str(n) for n in names[:shown])
    return f"{text} and {len(names) - shown} more" if len(names) > shown else text


# -- comparing ---------------------------------------------------------------------------


def _walk(old: Any, new: Any, path: Path, out: list[tuple[Path, str]]) -> None:
    """Append (path, "added" | "removed" | "changed") for every difference, as deep as it goes."""
    if old == new:
        return
    key_field = NAMED_LISTS.get(tuple(str(p) for p in path))
    if key_field is not None and isinstance(old, list) and isinstance(new, list):
        before, after = _by_name(old, key_field), _by_name(new, key_field)
        if before is not None and after is not None:
            for name in sorted(before.keys() | after.keys()):
                if name not in before:
                    out.append(((*path, f"[{name}]"), "added"))
                elif name not in after:
                    out.append(((*path, f"[{name}]"), "removed"))
                else:
                    _walk(before[name], after[name], (*path, f"[{name}]"), out)
            return
    if isinstance(old, dict) and isinstance(new, dict):
        for name in sorted(old.keys() | new.keys(), key=str):
            if name not in old:
                out.append(((*path, str(name)), "added"))
            elif name not in new:
                out.append(((*path, str(name)), "removed"))
            else:
                _walk(old[name], new[name], (*path, str(name)), out)
        return
    out.append((path, "changed"))


def _by_name(items: list[Any], key_field: str) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get(key_field), str):
            return None
        found[item[key_field]] = item
    return found if len(found) == len(items) else None


def _format(path: Path) -> str:
    out = ""
    for part in path:
        text = str(part)
        out += text if text.startswith("[") or not out else f".{text}"
    return clip(out, MAX_NAME_CHARS)


def _entry(part: str | int) -> str:
    return str(part)[1:-1]


def _classify(path: Path, kind: str, changes: PolicyChanges, restart: set[str]) -> None:
    text = [str(p) for p in path]
    head = text[0]
    if len(text) >= 2 and ".".join(text[:2]) in restart:
        changes.restart_required.append(".".join(text[:2]))
        return
    if head in ("virtual_keys", "teams"):
        named = changes.keys if head == "virtual_keys" else changes.teams
        who = f"{'key' if head == 'virtual_keys' else 'team'}:{_entry(text[1])}"
        if len(text) == 2:
            getattr(named, kind).append(_entry(text[1]))
            return
        if _entry(text[1]) not in named.changed:
            named.changed.append(_entry(text[1]))
        if text[2] == "rate_limit":
            changes.limits.append(who)
        elif text[2] == "allowed_models":
            changes.permissions.append(who)
    elif head == "mcp" and len(text) >= 3 and text[1] in ("virtual_key_permissions", "team_permissions"):
        kind = "key" if text[1] == "virtual_key_permissions" else "team"
        changes.permissions.append(f"{kind}:{text[2]}")
    elif head == "mcp" and len(text) >= 2 and text[1] != "servers":
        changes.settings.append(_format(tuple(path[:3])))
    elif head == "budgets":
        changes.budgets.append(_format(tuple(path[:3])))
    elif head == "routes":
        changes.routes = True
    elif head == "pricing":
        changes.pricing = True
    elif head == "admin" and len(text) >= 3:
        named = changes.admin_tokens
        token = _entry(text[2])
        if len(text) == 3:
            getattr(named, kind).append(token)
        elif token not in named.changed:
            named.changed.append(token)
    elif head in ("gateway", "llm_proxy"):
        changes.settings.append(_format(tuple(path[:3])))


def _listed(values: Iterable[str]) -> list[str]:
    items = list(values)
    if len(items) <= MAX_LISTED:
        return items
    return [*items[:MAX_LISTED], f"… and {len(items) - MAX_LISTED} more"]
