"""Retention: delete audit, ledger and alert rows older than the policy keeps them.

``gateway.audit.retention_days`` (tool_calls), ``llm_proxy.ledger_retention_days``
(model_requests) and ``llm_proxy.alert_retention_days`` (budget_alerts); absent
keeps a table forever (the default). `RetentionTask` prunes once a day inside
`serve` (the first time a minute after the start); ``mcp-gateway audit prune``
does it by hand (`gateway_app.cli_prune`). Rows go in batches of
`BATCH_ROWS`, each its own short transaction, so the writers (and readers) are
never held up for long; several gateways on one database may prune at once.

The ledger and the alerts keep at least 32 days: at start the gateway rebuilds
the current month's budget spend and fired alerts from them.

The daily rollups of the rows (`gateway_common.rollups`) are not pruned: a few rows per day
and combination, they keep the reports' history (spend, tools, limits per day) after the
rows themselves are gone, while listings and ``audit show`` end at the retention.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Engine, Table, delete, func, select

from llm_proxy.ledger import BudgetAlertRecord, ModelRequest
from mcp_gateway.audit.models import ToolCall
from policies import GatewayPolicy
from policies.counters import Clock

logger = logging.getLogger("mcp_gateway.retention")

BATCH_ROWS = 1000
DAY = 86_400.0


@dataclass(frozen=True)
class Retained:
    """A table with a retention setting."""

    name: str
    table: Table
    key: str
    setting: str
    min_days: int
    days: Callable[[GatewayPolicy], int | None]

    @property
    def primary_key(self) -> Column[str]:
        return self.table.c[self.key]

    @property
    def stamp(self) -> Column[datetime]:
        return self.table.c["timestamp"]


TABLES: dict[str, Retained] = {
    "tool_calls": Retained(
        "tool_calls",
        ToolCall.__table__,  # type: ignore[attr-defined]
        "id",
        "gateway.audit.retention_days",
        1,
        lambda policy: policy.gateway.audit.retention_days,
    ),
    "model_requests": Retained(
        "model_requests",
        ModelRequest.__table__,  # type: ignore[attr-defined]
        "request_id",
        "llm_proxy.ledger_retention_days",
        32,
        lambda policy: policy.llm_proxy.ledger_retention_days,
    ),
    "budget_alerts": Retained(
        "budget_alerts",
        BudgetAlertRecord.__table__,  # type: ignore[attr-defined]
        "id",
        "llm_proxy.alert_retention_days",
        32,
        lambda policy: policy.llm_proxy.alert_retention_days,
    ),
}

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY, "": DAY}


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w`` or a plain number of days."""
    match = _AGE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an age like 90d, 12h or 2w")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def count_older(engine: Engine, retained: Retained, cutoff: datetime) -> int:
    query = select(func.count()).select_from(retained.table).where(retained.stamp < cutoff)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def delete_batch(engine: Engine, retained: Retained, cutoff: datetime, limit: int = BATCH_ROWS) -> int:
    """Delete up to ``limit`` of the oldest rows before ``cutoff`` in one transaction; how many went."""
    oldest = select(retained.primary_key).where(retained.stamp < cutoff).order_by(retained.stamp).limit(limit)
    with engine.begin() as conn:
        result = conn.execute(delete(retained.table).where(retained.primary_key.in_(oldest)))
        return int(result.rowcount or 0)


def prune_table(engine: Engine, retained: Retained, cutoff: datetime, *, limit: int = BATCH_ROWS) -> int:
    """Every row before ``cutoff``, batch by batch (for the CLI; `RetentionTask` yields between batches)."""
    total = 0
    while True:
        deleted = delete_batch(engine, retained, cutoff, limit)
        total += deleted
        if deleted < limit:
            return total


def cutoffs(policy: GatewayPolicy, now: float) -> dict[str, datetime]:
    """The tables the policy limits, each with the time before which its rows go."""
    found = {}
    for name, retained in TABLES.items():
        days = retained.days(policy)
        if days is not None:
            found[name] = datetime.fromtimestamp(now - days * DAY, UTC)
    return found


class RetentionTask:
    """The daily prune inside `serve`: reads the current policy each time, logs what it deleted, and
    never stops for a failure (it is logged; the next day's run tries again)."""

    def __init__(
        self,
        engine: Engine,
        policy: Callable[[], GatewayPolicy],
        clock: Clock,
        *,
        interval: float = DAY,
        first_delay: float = 60.0,
        pause: float = 0.01,
        limit: int = BATCH_ROWS,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self.interval = interval
        self.first_delay = first_delay
        self.pause = pause
        self.limit = limit
        self.sleep = sleep
        self.deleted: dict[str, int] = {}
        """Rows deleted so far, per table (for /metrics)."""
        self.runs = 0

    async def run(self) -> None:
        await self.sleep(self.first_delay)
        while True:
            await self.prune_once()
            await self.sleep(self.interval)

    async def prune_once(self) -> dict[str, int]:
        """One pass over every table with a retention setting; rows deleted per table."""
        self.runs += 1
        done: dict[str, int] = {}
        for name, cutoff in cutoffs(self.policy(), self.clock()).items():
            retained = TABLES[name]
            total = 0
            try:
                while True:
                    deleted = await asyncio.to_thread(delete_batch, self.engine, retained, cutoff, self.limit)
                    total += deleted
                    self.deleted[name] = self.deleted.get(name, 0) + deleted
                    if deleted < self.limit:
                        break
                    await self.sleep(self.pause)  # let the writers in between batches
            except Exception as exc:
                logger.warning(
                    "retention: could not prune %s (%s: %s); %d rows deleted before that, next try in %g s",
                    name,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                    total,
                    self.interval,
                )
            done[name] = total
            if total:
                logger.info(
                    "retention: deleted %d %s rows older than %s (%s)",
                    total,
                    name,
                    cutoff.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    retained.setting,
                )
        return done
