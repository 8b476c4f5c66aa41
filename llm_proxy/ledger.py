"""The spend ledger: one `ModelRequest` row per model request, and one `BudgetAlertRecord` per alert.

Rows are written by a `BatchWriter`: batched, off the request path, and kept
when the database refuses them (in a fallback file replayed at the next start).
A graceful stop writes every row; a killed process loses the rows still in
memory (README, "Durability"). Query them with SQLModel, e.g. spend per team
this month::

    from datetime import UTC, datetime
    from sqlmodel import Session, func, select
    from llm_proxy.ledger import ModelRequest
    from gateway_common.db import make_engine

    month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with Session(make_engine("sqlite:///data/gateway.db")) as db:
        stmt = (
            select(ModelRequest.team, func.sum(ModelRequest.cost_usd), func.count())
            .where(ModelRequest.timestamp >= month)
            .group_by(ModelRequest.team)
        )
        print(db.exec(stmt).all())

Timestamps are UTC. Refused requests (rate limits, budgets, permissions, bad
input from a known key) have rows too, with ``status`` (one `Outcome`, see
`STATUSES`), ``error_type`` and ``blocked_by``; requests without a valid key do
not. A stream cut before its final usage is charged an estimate
(``usage_estimated``; see `llm_proxy.usage`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypedDict

from sqlalchemy import Engine, Index, func
from sqlalchemy import select as sa_select
from sqlmodel import Field, SQLModel

from gateway_common.writers.batch import BatchWriter
from gateway_common.writers.process import WriterProcess
from policies.budgeting import SpendRow
from policies.outcomes import Outcome
from policies.providers import LlmProxySettings

STATUSES: tuple[str, ...] = tuple(outcome.value for outcome in Outcome if outcome is not Outcome.TOOL_ERROR)
"""The `Outcome` values a model request's row can have (all but ``tool_error``):

ok: answered (a stream that the provider ended with its error event is upstream_error);
provider_error: the provider answered with an error that belongs to the client (e.g. 400), relayed as is;
denied: model not permitted for the key, no route for it, or unpriced while unpriced models are blocked;
invalid_request: malformed body (400) or body too large (413);
rate_limited: a gateway rate limit refused it (429; blocked_by names it);
budget_exceeded: a budget refused it, spent (402) or fully held by requests in flight (429; blocked_by);
upstream_unavailable: no provider could be reached (connection refused, no key, provider budget);
upstream_error: a provider answered with an error (5xx, 429, overloaded) on every target, or broke
off a stream, or sent an error event in it;
timeout: a provider stayed silent past its timeout_seconds, before answering or mid-stream;
cancelled: the client went away, or the gateway stopped, before the answer ended;
gateway_error: a bug in the gateway (its log has the details)."""


SPEND_INDEX_COLUMNS = (
    "timestamp", "key_id", "team", "provider", "served_model", "requested_model", "status", "cost_usd",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
)  # fmt: skip
"""Everything the spend, top-keys and budget reports read, so they scan this index, not the table."""


class ModelRequest(SQLModel, table=True):
    __tablename__ = "model_requests"
    __table_args__ = (
        Index("ix_model_requests_key_time", "key_id", "timestamp"),
        Index("ix_model_requests_team_time", "team", "timestamp"),
        Index("ix_model_requests_session", "session_id"),
        # For the administrators' listings and reports (gateway_app.queries; revision 0003):
        Index("ix_model_requests_status_time", "status", "timestamp"),
        Index("ix_model_requests_spend", *SPEND_INDEX_COLUMNS),
    )

    request_id: str = Field(
        primary_key=True, max_length=32, description="Gateway request id (gateway-request-id)."
    )
    timestamp: datetime = Field(index=True, description="When the request arrived (UTC).")
    endpoint: str = Field(description="messages or chat.completions.")
    key_id: str
    key_name: str
    team: str | None = None
    provider: str | None = Field(default=None, description="The provider that answered (after fallbacks).")
    requested_model: str | None = Field(
        default=None, description="The model the client asked for (at most 256 characters, then …)."
    )
    served_model: str | None = Field(default=None, description="The model the provider reports it used.")
    route: str | None = Field(default=None, description="The routes[].match that routed it.")
    attempts: int = Field(default=0, description="Providers tried (more than one means fallbacks ran).")
    input_tokens: int = Field(
        default=0,
        description="Uncached input tokens. Estimated (see usage_estimated) only when a stream ended "
        "before the provider reported any: request body bytes / 3 + 1.",
    )
    output_tokens: int = Field(
        default=0,
        description="Output tokens. For a stream cut before its final usage: the UTF-8 bytes of the "
        "output relayed (text, thinking, tool input) / 3, rounded up, at most max_tokens, never less "
        "than the provider had reported.",
    )
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    usage_estimated: bool | None = Field(
        default=None,
        description="True when the stream ended (client gone, provider broke off or timed out, gateway "
        "stopping) before the provider's final usage, so the tokens and cost are the gateway's estimate; "
        "False when they are the provider's; null when nothing answered.",
    )
    cost_usd: float = Field(
        default=0.0, description="From the tokens above (estimated ones too); what budgets were charged."
    )
    price_source: str | None = Field(
        default=None, description="genai-prices:<provider>/<model> or policy:<pattern>."
    )
    latency_ms: float = Field(default=0.0, description="Arrival to last byte, in the gateway.")
    ttfb_ms: float | None = Field(default=None, description="Arrival to the first response byte sent.")
    stream: bool = False
    status: str = Field(
        description="What happened, one of STATUSES (policies.outcomes.Outcome): ok, provider_error, denied, "
        "invalid_request, rate_limited, budget_exceeded, upstream_unavailable, upstream_error, timeout, "
        "cancelled, gateway_error."
    )
    http_status: int = 200
    error_type: str | None = Field(default=None, description="Anthropic error type, e.g. rate_limit_error.")
    error: str | None = Field(default=None, description="What went wrong (at most 1000 characters).")
    blocked_by: str | None = Field(
        default=None, description="rate_limit:<scope>:<metric> or budget:<scope>:<period> that refused it."
    )
    session_id: str | None = Field(
        default=None, description="x-claude-code-session-id, when sent (at most 128 characters)."
    )
    upstream_request_id: str | None = Field(
        default=None, description="The provider's request-id (at most 128 characters)."
    )
    user_agent: str | None = Field(
        default=None, description="The client's User-Agent (at most 128 characters)."
    )


class ModelRequestRow(TypedDict):
    """One `ModelRequest` row as the request path hands it to the writer (a plain dict; the writer
    turns ``timestamp``, epoch seconds here, into a datetime in its own thread). A test keeps the
    keys equal to the table's columns."""

    request_id: str
    timestamp: float
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


