"""Random audit and ledger rows for the rollup tests, and the reports computed from them in plain
Python: the reference every report (rollups for whole days, rows for the partial ones) must equal.

Rows crowd around UTC midnights (some exactly on one), keys change teams, teams, providers,
models, servers, clients and limits are sometimes missing (a client name is sometimes empty).
Costs are multiples of 1/1024, so float sums are exact in any order and answers compare with ==.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway_app.queries import Period
from policies.budgeting import BudgetScopes, SpendRow, period_bounds
from policies.outcomes import OUTCOMES, REFUSALS

START = datetime(2026, 10, 29, tzinfo=UTC)
DAYS = 6
KEYS = ["k0", "k1", "k2", "k3", "k4", "k5"]
TEAMS = ["alpha", "beta", None]
TOOLS = [("fs", "read"), ("fs", "write"), ("db", "query"), (None, None)]
CLIENTS = ["claude-code", "cursor", "", None]
MODELS = [("m1", "m1-2026"), ("m1", None), ("m2", "m2"), (None, None)]
PROVIDERS = ["anthropic", "openai", None]
MODEL_STATUSES = [s for s in OUTCOMES if s != "tool_error"]
LIMITED = ("rate_limited", "budget_exceeded")
REFUSED = {outcome.value for outcome in REFUSALS}


def moment(rng: random.Random) -> datetime:
    """Often within seconds of a midnight (or on it), else anywhere in the days."""
    day = START + timedelta(days=rng.randrange(DAYS + 1))
    if rng.random() < 0.4:
        return day + timedelta(seconds=rng.choice([0, 0, 1, -1, 0.5, -0.000001, 30, -30]))
    return START + timedelta(seconds=rng.random() * DAYS * 86_400)


def _team(rng: random.Random, key: str) -> str | None:
    """Each key's own team, but now and then another (a key moved)."""
    own = TEAMS[KEYS.index(key) % len(TEAMS)]
    return rng.choice(TEAMS) if rng.random() < 0.15 else own


def _blocked(rng: random.Random, status: str, key: str) -> str | None:
    if status in LIMITED and rng.random() < 0.8:
        return rng.choice([f"rate_limit:key:{key}:rpm", "budget:org:daily"])
    return None


def tool_rows(rng: random.Random, count: int, stamps: set[datetime]) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        key = rng.choice(KEYS)
        server, tool = rng.choice(TOOLS)
        status = rng.choice(OUTCOMES)
        stamp = _unique(moment(rng), stamps)
        rows.append(
            {
                "id": f"t{n:05d}{rng.randrange(10**6):06d}",
                "timestamp": stamp,
                "key_id": key,
                "key_name": key.upper(),
                "team": _team(rng, key),
                "client_name": rng.choice(CLIENTS),
                "kind": rng.choice(["tool", "tool", "resource", "prompt"]),
                "exposed_name": f"{server}__{tool}",
                "server": server,
                "tool": tool,
                "status": status,
                "blocked_by": _blocked(rng, status, key),
                "latency_ms": 1.0,
            }
        )
    return rows


def model_rows(rng: random.Random, count: int, stamps: set[datetime]) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        key = rng.choice(KEYS)
        requested, served = rng.choice(MODELS)
        status = rng.choice(MODEL_STATUSES)
        rows.append(
            {
                "request_id": f"m{n:05d}{rng.randrange(10**6):06d}",
                "timestamp": _unique(moment(rng), stamps),
                "endpoint": "messages",
                "key_id": key,
                "key_name": key.upper(),
                "team": _team(rng, key),
                "provider": rng.choice(PROVIDERS),
                "requested_model": requested,
                "served_model": served,
                "input_tokens": rng.randrange(5000),
                "output_tokens": rng.randrange(900),
                "cache_read_tokens": rng.randrange(3) * 100,
                "cache_write_tokens": rng.randrange(2) * 50,
                "cost_usd": rng.randrange(4096) / 1024 if rng.random() < 0.8 else 0.0,
                "status": status,
                "http_status": 200,
                "blocked_by": _blocked(rng, status, key),
            }
        )
    return rows


def _unique(stamp: datetime, stamps: set[datetime]) -> datetime:
    while stamp in stamps:  # distinct times: "the latest row" is then one row
        stamp += timedelta(microseconds=1)
    stamps.add(stamp)
    return stamp


def periods(rng: random.Random) -> list[Period]:
    """All time, open at either end, a calendar month and week, within one day, across midnights."""
    found = [
        Period.all_time(),
        Period(START + timedelta(days=2), None, "from a midnight"),
        Period(None, START + timedelta(days=3, hours=5), "until mid-day"),
        Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "2026-11"),
        Period(datetime(2026, 10, 26, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC), "2026-W44"),
        Period(START + timedelta(days=1, hours=1), START + timedelta(days=1, hours=20), "one day"),
        Period(START + timedelta(days=1, hours=20), START + timedelta(days=2, hours=3), "over midnight"),
    ]
    for _ in range(5):
        a, b = sorted([moment(rng), moment(rng)])
        if a < b:
            found.append(Period(a, b, "random"))
    return found


