"""GET /metrics: Prometheus metrics of this process, from its own registry.

Calls and model requests are counted as their audit and ledger rows are
submitted (`gateway_app.metrics_recording`, a writer ``observer`` each); slowly
changing values (upstream states and restarts, writer queues and row counts,
sessions, rows deleted by retention) are read when /metrics is scraped, by
`GatewayCollector`. Each app has its own `CollectorRegistry`, so several apps in
one process (tests) never share a series.

Who may read /metrics follows ``gateway.health_details`` (as /readyz's detail does): a
request with an admin token (either role), or, unless the setting is ``token``, a
peer on this host; a token that is not an admin token gets 401, anyone else 403.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway_app.health import _may_see_details, _Unauthorized, writers
from gateway_app.metrics_recording import (
    OUTCOME_INDEX,
    TOKEN_KINDS,
    Histogram,
    ModelRequestMetrics,
    Refusals,
    Table,
    ToolCallMetrics,
)
from gateway_app.retention import TABLES
from mcp_gateway.runtime import GatewayRuntime
from policies import GatewayPolicy
from policies.config import MetricsSettings

if TYPE_CHECKING:
    from gateway_app.retention import RetentionTask
    from llm_proxy.runtime import LlmRuntime

PREFIX = "mcp_gateway_"
UPSTREAM_STATES = ("starting", "ready", "backoff", "stopped", "disabled")
_OUTCOMES = tuple(OUTCOME_INDEX)


def _version() -> str:
    try:
        return metadata.version("mcp-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _histograms(
    name: str, doc: str, labels: list[str], table: Table[tuple[Histogram, Histogram]], which: int
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(PREFIX + name, doc, labels=labels, unit="seconds")
    for key, pair in list(table.items()):
        histogram = pair[which]
        running, buckets = 0, []
        for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
            running += count
            buckets.append((repr(bound), float(running)))
        buckets.append(("+Inf", float(running + histogram.counts[-1])))
        if running + histogram.counts[-1]:
            family.add_metric([_text(v) for v in key], buckets, histogram.sum)
    return family


class GatewayMetrics:
    """The registry of one app, the recorders the writers feed, and the scrape-time collector."""

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
        self.registry = CollectorRegistry()
        self.registry.register(GatewayCollector(self))
        ProcessCollector(namespace="", registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def current_policy(self) -> GatewayPolicy:
        runtime = self.runtime
        return self._policy if runtime is None else runtime.state.current.policy

    def attach(
        self, runtime: GatewayRuntime, llm: LlmRuntime | None, retention: RetentionTask | None = None
    ) -> None:
        """Start counting (the writers' observers) and reading live state; `detach` undoes it."""
        self.runtime, self.llm, self.retention = runtime, llm, retention
        runtime.audit.observer = self.tools.observe
        if llm is not None:
            llm.ledger.observer = self.models.observe

    def detach(self) -> None:
        if self.runtime is not None:
            self.runtime.audit.observer = None
        if self.llm is not None:
            self.llm.ledger.observer = None
        self.runtime = self.llm = self.retention = None

    def render(self) -> bytes:
        return generate_latest(self.registry)


class GatewayCollector:
    """Builds the families at scrape time from the recorders' tables and the live runtime."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # families vary with what runs; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        yield from self._tool_calls(metrics.tools)
        yield from self._model_requests(metrics.models)
        refusals = CounterMetricFamily(
            PREFIX + "refusals",
            "Calls and model requests refused by a rate limit or budget, by the limit that refused.",
            labels=["api", "limit", "scope", "metric"],
        )
        for labels, count in list(metrics.refusals.counts.items()):
            refusals.add_metric(list(labels), count)
        yield refusals
        overflow = CounterMetricFamily(
            PREFIX + "metric_overflow",
            "Observations counted in a metric's <overflow> series (gateway.metrics.max_series reached).",
            labels=["metric"],
        )
        tables: dict[str, Table[Any]] = {
            "tool_calls": metrics.tools.calls,
            "tool_call_duration": metrics.tools.latency,
            "model_requests": metrics.models.calls,
            "model_request_duration": metrics.models.latency,
        }
        for name, table in tables.items():
            overflow.add_metric([name], table.overflowed)
        yield overflow
        info = GaugeMetricFamily(
            PREFIX + "build_info", "This gateway's version.", labels=["version", "python"]
        )
        info.add_metric([_version(), platform.python_version()], 1)
        yield info
        if metrics.runtime is not None:
            yield from self._live(metrics.runtime, metrics.llm)
        if metrics.retention is not None:
            deleted = CounterMetricFamily(
                PREFIX + "retention_deleted_rows",
                "Rows deleted by the daily retention prune, per table.",
                labels=["table"],
            )
            for table_name in sorted(TABLES):
                deleted.add_metric([table_name], metrics.retention.deleted.get(table_name, 0))
            yield deleted

    @staticmethod
    def _tool_calls(tools: ToolCallMetrics) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            PREFIX + "tool_calls",
            "tools/call requests by key, team, server, tool and outcome (the audit log's status).",
            labels=["key", "team", "server", "tool", "outcome"],
        )
        for (key, team, server, tool), counts in list(tools.calls.items()):
            for outcome, count in zip(_OUTCOMES, counts, strict=True):
                if count:
                    calls.add_metric([key, _text(team), server, tool, outcome], count)
        yield calls
        labels = ["server", "tool"]
        yield _histograms(
            "tool_call_duration",
            "tools/call time in the gateway, arrival to answer.",
            labels,
            tools.latency,
            0,
        )
        yield _histograms(
            "tool_call_upstream_duration",
            "tools/call time spent waiting on the upstream server.",
            labels,
            tools.latency,
            1,
        )

    @staticmethod
    def _model_requests(models: ModelRequestMetrics) -> Iterator[Metric]:
        labels = ["key", "team", "provider", "model"]
        requests = CounterMetricFamily(
            PREFIX + "model_requests",
            "Model requests by key, team, provider, model and outcome (the ledger's status).",
            labels=[*labels, "outcome"],
        )
        tokens = CounterMetricFamily(
            PREFIX + "model_tokens", "Tokens of model requests, by kind.", labels=[*labels, "kind"]
        )
        cost = CounterMetricFamily(
            PREFIX + "model_cost_usd",
            "Cost of model requests in USD (what budgets are charged).",
            labels=labels,
        )
        width = len(_OUTCOMES)
        for key, cell in list(models.calls.items()):
            values = [_text(v) for v in key]
            for outcome, count in zip(_OUTCOMES, cell[:width], strict=True):
                if count:
                    requests.add_metric([*values, outcome], count)
            for kind, count in zip(TOKEN_KINDS, cell[width : width + len(TOKEN_KINDS)], strict=True):
                tokens.add_metric([*values, kind], count)
            cost.add_metric(values, cell[-1])
        yield requests
        yield tokens
        yield cost
        where = ["provider", "model"]
        yield _histograms(
            "model_request_duration",
            "Model request time in the gateway, arrival to the last byte.",
            where,
            models.latency,
            0,
        )
        yield _histograms(
            "model_request_ttfb",
            "Model request time to the first byte of the answer (mostly the provider's).",
            where,
            models.latency,
            1,
        )

    @staticmethod
    def _live(runtime: GatewayRuntime, llm: LlmRuntime | None) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            PREFIX + "upstream_up", "1 while the upstream server is ready.", labels=["server"]
        )
        state = GaugeMetricFamily(
            PREFIX + "upstream_state",
            "The upstream's state (1 for the current one).",
            labels=["server", "state"],
        )
        restarts = CounterMetricFamily(
            PREFIX + "upstream_restarts", "Times the upstream was restarted.", labels=["server"]
        )
        tools = GaugeMetricFamily(PREFIX + "upstream_tools", "Tools the upstream lists.", labels=["server"])
        for status in runtime.hub.status():
            name, current = status["name"], status["state"]
            up.add_metric([name], 1.0 if current == "ready" else 0.0)
            for option in UPSTREAM_STATES:
                state.add_metric([name, option], 1.0 if option == current else 0.0)
            restarts.add_metric([name], status.get("restarts", 0))
            tools.add_metric([name], status.get("tools", 0))
        yield from (up, state, restarts, tools)
        sessions = GaugeMetricFamily(PREFIX + "mcp_sessions", "Open 2025-11-25 sessions (Mcp-Session-Id).")
        sessions.add_metric([], len(runtime.sessions))
        yield sessions
        yield from _writer_families(writers(runtime, llm))


def _writer_families(found: dict[str, Any]) -> Iterator[Metric]:
    gauges = {
        "pending": GaugeMetricFamily(
            PREFIX + "writer_queue_depth", "Rows waiting to be written.", labels=["writer"]
        ),
        "healthy": GaugeMetricFamily(
            PREFIX + "writer_healthy",
            "1 while the writer runs and the database takes its rows (/readyz fails otherwise).",
            labels=["writer"],
        ),
    }
    counters = {
        "written": ("writer_rows_written", "Rows written to the database."),
        "diverted_to_fallback": ("writer_rows_diverted", "Rows kept in the fallback file instead."),
        "refused_rows": ("writer_rows_refused", "Rows the database refused (kept in the fallback file)."),
        "stored_with_marker": (
            "writer_rows_salvaged",
            "Rows stored with a marker for a value it could not take.",
        ),
        "restarts": ("writer_restarts", "Times the writer's background task was restarted."),
        "redacted_values": ("audit_redacted_values", "Secrets the audit log replaced by a marker."),
        "content_not_logged": ("audit_content_not_logged", "Audit rows stored without arguments and result."),
    }
    families = {
        field: CounterMetricFamily(PREFIX + name, doc, labels=["writer"])
        for field, (name, doc) in counters.items()
    }
    for name, writer in found.items():
        health = writer.health()
        gauges["pending"].add_metric([name], health["pending"])
        healthy = health["stopped"] is None and health["last_error"] is None
        gauges["healthy"].add_metric([name], 1.0 if healthy else 0.0)
        for field, family in families.items():
            if field in health:
                family.add_metric([name], health[field])
    yield from gauges.values()
    yield from (family for family in families.values() if family.samples)


async def metrics_endpoint(request: Request) -> Response:
    runtime: GatewayRuntime | None = getattr(request.state, "runtime", None)
    metrics: GatewayMetrics | None = getattr(request.app.state, "metrics", None)
    if runtime is None or metrics is None:
        return JSONResponse({"error": "not_found", "message": "Metrics are off"}, status_code=404)
    try:
        allowed = _may_see_details(request, runtime)
    except _Unauthorized:
        return JSONResponse(
            {
                "error": "unauthorized",
                "message": "Not an admin token: send 'Authorization: Bearer <admin token>'",
            },
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="mcp-gateway-admin"'},
        )
    if not allowed:
        return JSONResponse(
            {
                "error": "forbidden",
                "message": "Metrics need an admin token, or a peer on this host "
                "(unless gateway.health_details is token)",
            },
            status_code=403,
        )
    return Response(metrics.render(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
