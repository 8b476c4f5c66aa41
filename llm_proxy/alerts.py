"""Budget alerts: a database row, a warning log line and an optional webhook POST for each.

`AlertSink.dispatch` runs on the request path, so it only queues: the row goes to
a `BatchWriter`, the webhook to a background task. A webhook that fails or hangs
is logged and dropped; it never delays or fails a model request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from llm_proxy.ledger import AlertWriter
from policies.budgeting import BudgetAlert

logger = logging.getLogger("llm_proxy.budgets")


def alert_payload(alert: BudgetAlert) -> dict[str, Any]:
    counter = alert.counter
    return {
        "type": "budget_alert",
        "kind": alert.kind,
        "budget": counter.scope.ident,
        "scope": counter.scope.kind,
        "name": counter.scope.name or None,
        "period": counter.period,
        "period_label": counter.label,
        "threshold": alert.threshold,
        "spent_usd": round(alert.spent, 6),
        "limit_usd": counter.limit,
        "resets_at": counter.end.isoformat(),
        "at": alert.at.isoformat(),
        "message": alert.message,
    }


class AlertSink:
    def __init__(self, writer: AlertWriter, webhook: str | None, timeout: float) -> None:
        self.writer = writer
        self.webhook = webhook
        self.timeout = timeout
        self.sent = 0
        self.failed = 0
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.writer.start()
        if self.webhook:
            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)

    def dispatch(self, alerts: list[BudgetAlert]) -> None:
        for alert in alerts:
            logger.warning("BUDGET ALERT: %s", alert.message)
            counter = alert.counter
            self.writer.submit(
                {
                    "id": uuid.uuid4().hex,
                    "timestamp": alert.at,
                    "kind": alert.kind,
                    "budget": counter.scope.ident,
                    "period": counter.period,
                    "period_label": counter.label,
                    "threshold": alert.threshold,
                    "spent_usd": alert.spent,
                    "limit_usd": counter.limit,
                    "resets_at": counter.end,
                    "message": alert.message,
                }
            )
            if self._http is not None:
                task = asyncio.create_task(self._post(alert_payload(alert)), name="budget-alert-webhook")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _post(self, payload: dict[str, Any]) -> None:
        assert self._http is not None and self.webhook is not None
        where = urlsplit(self.webhook).netloc  # the path may hold a token: log the host only
        try:
            response = await self._http.post(self.webhook, json=payload)
            if response.status_code >= 400:
                self.failed += 1
                logger.warning("budget alert webhook at %s answered HTTP %d", where, response.status_code)
            else:
                self.sent += 1
        except httpx.HTTPError as exc:
            self.failed += 1
            logger.warning("budget alert webhook at %s failed: %s", where, type(exc).__name__)

    async def aclose(self, grace: float = 5.0) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._http is not None:
            await self._http.aclose()
        await self.writer.aclose()
