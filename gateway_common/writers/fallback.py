"""The fallback file: rows the database would not take, kept as JSON lines until the next start.

It takes any row: a value it cannot encode becomes ``{"_unstorable": "<reason>"}``.
At start-up `replay` puts its rows into the database (in chunks, a refused chunk
row by row), forgets the ones already there, and keeps in the file every line it
could not read or the database still refuses, so nothing is dropped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
from sqlalchemy import Engine, Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from gateway_common.writers.rows import (
    Row,
    already_present,
    describe,
    encodable,
    holds_datetimes,
    store_rows,
    unstorable,
)

REPLAY_CHUNK = 500


@dataclass
class Replayed:
    written: int = 0
    present: int = 0
    """Rows already in the table (written before they reached the file, e.g. a retried batch)."""
    kept: list[bytes] = field(default_factory=list)
    """Lines that stay in the file: unreadable, refused, or not tried while the database was away."""
    problem: str | None = None


def line_for(row: Row) -> bytes:
    """One JSON line for any row; values that cannot be encoded become the marker."""
    try:
        return orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"
    except Exception as exc:
        reason = f"could not be encoded for the fallback file: {describe(exc)}"
        fixed = {str(k): v if encodable(v) else unstorable(reason) for k, v in row.items()}
        return orjson.dumps(fixed, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"


class FallbackFile:
    def __init__(self, path: str | Path, table: Table) -> None:
        self.path = Path(path)
        self.table = table
        self._date_columns = tuple(c.name for c in table.columns if holds_datetimes(c))
        self._defaults = {
            c.name: c.default.arg for c in table.columns if isinstance(c.default, ScalarElementColumnDefault)
        }
        """Column defaults, for lines written before their column existed: one batch mixing such
        lines with newer ones would otherwise store the default over the newer lines' values."""

    def append(self, rows: list[Row]) -> None:
        """Append and sync; raises OSError if the file cannot be written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as fh:
            fh.write(b"".join(line_for(row) for row in rows))
            fh.flush()
            os.fsync(fh.fileno())

    def revive(self, line: bytes) -> Row:
        row: Row = orjson.loads(line)
        for name, value in self._defaults.items():
            row.setdefault(name, value)
        for name in self._date_columns:
            if isinstance(row.get(name), str):
                row[name] = datetime.fromisoformat(row[name])
        return row

    def read(self) -> list[bytes]:
        """The file's lines; none if it does not exist (raises OSError if it cannot be read)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        return [line for line in self.path.read_bytes().splitlines() if line.strip()]

    def replay(self, engine: Engine, lines: list[bytes]) -> Replayed:
        """Put ``lines`` into the database; report what went in and what must stay in the file."""
        result = Replayed()
        for start in range(0, len(lines), REPLAY_CHUNK):
            rows: list[Row] = []
            source: dict[int, bytes] = {}
            for line in lines[start : start + REPLAY_CHUNK]:
                try:
                    row = self.revive(line)
                except Exception as exc:
                    result.kept.append(line)
                    result.problem = f"unreadable line: {describe(exc)}"
                    continue
                source[id(row)] = line
                rows.append(row)
            stored = store_rows(engine, self.table, rows)
            result.written += stored.written
            for row, refusal in stored.refused:
                if isinstance(refusal, IntegrityError) and already_present(engine, self.table, row):
                    result.present += 1
                else:
                    result.kept.append(source[id(row)])
                    result.problem = describe(refusal)
            if stored.unavailable:
                result.kept += [source[id(row)] for row in stored.unavailable]
                result.kept += lines[start + REPLAY_CHUNK :]
                result.problem = stored.error
                break
        return result

    def keep_only(self, lines: list[bytes]) -> None:
        """Replace the file by ``lines`` (atomically), or remove it when there are none."""
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        spare = self.path.with_name(self.path.name + ".tmp")
        spare.write_bytes(b"".join(line + b"\n" for line in lines))
        os.replace(spare, self.path)
