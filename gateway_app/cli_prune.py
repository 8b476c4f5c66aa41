"""``mcp-gateway audit prune``: delete rows older than their retention, by hand (`gateway_app.retention`)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta

from gateway_app.retention import TABLES, count_older, parse_age, prune_table

DESCRIPTION = """\
Delete tool_calls, model_requests and budget_alerts rows older than the policy keeps them
(gateway.audit.retention_days, llm_proxy.ledger_retention_days, llm_proxy.alert_retention_days;
a table without a setting is left alone), or older than --older-than. The ledger and the alerts
keep at least 32 days whatever --older-than says (budgets are rebuilt from them at start).
Rows go in batches of 1000, each its own transaction: safe while gateways run.
"""


def _age(text: str) -> timedelta:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_audit_prune(audit: argparse.ArgumentParser) -> None:
    """The options of ``audit prune`` (the `audit` command dispatches ``prune`` to `cmd_prune`)."""
    prune = audit.add_argument_group("audit prune: " + DESCRIPTION.split("\n", 1)[0])
    prune.add_argument("--older-than", type=_age, help="prune: e.g. 90d, 12h, 2w, one age for every table")
    prune.add_argument(
        "--table", action="append", choices=sorted(TABLES), help="prune: only this table (repeatable)"
    )
    prune.add_argument("--dry-run", action="store_true", help="prune: count the rows instead of deleting")


def cmd_prune(args: argparse.Namespace) -> int:
    from gateway_app.cli_base import engine_for, load_policy_or_exit

    config = getattr(args, "config", None)
    args.config, args.database_url = config, getattr(args, "database_url", None)
    policy = load_policy_or_exit(config).policy if config else None
    names = args.table or list(TABLES)
    now = time.time()
    plan: dict[str, tuple[datetime, str]] = {}
    for name in names:
        retained = TABLES[name]
        if args.older_than is not None:
            if args.older_than < timedelta(days=retained.min_days):
                why = f"{name} keeps at least {retained.min_days} days (budgets are rebuilt from it)"
                if args.table:  # asked for by name: say no
                    print(f"refused: {why}", file=sys.stderr)
                    return 2
                print(f"{name}: left alone: {why}")
                continue
            plan[name] = (datetime.fromtimestamp(now, UTC) - args.older_than, "--older-than")
            continue
        days = retained.days(policy) if policy is not None else None
        if days is None:
            print(f"{name}: kept forever ({retained.setting} is not set)")
            continue
        plan[name] = (datetime.fromtimestamp(now - days * 86_400, UTC), f"{retained.setting}: {days}")
    if not plan:
        print(
            "nothing to prune: give --older-than, or set a retention in the policy (--config)",
            file=sys.stderr,
        )
        return 2
    engine = engine_for(args, policy, read_only=True)
    try:
        for name, (cutoff, why) in plan.items():
            stamp = cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
            if args.dry_run:
                done = f"would delete {count_older(engine, TABLES[name], cutoff)}"
            else:
                done = f"deleted {prune_table(engine, TABLES[name], cutoff)}"
            print(f"{name}: {done} rows older than {stamp} ({why})")
    finally:
        engine.dispose()
    return 0
