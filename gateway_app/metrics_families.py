"""The metric families of /metrics, built from a `Snapshot`: plain data copied on the event loop, so
that turning it into text (about 10 ms per 1,000 series) can run in a worker thread."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from gateway_app.metrics_counters import CounterStoreSnapshot, counter_store_families
from gateway_app.metrics_recording import OUTCOME_INDEX, TOKEN_KINDS, Histogram, Labels, Table

PREFIX = "mcp_gateway_"
UPSTREAM_STATES = ("starting", "ready", "backoff", "stopped", "disabled")
_OUTCOMES = tuple(OUTCOME_INDEX)

Buckets = tuple[tuple[float, ...], list[int], float]
"""A histogram's bounds, counts per bucket and sum, copied."""


def copy_cells(table: Table[Any]) -> list[tuple[Labels, Any]]:
    return [(labels, list(cell)) for labels, cell in list(table.items())]


def copy_histograms(
    table: Table[tuple[Histogram, Histogram]],
) -> list[tuple[Labels, tuple[Buckets, Buckets]]]:
    return [
        (labels, tuple((h.bounds, list(h.counts), h.sum) for h in pair))  # type: ignore[misc]
        for labels, pair in list(table.items())
    ]


@dataclass(frozen=True)
class Snapshot:
    tool_calls: list[tuple[Labels, list[int]]]
    tool_latency: list[tuple[Labels, tuple[Buckets, Buckets]]]
    model_calls: list[tuple[Labels, list[Any]]]
    model_latency: list[tuple[Labels, tuple[Buckets, Buckets]]]
    refusals: list[tuple[tuple[str, ...], int]]
    overflow: dict[str, int]
    upstreams: list[dict[str, Any]] | None
    """`UpstreamHub.status` (None before the lifespan started)."""
    sessions: int | None
    writers: dict[str, dict[str, Any]]
    """Each row writer's `health()`."""
    deleted: dict[str, int] | None
    """Rows deleted by the retention task, per table (None without one)."""
    counters: CounterStoreSnapshot | None = None
    """The counter store's availability and operation latency (None before the lifespan started)."""


def families(snapshot: Snapshot) -> Iterator[Metric]:
    yield from _tool_calls(snapshot)
    yield from _model_requests(snapshot)
    refusals = CounterMetricFamily(
        PREFIX + "refusals",
        "Calls and model requests refused by a rate limit or budget, by the limit that refused.",
        labels=["api", "limit", "scope", "metric"],
    )
    for labels, count in snapshot.refusals:
        refusals.add_metric(list(labels), count)
    yield refusals
    overflow = CounterMetricFamily(
        PREFIX + "metric_overflow",
        "Observations counted in a metric's <overflow> series (gateway.metrics.max_series reached).",
        labels=["metric"],
    )
    for name, count in snapshot.overflow.items():
        overflow.add_metric([name], count)
    yield overflow
    info = GaugeMetricFamily(PREFIX + "build_info", "This gateway's version.", labels=["version", "python"])
    info.add_metric([_version(), platform.python_version()], 1)
    yield info
    if snapshot.upstreams is not None:
        yield from _upstreams(snapshot.upstreams)
    if snapshot.sessions is not None:
        sessions = GaugeMetricFamily(PREFIX + "mcp_sessions", "Open 2025-11-25 sessions (Mcp-Session-Id).")
        sessions.add_metric([], snapshot.sessions)
        yield sessions
    yield from _writer_families(snapshot.writers)
    if snapshot.deleted is not None:
        deleted = CounterMetricFamily(
            PREFIX + "retention_deleted_rows",
            "Rows deleted by the daily retention prune, per table.",
            labels=["table"],
        )
        for table_name, count in sorted(snapshot.deleted.items()):
            deleted.add_metric([table_name], count)
        yield deleted
    if snapshot.counters is not None:
        yield from counter_store_families(snapshot.counters)