def _in(row: dict[str, Any], period: Period, **equal: Any) -> bool:
    return period.contains(row["timestamp"]) and all(
        value is None or row[name] == value for name, value in equal.items()
    )


def _max(a: str | None, b: str | None) -> str | None:
    return a if b is None else b if a is None else max(a, b)


def top_keys(tools: list[Any], models: list[Any], period: Period, order: str, team: str | None) -> list[Any]:
    found: dict[str, list[Any]] = defaultdict(lambda: [None, 0, 0.0, None, 0])
    for row in models:
        if _in(row, period, team=team):
            seen = found[row["key_id"]]
            seen[0], seen[1], seen[2] = _max(seen[0], row["team"]), seen[1] + 1, seen[2] + row["cost_usd"]
    for row in tools:
        if _in(row, period, team=team):
            seen = found[row["key_id"]]
            seen[3], seen[4] = _max(seen[3], row["team"]), seen[4] + 1
    rows = [
        (key, m_team or t_team, calls, cost, called)
        for key, (m_team, calls, cost, t_team, called) in found.items()
    ]
    metric = {"model_calls": 2, "cost": 3, "tool_calls": 4}[order]
    return sorted(rows, key=lambda r: (-r[metric], r[0]))


def team_tools(tools: list[Any], period: Period, **filters: Any) -> list[Any]:
    found: dict[tuple[str, str], list[Any]] = {}
    for row in tools:
        if row["tool"] is None or not _in(row, period, **filters):
            continue
        seen = found.setdefault((row["server"], row["tool"]), [0, 0, 0, set(), row["timestamp"]])
        seen[0] += 1
        seen[1] += row["status"] == "ok"
        seen[2] += row["status"] in REFUSED
        seen[3].add(row["key_id"])
        seen[4] = max(seen[4], row["timestamp"])
    rows = [(s, t, n, ok, no, len(keys), last) for (s, t), (n, ok, no, keys, last) in found.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))


GROUPS = {
    "team": lambda r: r["team"],
    "key": lambda r: r["key_id"],
    "model": lambda r: r["served_model"] if r["served_model"] is not None else r["requested_model"],
    "provider": lambda r: r["provider"],
}
SUMS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd")


def spend(models: list[Any], period: Period, by: str, **filters: Any) -> tuple[list[Any], list[Any]]:
    """(rows, daily) as tuples: (group, requests, tokens..., cost) and (day, group, requests, cost)."""
    totals: dict[Any, list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0.0])
    days: dict[tuple[str, Any], list[Any]] = defaultdict(lambda: [0, 0.0])
    for row in models:
        if _in(row, period, **filters):
            group = GROUPS[by](row)
            seen = totals[group]
            seen[0] += 1
            for n, name in enumerate(SUMS, 1):
                seen[n] += row[name]
            bar = days[(row["timestamp"].strftime("%Y-%m-%d"), group)]
            bar[0], bar[1] = bar[0] + 1, bar[1] + row["cost_usd"]
    rows = sorted(((g, *sums) for g, sums in totals.items()), key=lambda r: (-r[-1], r[0] or ""))
    daily = sorted(((d, g, *v) for (d, g), v in days.items()), key=lambda r: (r[0], r[1] or ""))
    return rows, daily


def limits(tools: list[Any], models: list[Any], period: Period, by: str, **filters: Any) -> list[Any]:
    found: dict[tuple[Any, ...], list[Any]] = {}
    for surface, rows in (("tools", tools), ("models", models)):
        for row in rows:
            if row["status"] in LIMITED and _in(row, period, **filters):
                key = row["key_id"] if by == "key" else None
                group = (key, row["team"], surface, row["status"], row["blocked_by"])
                seen = found.setdefault(group, [0, row["timestamp"], row["timestamp"]])
                seen[0] += 1
                seen[1], seen[2] = min(seen[1], row["timestamp"]), max(seen[2], row["timestamp"])
    return [(*group, *values) for group, values in found.items()]


def budget_spent(models: list[Any], scopes: BudgetScopes, now: datetime) -> list[tuple[str, Any, float]]:
    """(budget, period, spent) for every budget of ``scopes`` in the period containing ``now``."""
    found = []
    for scope in scopes.all_scopes():
        for name, _limit in scope.limits:
            start, end = period_bounds(name, now.timestamp())
            spent = 0.0
            for row in models:
                charged = scopes.charged_by(
                    SpendRow(row["key_id"], row["team"], row["provider"], row["cost_usd"])
                )
                if start <= row["timestamp"] < end and row["cost_usd"] > 0 and scope in charged:
                    spent += row["cost_usd"]
            found.append((scope.ident, name, round(spent, 6)))
    return found
