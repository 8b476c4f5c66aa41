"""What the reading commands (``audit``, ``report``) share: their database, period and output flags,
and how they print: rich tables for people, ``--json`` and ``--csv`` for scripts.

Tables go to standard output; notes for people (no rows, how to get the next page) go to standard
error, so a table piped into a file holds only the table. Piped, a table is as wide as its rows
(nothing wrapped or cut); on a terminal it fits the terminal.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from gateway_app.queries import Period, PeriodError, csv_rows, parse_moment, parse_period, to_json
from gateway_app.queries.serialise import flatten

Format = Literal["table", "json", "csv"]


# -- flags ----------------------------------------------------------------------------------------


def moment(text: str) -> datetime:
    try:
        return parse_moment(text, datetime.now(UTC), flag="--now")
    except PeriodError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_database_flags(parser: argparse.ArgumentParser, *, budgets: bool = False) -> None:
    group = parser.add_argument_group("database (read only: never created, never upgraded)")
    extra = " and its budgets (required)" if budgets else ""
    group.add_argument("--config", metavar="FILE", help=f"policy file: its gateway.database_url{extra}")
    group.add_argument(
        "--database-url", metavar="URL", help="the gateway's database; overrides the policy file's"
    )


def add_period_flags(parser: argparse.ArgumentParser, default: str | None) -> None:
    shown = f"the last {default}" if default else "all time"
    group = parser.add_argument_group(f"period, in UTC (default: {shown})")
    group.add_argument(
        "--since", metavar="WHEN", help="from this moment: 15m, 2h, 7d, 2w ago, or an ISO date or timestamp"
    )
    group.add_argument("--until", metavar="WHEN", help="up to (not including) this moment; as --since")
    group.add_argument(
        "--month",
        nargs="?",
        const="this",
        metavar="YYYY-MM|this|last",
        help="a calendar month (from the 1st, 00:00 UTC); alone: this month",
    )
    group.add_argument(
        "--week",
        nargs="?",
        const="this",
        metavar="YYYY-Www|this|last",
        help="an ISO week (from Monday, 00:00 UTC), e.g. 2026-W48; alone: this week",
    )
    add_now_flag(group)


def add_now_flag(parser: Any) -> None:
    parser.add_argument(
        "--now",
        type=moment,
        metavar="TIMESTAMP",
        help="take this ISO timestamp (UTC without a zone) as now, for relative periods and the "
        "budgets' current periods: to reproduce a report later",
    )


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        help="print the whole result as one JSON document (the admin API's answer)",
    )
    group.add_argument(
        "--csv", dest="output", action="store_const", const="csv", help="print the rows as CSV, with a header"
    )
    parser.set_defaults(output="table")


def now_of(args: argparse.Namespace) -> datetime:
    found: datetime | None = getattr(args, "now", None)
    return found if found is not None else datetime.now(UTC)


def period_of(args: argparse.Namespace, default: str | None) -> Period:
    try:
        return parse_period(
            now=now_of(args),
            since=args.since,
            until=args.until,
            month=args.month,
            week=args.week,
            default=default,
        )
    except PeriodError as exc:
        raise SystemExit(f"mcp-gateway: {exc}") from None


def engine_of(args: argparse.Namespace, policy: Any = None) -> Any:
    """The gateway's database, read only: never created, never upgraded (`open_database`)."""
    from gateway_app.cli_base import engine_for

    return engine_for(args, policy, read_only=True)


# -- output ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    value: Callable[[Any], Any]
    numeric: bool = False


def console() -> Console:
    width = None if sys.stdout.isatty() else 100_000
    return Console(width=width, soft_wrap=False, highlight=False, emoji=False, markup=False)


def note(text: str) -> None:
    print(text, file=sys.stderr)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def usd(value: float) -> str:
    return f"${value:,.4f}"


def show(renderable: Any) -> None:
    """Print through rich, without the spaces rich pads a table's last column with."""
    screen = console()
    with screen.capture() as captured:
        screen.print(renderable)
    lines = captured.get().splitlines()
    sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))


def print_table(rows: Sequence[Any], columns: Sequence[Column], *, title: str | None = None) -> None:
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in columns:
        table.add_column(column.header, justify="right" if column.numeric else "left", overflow="fold")
    for row in rows:
        table.add_row(*(cell(column.value(row)) for column in columns))
    if title:
        show(title)
    show(table)


def print_fields(record: Any, blocks: dict[str, Any] | None = None) -> None:
    """One record as ``name  value`` lines, then each of ``blocks`` (arguments, result) as indented
    JSON under its name."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in flatten(record).items():
        table.add_row(name, "-" if value == "" else str(value))
    show(table)
    for name, value in (blocks or {}).items():
        sys.stdout.write(f"\n{name}:\n{to_json(value, indent=True).decode()}\n")


def print_json(result: Any) -> None:
    sys.stdout.buffer.write(to_json(result) + b"\n")


def print_csv(rows: Iterable[list[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerows(rows)


def emit(
    result: Any,
    rows: Sequence[Any],
    row_type: type,
    columns: Sequence[Column],
    output: Format,
    *,
    title: str | None = None,
    empty: str = "nothing matches",
) -> None:
    """One result in the chosen format: the whole result as JSON; its rows as CSV or a table."""
    if output == "json":
        print_json(result)
    elif output == "csv":
        print_csv(csv_rows(list(rows), row_type))
    elif rows:
        print_table(rows, columns, title=title)
    else:
        note(f"{title + ': ' if title else ''}{empty}")
