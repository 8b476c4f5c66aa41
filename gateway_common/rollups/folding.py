"""What each rollup counts of a row, and a batch of rows folded into one change per rollup row.

`groups` folds a batch once by the columns any rollup reads (`GROUPED_BY`) and the UTC day; each
`Rollup` then folds those groups into its own rows (`deltas`). A serving gateway's batch holds a
few keys and tools, so this is a few groups whatever the batch's size: measured at 8 us of writer
CPU per audit row in a 30-row batch, against 20 when each rollup read every row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Table

from gateway_common.rollups.tables import (
    RefusalsDaily,
    SpendDaily,
    ToolCallsDaily,
    ToolKeysMonthly,
    ToolUsageDaily,
    UsageDaily,
)
from policies.outcomes import REFUSALS

Row = Mapping[str, Any]
SOURCES = ("tool_calls", "model_requests")
"""The tables whose rows the rollups count."""
_REFUSED = frozenset(str(outcome) for outcome in REFUSALS)


GROUPED_BY = {
    "tool_calls": ("key_id", "team", "kind", "status", "server", "tool", "client_name", "blocked_by"),
    "model_requests": (
        "key_id",
        "team",
        "provider",
        "served_model",
        "requested_model",
        "status",
        "blocked_by",
    ),
}
"""The columns any rollup of a source reads (besides the timestamp's UTC day): rows alike in these
are folded together once, then each rollup folds those groups."""
SUMMED = {
    "tool_calls": (),
    "model_requests": (
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
    ),
}


class Group:
    """Rows of one batch alike in `GROUPED_BY` and their UTC day: what every rollup needs of them."""

    __slots__ = ("bit", "count", "day", "first", "last", "month", "row", "sums")

    def __init__(self, row: Row, stamp: datetime, summed: tuple[str, ...]) -> None:
        self.row = row
        """The first of them (each rollup's dimensions read its `GROUPED_BY` columns)."""
        self.day = stamp.strftime("%Y-%m-%d")
        self.month = self.day[:7]
        self.bit = 1 << (stamp.day - 1)
        """The day as a month's bit (`ToolKeysMonthly.days`): day n is bit n - 1."""
        self.count = 0
        self.first = self.last = row["timestamp"]
        self.sums = dict.fromkeys(summed, 0)


def groups(source: str, rows: Iterable[Row]) -> list[Group]:
    """The rows folded by `GROUPED_BY` and UTC day; sums add up in the rows' order."""
    found: dict[tuple[Any, ...], Group] = {}
    alike, summed = itemgetter(*GROUPED_BY[source]), SUMMED[source]
    for row in rows:
        stamp = row["timestamp"]
        utc = stamp.astimezone(UTC) if stamp.tzinfo is not None else stamp  # naive: taken as UTC
        key = (utc.year, utc.month, utc.day, alike(row))
        group = found.get(key)
        if group is None:
            group = found[key] = Group(row, utc, summed)
        group.count += 1
        if stamp < group.first:
            group.first = stamp
        elif stamp > group.last:
            group.last = stamp
        sums = group.sums
        for name in summed:
            sums[name] += row[name]
    return list(found.values())


def _get(name: str) -> Callable[[Group], Any]:
    assert any(name in columns for columns in GROUPED_BY.values()), name
    return lambda group: group.row[name]


def _model(group: Group) -> Any:
    served = group.row["served_model"]
    return served if served is not None else group.row["requested_model"]


@dataclass(frozen=True)
class Measure:
    column: str
    fold: str
    """count, sum, min, max or bits (OR)."""
    value: Callable[[Group], Any]


@dataclass(frozen=True)
class Rollup:
    table: Table
    source: str
    dimensions: tuple[tuple[str, Callable[[Group], Any]], ...]
    """(column, value of a group), in the unique index's order."""
    measures: tuple[Measure, ...]
    counts: Callable[[Group], bool] = lambda group: True
    nullable: frozenset[str] = frozenset()
    """Dimensions that may be NULL (matched with IS in SQLite)."""


def _table(model: Any) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def _count(column: str) -> Measure:
    return Measure(column, "count", lambda group: group.count)


def _sum(column: str) -> Measure:
    return Measure(column, "sum", lambda group: group.sums[column])


def _day(group: Group) -> str:
    return group.day


_USAGE = (
    _count("requests"),
    *map(_sum, SUMMED["model_requests"]),
)


def _names_tool(group: Group) -> bool:
    return group.row["tool"] is not None


def _is_refusal(group: Group) -> bool:
    return str(group.row["status"]) in _REFUSED


def _status(group: Group) -> str:
    return str(group.row["status"])


ROLLUPS: tuple[Rollup, ...] = (
    Rollup(
        _table(UsageDaily),
        "model_requests",
        (
            ("day", _day),
            ("key_id", _get("key_id")),
            ("team", _get("team")),
            ("provider", _get("provider")),
            ("model", _model),
        ),
        _USAGE,
        nullable=frozenset({"team", "provider", "model"}),
    ),
    Rollup(
        _table(SpendDaily),
        "model_requests",
        (("day", _day), ("team", _get("team")), ("provider", _get("provider")), ("model", _model)),
        _USAGE,
        nullable=frozenset({"team", "provider", "model"}),
    ),
    Rollup(
        _table(ToolCallsDaily),
        "tool_calls",
        (
            ("day", _day),
            ("key_id", _get("key_id")),
            ("team", _get("team")),
            ("kind", _get("kind")),
            ("status", _status),
        ),
        (_count("calls"),),
        nullable=frozenset({"team"}),
    ),
    Rollup(
        _table(ToolUsageDaily),
        "tool_calls",
        (
            ("day", _day),
            ("server", _get("server")),
            ("tool", _get("tool")),
            ("team", _get("team")),
            ("client_name", _get("client_name")),
        ),
        (
            _count("calls"),
            Measure("ok", "sum", lambda group: group.count if _status(group) == "ok" else 0),
            Measure("refused", "sum", lambda group: group.count if _is_refusal(group) else 0),
            Measure("last_at", "max", lambda group: group.last),
        ),
        _names_tool,
        nullable=frozenset({"server", "team", "client_name"}),
    ),
    Rollup(
        _table(ToolKeysMonthly),
        "tool_calls",
        (
            ("month", lambda group: group.month),
            ("server", _get("server")),
            ("tool", _get("tool")),
            ("key_id", _get("key_id")),
            ("team", _get("team")),
            ("client_name", _get("client_name")),
        ),
        (Measure("days", "bits", lambda group: group.bit),),
        _names_tool,
        nullable=frozenset({"server", "team", "client_name"}),
    ),
    *(
        Rollup(
            _table(RefusalsDaily),
            source,
            (
                ("day", _day),
                ("surface", lambda group, surface=surface: surface),  # type: ignore[misc]
                ("key_id", _get("key_id")),
                ("team", _get("team")),
                ("status", _status),
                ("blocked_by", _get("blocked_by")),
            ),
            (
                _count("refusals"),
                Measure("first_at", "min", lambda group: group.first),
                Measure("last_at", "max", lambda group: group.last),
            ),
            _is_refusal,
            nullable=frozenset({"team", "blocked_by"}),
        )
        for source, surface in (("tool_calls", "tools"), ("model_requests", "models"))
    ),
)


def _fold(kind: str, old: Any, new: Any) -> Any:
    if kind in ("count", "sum"):
        return old + new
    if kind == "bits":
        return old | new
    return min(old, new) if kind == "min" else max(old, new)


def deltas(rollup: Rollup, folded: Iterable[Group]) -> dict[tuple[Any, ...], list[Any]]:
    """The groups folded per rollup row: {dimension values: measure values}."""
    found: dict[tuple[Any, ...], list[Any]] = {}
    dimensions, measures, counts = rollup.dimensions, rollup.measures, rollup.counts
    for group in folded:
        if not counts(group):
            continue
        key = tuple(value(group) for _, value in dimensions)
        values = [measure.value(group) for measure in measures]
        held = found.get(key)
        if held is None:
            found[key] = values
        else:
            for index, measure in enumerate(measures):
                held[index] = _fold(measure.fold, held[index], values[index])
    return found
