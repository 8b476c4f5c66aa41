"""The audit writer: a `BatchWriter` for `ToolCall` rows that caps large arguments and results.

Capping and JSON encoding happen in the writer's thread, not on the request path.
An argument or result the database could not store (orjson refuses more than 254
levels of nesting) is replaced by ``{"_unstorable": "<reason>"}`` with its
``*_truncated`` flag set; the rest of the row is stored as usual.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine

from gateway_common.writers.batch import BatchWriter
from gateway_common.writers.rows import Row, describe, is_marker, unstorable
from mcp_gateway.audit.models import ToolCall, ToolCallRow
from policies.config import AuditSettings


def cap_json(value: Any, limit: int) -> tuple[Any, bool]:
    """``value`` itself if its JSON fits in ``limit`` bytes, else a marked preview of it, or the
    ``_unstorable`` marker if it cannot be encoded at all. The flag says whether it was replaced."""
    if value is None:
        return None, False
    try:
        encoded = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)  # as the database will encode it
    except Exception as exc:
        return unstorable(f"cannot be encoded as JSON: {describe(exc)}"), True
    if len(encoded) <= limit:
        return value, False
    preview = encoded[:limit].decode("utf-8", "ignore")
    return {"_truncated": True, "bytes": len(encoded), "preview": preview}, True


class AuditWriter(BatchWriter[ToolCallRow]):
    def __init__(self, engine: Engine, settings: AuditSettings) -> None:
        self.settings = settings
        super().__init__(
            engine,
            ToolCall.__table__,  # type: ignore[attr-defined]
            prepare=self._cap,
            flush_interval=settings.flush_interval_ms / 1000,
            batch_size=settings.batch_size,
            fallback_path=settings.fallback_file,
            name="audit",
        )

    def _cap(self, row: Row) -> Row:
        row = dict(row)
        arguments, row["arguments_truncated"] = cap_json(
            row.get("arguments"), self.settings.max_arguments_bytes
        )
        result, row["result_truncated"] = cap_json(row.get("result"), self.settings.max_result_bytes)
        row["arguments"], row["result"] = arguments, result
        if is_marker(arguments) or is_marker(result):
            self.salvaged += 1
        return row
