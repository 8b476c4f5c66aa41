"""The audit writer: a `BatchWriter` for `ToolCall` rows that caps large arguments and results.

Capping and JSON encoding happen in the writer's thread, not on the request path.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine

from policies.config import AuditSettings

from ..batch_writer import BatchWriter, Row
from .models import ToolCall


def cap_json(value: Any, limit: int) -> tuple[Any, bool]:
    """``value`` itself if its JSON fits in ``limit`` bytes, else a marked preview of it."""
    if value is None:
        return None, False
    encoded = orjson.dumps(value, default=str)
    if len(encoded) <= limit:
        return value, False
    preview = encoded[:limit].decode("utf-8", "ignore")
    return {"_truncated": True, "bytes": len(encoded), "preview": preview}, True


class AuditWriter(BatchWriter):
    def __init__(self, engine: Engine, settings: AuditSettings) -> None:
        self.settings = settings
        super().__init__(
            engine,
            ToolCall.__table__,  # type: ignore[attr-defined]
            prepare=self._cap,
            flush_interval=settings.flush_interval_ms / 1000,
            batch_size=settings.batch_size,
            fallback_path=settings.fallback_file,
        )

    def _cap(self, row: Row) -> Row:
        row = dict(row)
        row["arguments"], row["arguments_truncated"] = cap_json(
            row.get("arguments"), self.settings.max_arguments_bytes
        )
        row["result"], row["result_truncated"] = cap_json(row.get("result"), self.settings.max_result_bytes)
        return row
