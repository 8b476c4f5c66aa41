"""``mcp-gateway db``: the schema's migrations (``upgrade``, ``current``, ``history``) and
``rebuild-rollups``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from gateway_app.cli_base import database_url_of


def add_db_commands(sub: Any) -> None:
    db = sub.add_parser("db", help="the database schema: upgrade it, show its revision, list revisions")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    for name, text in (
        ("upgrade", "create the schema, or bring it to this release's (under a database lock)"),
        ("current", "the database's revision (exit status 1 unless it is this release's)"),
        ("history", "this release's revisions, oldest first (with a database: which is its revision)"),
        (
            "rebuild-rollups",
            "count every audit and ledger row again into the report rollups (after a bulk import by "
            "hand; days whose rows retention pruned are lost from them)",
        ),
    ):
        cmd = db_sub.add_parser(name, help=text)
        cmd.add_argument("--config", help="policy file: its gateway.database_url")
        cmd.add_argument("--database-url", help="overrides the policy file's gateway.database_url")
        cmd.set_defaults(func=cmd_db)


def cmd_db(args: argparse.Namespace) -> int:
    """The schema's migrations: ``upgrade`` (creates or upgrades, under the migration lock),
    ``current`` (exit 1 unless at this release's head), ``history``; and ``rebuild-rollups``."""
    from gateway_app.database import SchemaError, describe, rebuild_rollups, schema_state, upgrade_database
    from gateway_app.migrations.runner import head, history
    from gateway_common.db import make_engine, sqlite_file

    if args.db_command == "history" and args.config is None and args.database_url is None:
        return _print_history(history(), head(), None)
    url = database_url_of(args)
    file = sqlite_file(url)
    if args.db_command != "upgrade" and file is not None and not file.is_file():
        print(f"mcp-gateway: no database at {file.resolve()} ({url})", file=sys.stderr)
        return 1
    engine = make_engine(url)
    try:
        if args.db_command == "upgrade":
            result = upgrade_database(engine)
            where = describe(engine)
            if result.stamped:
                print(f"{where}: made before migrations, recognised as revision {result.stamped}; stamped")
            if result.applied:
                print(f"{where}: upgraded from {result.before or 'empty'} to {result.after}")
            else:
                print(f"{where}: already at revision {result.after} (this release's head)")
            return 0
        if args.db_command == "rebuild-rollups":
            counted = rebuild_rollups(engine)
            print(
                f"{describe(engine)}: rollups rebuilt from {counted['tool_calls']} tool calls and "
                f"{counted['model_requests']} model requests"
            )
            return 0
        state = schema_state(engine)
        if args.db_command == "history":
            return _print_history(history(), state.head, state.revision)
        if state.up_to_date:
            print(f"{describe(engine)}: revision {state.revision} (this release's head)")
            return 0
        print(
            f"{describe(engine)}: {state.describe()}; this release's head is {state.head}: "
            "run `mcp-gateway db upgrade` (`serve` does it at start unless gateway.database_migrations "
            "is manual)"
        )
        return 1
    except SchemaError as exc:
        print(f"mcp-gateway: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _print_history(scripts: Sequence[Any], newest: str, current: str | None) -> int:
    for script in scripts:
        marks = ["head"] if script.revision == newest else []
        marks += ["current"] if script.revision == current else []
        shown = f" ({', '.join(marks)})" if marks else ""
        print(f"{script.revision}{shown}  {script.doc}")
    return 0
