"""``mcp-gateway check``: validate a policy file exactly as ``serve`` does and, with ``--connect``,
open its database and counter store and start every upstream, listing the tools each key sees."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from gateway_app.cli_base import load_env_file, load_policy_or_exit
from policies import GatewayPolicy, Principal


def add_check_command(sub: Any) -> None:
    check = sub.add_parser("check", help="validate a policy file")
    check.add_argument("--config", required=True)
    check.add_argument("--env-file")
    check.add_argument("--connect", action="store_true", help="also start every upstream and list its tools")
    check.add_argument("--timeout", type=float, default=20.0)
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    if args.env_file:
        load_env_file(args.env_file)
    loaded = load_policy_or_exit(args.config)
    policy = loaded.policy
    print(f"{args.config}: OK")
    print(
        f"  {len(policy.virtual_keys)} virtual keys, {len(policy.teams)} teams, "
        f"{len(policy.mcp.servers)} MCP servers, {len(policy.providers)} model providers"
    )
    for warning in loaded.warnings:
        print(f"  warning: {warning}")
    if args.connect:
        from gateway_app.counter_store import check_counters

        database_ok = _check_database(policy.gateway.database_url)
        counters_ok = check_counters(policy.counters, args.timeout)
        return max(asyncio.run(_check_connect(policy, args.timeout)), 0 if database_ok and counters_ok else 1)
    return 0


def _check_database(url: str) -> bool:
    """Can the gateway open its database? (SQLite files that do not exist yet are created at start.)"""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway_common.db import make_engine, sqlite_file

    file = sqlite_file(url)
    if file is not None:
        state = "exists" if file.is_file() else "is created at start"
        print(f"  database: {file.resolve()} {state}")
        return True
    engine = make_engine(url)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        print(f"  database: cannot connect ({str(exc).splitlines()[0]})")
        return False
    finally:
        engine.dispose()
    print("  database: connected")
    return True


async def _check_connect(policy: GatewayPolicy, timeout: float) -> int:
    from mcp_gateway.hub import UpstreamHub

    hub = UpstreamHub(policy)
    hub.start()
    try:
        await hub.wait_ready(timeout)
        statuses, bindings, index = hub.status(), dict(hub.bindings), hub.index
    finally:
        await hub.stop()
    failed = 0
    for status in statuses:
        if status["state"] == "disabled":
            print(f"  server {status['name']}: disabled")
            continue
        tools = [b.exposed_name for b in bindings.values() if b.server == status["name"]]
        if tools:
            print(f"  server {status['name']}: {len(tools)} tools: {', '.join(sorted(tools))}")
        else:
            failed += 1
            print(f"  server {status['name']}: NOT READY ({status.get('last_error') or 'no tools'})")
    for collision in index.collisions:
        failed += 1
        print(f"  collision: {collision.describe()}")
    for warning in index.warnings:
        print(f"  warning: {warning}")
    for key in policy.virtual_keys:
        grant = policy.tool_grant(Principal(key.id, key.display_name, key.team, "file"))
        visible = sorted(b.exposed_name for b in bindings.values() if grant.allows(b.server, b.tool))
        shown = ", ".join(visible) if visible else "nothing"
        print(f"  key {key.id} ({grant.source}): {len(visible)} tools: {shown}")
    return 1 if failed else 0
