"""The spend ledger (`model_requests`): a filtered, paged listing, newest first, and one request."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from gateway_app.queries.base import (
    DEFAULT_PAGE_SIZE,
    Database,
    Page,
    as_utc,
    connect,
    encode_cursor,
    newest_first,
    within,
)
from gateway_app.queries.period import Period
from llm_proxy.ledger import ModelRequest
from policies.outcomes import Outcome

_C = ModelRequest.__table__.c  # type: ignore[attr-defined]

MODEL = func.coalesce(_C.served_model, _C.requested_model)
"""A request's model in reports: the one the provider says it used, else the one asked for."""


@dataclass(frozen=True, slots=True)
class ModelRequestFilter:
    """Which model requests: every field left empty matches all. ``model`` matches the requested or
    the served model's name; ``statuses`` matches any of them."""

    key: str | None = None
    team: str | None = None
    model: str | None = None
    provider: str | None = None
    statuses: tuple[Outcome, ...] = ()
    period: Period = field(default_factory=Period.all_time)

    def apply(self, stmt: Any) -> Any:
        for column, value in ((_C.key_id, self.key), (_C.team, self.team), (_C.provider, self.provider)):
            if value is not None:
                stmt = stmt.where(column == value)
        if self.model is not None:
            stmt = stmt.where(or_(_C.requested_model == self.model, _C.served_model == self.model))
        if len(self.statuses) == 1:
            stmt = stmt.where(_C.status == self.statuses[0].value)
        elif self.statuses:
            stmt = stmt.where(_C.status.in_([status.value for status in self.statuses]))
        return within(stmt, _C.timestamp, self.period)


@dataclass(frozen=True, slots=True)
class ModelRequestRecord:
    """One ledger row (every column)."""

    request_id: str
    timestamp: datetime
    endpoint: str
    key_id: str
    key_name: str
    team: str | None
    provider: str | None
    requested_model: str | None
    served_model: str | None
    route: str | None
    attempts: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    usage_estimated: bool | None
    cost_usd: float
    price_source: str | None
    latency_ms: float
    ttfb_ms: float | None
    stream: bool
    status: str
    http_status: int
    error_type: str | None
    error: str | None
    blocked_by: str | None
    session_id: str | None
    upstream_request_id: str | None
    user_agent: str | None


_NAMES = [f.name for f in fields(ModelRequestRecord)]
_COLUMNS = [_C[name] for name in _NAMES]


def _record(row: Sequence[Any]) -> ModelRequestRecord:
    values = dict(zip(_NAMES, row, strict=True))
    values["timestamp"] = as_utc(values["timestamp"])
    return ModelRequestRecord(**values)


def list_model_requests(
    database: Database,
    filters: ModelRequestFilter | None = None,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    cursor: str | None = None,
) -> Page[ModelRequestRecord]:
    """A page of model requests, newest first (ties in time by id), after ``cursor`` when given.

    Raises `ValueError` for a ``limit`` outside 1..`MAX_PAGE_SIZE` and `InvalidCursor`.
    """
    stmt = (filters or ModelRequestFilter()).apply(select(*_COLUMNS))
    stmt = newest_first(stmt, _C.timestamp, _C.request_id, limit, cursor)
    with connect(database) as connection:
        rows = connection.execute(stmt).all()
    items = [_record(row) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(items[-1].timestamp, items[-1].request_id) if more else None, limit)


def get_model_request(database: Database, request_id: str) -> ModelRequestRecord | None:
    """The model request with this id (the ``gateway-request-id`` its answer carried), or None."""
    with connect(database) as connection:
        row = connection.execute(select(*_COLUMNS).where(_C.request_id == request_id)).first()
    return None if row is None else _record(row)