def _version() -> str:
    try:
        return metadata.version("mcp-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _histograms(
    name: str, doc: str, labels: list[str], rows: list[tuple[Labels, tuple[Buckets, Buckets]]], which: int
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(PREFIX + name, doc, labels=labels, unit="seconds")
    for key, pair in rows:
        bounds, counts, total = pair[which]
        running, buckets = 0, []
        for bound, count in zip(bounds, counts, strict=False):
            running += count
            buckets.append((repr(bound), float(running)))
        buckets.append(("+Inf", float(running + counts[-1])))
        if running + counts[-1]:
            family.add_metric([_text(v) for v in key], buckets, total)
    return family


def _tool_calls(snapshot: Snapshot) -> Iterator[Metric]:
    calls = CounterMetricFamily(
        PREFIX + "tool_calls",
        "tools/call requests by key, team, server, tool and outcome (the audit log's status).",
        labels=["key", "team", "server", "tool", "outcome"],
    )
    for (key, team, server, tool), counts in snapshot.tool_calls:
        for outcome, count in zip(_OUTCOMES, counts, strict=True):
            if count:
                calls.add_metric([key, _text(team), server, tool, outcome], count)
    yield calls
    labels = ["server", "tool"]
    yield _histograms(
        "tool_call_duration",
        "tools/call time in the gateway, arrival to answer.",
        labels,
        snapshot.tool_latency,
        0,
    )
    yield _histograms(
        "tool_call_upstream_duration",
        "tools/call time spent waiting on the upstream server.",
        labels,
        snapshot.tool_latency,
        1,
    )


def _model_requests(snapshot: Snapshot) -> Iterator[Metric]:
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
    for key, cell in snapshot.model_calls:
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
        snapshot.model_latency,
        0,
    )
    yield _histograms(
        "model_request_ttfb",
        "Model request time to the first byte of the answer (mostly the provider's).",
        where,
        snapshot.model_latency,
        1,
    )


def _upstreams(statuses: list[dict[str, Any]]) -> Iterator[Metric]:
    up = GaugeMetricFamily(PREFIX + "upstream_up", "1 while the upstream server is ready.", labels=["server"])
    state = GaugeMetricFamily(
        PREFIX + "upstream_state",
        "The upstream's state (1 for the current one).",
        labels=["server", "state"],
    )
    restarts = CounterMetricFamily(
        PREFIX + "upstream_restarts", "Times the upstream was restarted.", labels=["server"]
    )
    tools = GaugeMetricFamily(PREFIX + "upstream_tools", "Tools the upstream lists.", labels=["server"])
    for status in statuses:
        name, current = status["name"], status["state"]
        up.add_metric([name], 1.0 if current == "ready" else 0.0)
        for option in UPSTREAM_STATES:
            state.add_metric([name, option], 1.0 if option == current else 0.0)
        restarts.add_metric([name], status.get("restarts", 0))
        tools.add_metric([name], status.get("tools", 0))
    yield from (up, state, restarts, tools)


def _writer_families(found: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    gauges = {
        "pending": GaugeMetricFamily(
            PREFIX + "writer_queue_depth", "Rows waiting to be written.", labels=["writer"]
        ),
        "healthy": GaugeMetricFamily(
            PREFIX + "writer_healthy",
            "1 while the writer runs and the database takes its rows (/readyz fails otherwise).",
            labels=["writer"],
        ),
        "writer_process_behind": GaugeMetricFamily(
            PREFIX + "writer_process_behind",
            "1 while the writer process has held one of the writer's batches past its patience "
            "(every core busy); the gateway then stores the next batches itself.",
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
    stored_here = CounterMetricFamily(
        PREFIX + "writer_batches_stored_in_gateway",
        "Batches the gateway stored itself while the writer process was behind.",
        labels=["writer"],
    )
    process_restarts = CounterMetricFamily(
        PREFIX + "writer_process_restarts",
        "Times the writer process died and was replaced (one process serves every writer).",
        labels=["writer"],
    )
    for name, health in found.items():
        gauges["pending"].add_metric([name], health["pending"])
        healthy = health["stopped"] is None and health["last_error"] is None
        gauges["healthy"].add_metric([name], 1.0 if healthy else 0.0)
        process = health.get("writer_process")
        if process is not None:  # written from the writer process, not a thread
            gauges["writer_process_behind"].add_metric(
                [name], 1.0 if health["writer_process_behind"] else 0.0
            )
            stored_here.add_metric([name], health["batches_stored_here"])
            process_restarts.add_metric([name], process["restarts"])
        for field, family in families.items():
            if field in health:
                family.add_metric([name], health[field])
    yield from gauges.values()
    yield from (family for family in (*families.values(), stored_here, process_restarts) if family.samples)
