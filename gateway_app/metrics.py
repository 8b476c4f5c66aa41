"""GET /metrics: Prometheus metrics of this process.

Calls and model requests are counted as their audit and ledger rows are
submitted (`gateway_app.metrics_recording`, a writer ``observer`` each); slowly
changing values (upstream states and restarts, writer queues and row counts,
sessions, rows deleted by retention) are read when /metrics is scraped. A
scrape copies everything on the event loop (`GatewayMetrics.snapshot`, about
0.3 ms per 1,000 series) and turns the copy into text in a worker thread
(`gateway_app.metrics_families`), so even 10,000 series never hold up
requests. Each app has its own registry (its process, platform and GC
collectors), so several apps in one process (tests) never share a series.

Who may read /metrics follows ``gateway.health_details`` (as /readyz's detail does): a
request with an admin token (either role), or, unless the setting is ``token``, a
peer on this host; a token that is not an admin token gets 401, anyone else 403.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway_app.admin_guesses import TooManyWrongTokens
from gateway_app.health import NotAnAdminToken, _may_see_details, admin_token_refusal, writers
from gateway_app.metrics_counters import copy_store
from gateway_app.metrics_families import Snapshot, copy_cells, copy_histograms, families
from gateway_app.metrics_recording import ModelRequestMetrics, Refusals, ToolCallMetrics
from gateway_app.retention import TABLES
from mcp_gateway.runtime import GatewayRuntime
from policies import GatewayPolicy
from policies.gateway_settings import MetricsSettings

if TYPE_CHECKING:
    from gateway_app.retention import RetentionTask
    from gateway_common.counters.health import StoreHealth
    from llm_proxy.runtime import LlmRuntime


class GatewayMetrics:
    """The recorders the writers feed, what a scrape reads, and this app's registry."""

    def __init__(self, settings: MetricsSettings, policy: GatewayPolicy) -> None:
        """``policy``: the one to name models by until `attach` (then the runtime's current one)."""
        self.settings = settings
        self._policy = policy
        self.refusals = Refusals()
        self.tools = ToolCallMetrics(settings.max_series, self.refusals)
        self.models = ModelRequestMetrics(settings.max_series, self.refusals, self.current_policy)
        self.runtime: GatewayRuntime | None = None
        self.llm: LlmRuntime | None = None
        self.retention: RetentionTask | None = None
        self.counters: StoreHealth | None = None
        self.process = CollectorRegistry()
        """This process's CPU, memory, file descriptors, GC and Python version."""
        ProcessCollector(registry=self.process)
        PlatformCollector(registry=self.process)
        GCCollector(registry=self.process)

    def current_policy(self) -> GatewayPolicy:
        runtime = self.runtime
        return self._policy if runtime is None else runtime.state.current.policy

    def attach(
        self,
        runtime: GatewayRuntime,
        llm: LlmRuntime | None,
        retention: RetentionTask | None = None,
        counters: StoreHealth | None = None,
    ) -> None:
        """Start counting (the writers' observers) and reading live state; `detach` undoes it."""
        self.runtime, self.llm, self.retention, self.counters = runtime, llm, retention, counters
        runtime.audit.observer = self.tools.observe
        if llm is not None:
            llm.ledger.observer = self.models.observe

    def detach(self) -> None:
        if self.runtime is not None:
            self.runtime.audit.observer = None
        if self.llm is not None:
            self.llm.ledger.observer = None
        self.runtime = self.llm = self.retention = None
        self.counters = None

    def snapshot(self) -> Snapshot:
        """Everything a scrape shows, copied (call it on the event loop, where the counting happens)."""
        runtime, retention = self.runtime, self.retention
        tools, models = self.tools, self.models
        return Snapshot(
            tool_calls=copy_cells(tools.calls),
            tool_latency=copy_histograms(tools.latency),
            model_calls=copy_cells(models.calls),
            model_latency=copy_histograms(models.latency),
            refusals=list(self.refusals.counts.items()),
            overflow={
                "tool_calls": tools.calls.overflowed,
                "tool_call_duration": tools.latency.overflowed,
                "model_requests": models.calls.overflowed,
                "model_request_duration": models.latency.overflowed,
            },
            upstreams=runtime.hub.status() if runtime is not None else None,
            sessions=len(runtime.sessions) if runtime is not None else None,
            writers=(
                {name: w.health() for name, w in writers(runtime, self.llm).items()}
                if runtime is not None
                else {}
            ),
            deleted={name: retention.deleted.get(name, 0) for name in TABLES}
            if retention is not None
            else None,
            counters=copy_store(self.counters) if self.counters is not None else None,
        )

    def render(self, snapshot: Snapshot | None = None) -> bytes:
        """The text of a scrape (from ``snapshot``, or one taken now). Safe in any thread given a snapshot."""
        return generate_latest(_Scrape(snapshot or self.snapshot(), self.process))

    async def render_async(self) -> bytes:
        return await asyncio.to_thread(self.render, self.snapshot())


class _Scrape:
    """What `generate_latest` reads for one scrape: the snapshot's families, then the process's."""

    def __init__(self, snapshot: Snapshot, process: CollectorRegistry) -> None:
        self._snapshot = snapshot
        self._process = process

    def collect(self) -> Iterator[Metric]:
        yield from families(self._snapshot)
        yield from self._process.collect()


async def metrics_endpoint(request: Request) -> Response:
    runtime: GatewayRuntime | None = getattr(request.state, "runtime", None)
    metrics: GatewayMetrics | None = getattr(request.app.state, "metrics", None)
    if runtime is None or metrics is None:
        return JSONResponse({"error": "not_found", "message": "Metrics are off"}, status_code=404)
    try:
        allowed = _may_see_details(request, runtime)
    except (NotAnAdminToken, TooManyWrongTokens) as exc:
        return admin_token_refusal(exc)
    if not allowed:
        return JSONResponse(
            {
                "error": "forbidden",
                "message": "Metrics need an admin token, or a peer on this host "
                "(unless gateway.health_details is token)",
            },
            status_code=403,
        )
    return Response(await metrics.render_async(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
