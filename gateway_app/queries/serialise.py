"""Query results as JSON and as flat CSV rows: the one wire shape the CLI's ``--json``/``--csv`` and
the admin API share.

Every result is a dataclass (pages, reports, rows); JSON is orjson's rendering of it (datetimes in
ISO 8601 with their UTC offset). A CSV row is one row dataclass flattened: a nested record's fields
inline, lists and mappings as JSON text.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson


def to_json(result: Any, *, indent: bool = False) -> bytes:
    """The result as JSON (UTF-8)."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(result, option=option)


def to_plain(result: Any) -> Any:
    """The result as plain JSON values (dicts, lists, strings, numbers), e.g. for a JSON response."""
    return orjson.loads(to_json(result))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return to_json(value).decode()


def flatten(row: Any) -> dict[str, Any]:
    """A row dataclass as one flat mapping of CSV cells (nested dataclasses inline)."""
    cells: dict[str, Any] = {}
    for field in dataclasses.fields(row):
        value = getattr(row, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            cells.update(flatten(value))
        else:
            cells[field.name] = _cell(value)
    return cells


def csv_header(row_type: type) -> list[str]:
    """The CSV columns of a row dataclass (nested dataclasses inline)."""
    names: list[str] = []
    hints = typing.get_type_hints(row_type)
    for field in dataclasses.fields(row_type):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            names += csv_header(hint)
        else:
            names.append(field.name)
    return names


def csv_rows(rows: list[Any], row_type: type) -> Iterator[list[Any]]:
    """A header, then one line per row (a header alone when there are no rows)."""
    header = csv_header(row_type)
    yield header
    for row in rows:
        cells = flatten(row)
        yield [cells[name] for name in header]