class BudgetAlertRecord(SQLModel, table=True):
    __tablename__ = "budget_alerts"

    id: str = Field(primary_key=True, max_length=32)
    timestamp: datetime = Field(index=True)
    kind: str = Field(description="threshold or exhausted.")
    budget: str = Field(description="org, team:<name>, key:<id> or provider:<name>.")
    period: str = Field(description="daily, weekly or monthly.")
    period_label: str = Field(description="2026-11-27, 2026-W48 or 2026-11.")
    threshold: float
    spent_usd: float
    limit_usd: float
    resets_at: datetime
    message: str


def _prepare(row: dict[str, Any]) -> dict[str, Any]:
    """Runs where the rows are stored (off the event loop): the request path hands over the arrival
    time in epoch seconds."""
    stamp = row["timestamp"]
    if isinstance(stamp, int | float):
        row = dict(row, timestamp=datetime.fromtimestamp(stamp, UTC))
    return row


class LedgerWriter(BatchWriter[ModelRequestRow]):
    def __init__(
        self, engine: Engine, settings: LlmProxySettings, *, process: WriterProcess | None = None
    ) -> None:
        super().__init__(
            engine,
            ModelRequest.__table__,  # type: ignore[attr-defined]
            prepare=_prepare,
            flush_interval=settings.ledger_flush_interval_ms / 1000,
            batch_size=settings.ledger_batch_size,
            fallback_path=settings.ledger_fallback_file,
            name="ledger",
            process=process,
        )


class AlertWriter(BatchWriter[dict[str, Any]]):
    def __init__(
        self, engine: Engine, settings: LlmProxySettings, *, process: WriterProcess | None = None
    ) -> None:
        fallback = settings.ledger_fallback_file.replace("ledger", "alerts")
        if fallback == settings.ledger_fallback_file:
            fallback += ".alerts"
        super().__init__(
            engine,
            BudgetAlertRecord.__table__,  # type: ignore[attr-defined]
            flush_interval=0.2,
            fallback_path=fallback,
            name="alerts",
            process=process,
        )


# -- queries used at start-up --------------------------------------------------------------------


def spend_since(engine: Engine, since: datetime) -> list[SpendRow]:
    """Spend per (key, team, provider) recorded since ``since`` (for rebuilding budget counters)."""
    table = ModelRequest.__table__  # type: ignore[attr-defined]
    c = table.c
    stmt = (
        sa_select(c.key_id, c.team, c.provider, func.sum(c.cost_usd))
        .where(c.timestamp >= since, c.cost_usd > 0)
        .group_by(c.key_id, c.team, c.provider)
    )
    with engine.connect() as conn:
        return [SpendRow(row[0], row[1], row[2], float(row[3] or 0.0)) for row in conn.execute(stmt)]


def alerts_since(engine: Engine, since: datetime) -> list[tuple[str, str, str, str]]:
    """(kind, budget, period, period label) of alerts recorded since ``since``."""
    table = BudgetAlertRecord.__table__  # type: ignore[attr-defined]
    c = table.c
    stmt = sa_select(c.kind, c.budget, c.period, c.period_label).where(c.timestamp >= since)
    with engine.connect() as conn:
        return [(row[0], row[1], row[2], row[3]) for row in conn.execute(stmt)]
