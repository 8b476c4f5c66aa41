"""/metrics for the counter store: its availability and the latency of each operation.

Labels are bounded: ``backend`` is memory or redis, ``op`` one of the store's ten
operations (plus ``ping`` at start).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from gateway_common.counters.health import LATENCY_BOUNDS, StoreHealth

PREFIX = "mcp_gateway_"


@dataclass(frozen=True)
class CounterStoreSnapshot:
    backend: str
    available: bool
    failures: int
    outages: int
    latency: list[tuple[str, list[int], float]]
    """Per operation: counts per bucket (last is +Inf) and the sum in seconds."""


def copy_store(health: StoreHealth) -> CounterStoreSnapshot:
    return CounterStoreSnapshot(
        backend=health.backend,
        available=health.available,
        failures=health.failures,
        outages=health.outages,
        latency=[(op, list(cell.counts), cell.sum) for op, cell in list(health.latency.items())],
    )


def counter_store_families(snapshot: CounterStoreSnapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        PREFIX + "counter_store_up",
        "1 while the counter store answers (0 during an outage: counters.on_unavailable applies).",
        labels=["backend"],
    )
    up.add_metric([snapshot.backend], 1.0 if snapshot.available else 0.0)
    yield up
    failures = CounterMetricFamily(
        PREFIX + "counter_store_failures",
        "Counter store operations that failed or timed out.",
        labels=["backend"],
    )
    failures.add_metric([snapshot.backend], snapshot.failures)
    yield failures
    outages = CounterMetricFamily(
        PREFIX + "counter_store_outages", "Times the counter store became unavailable.", labels=["backend"]
    )
    outages.add_metric([snapshot.backend], snapshot.outages)
    yield outages
    latency = HistogramMetricFamily(
        PREFIX + "counter_store_operation_duration",
        "Time of one counter store operation (a Redis round trip with its Lua script).",
        labels=["backend", "op"],
        unit="seconds",
    )
    for op, counts, total in sorted(snapshot.latency):
        running, buckets = 0, []
        for bound, count in zip(LATENCY_BOUNDS, counts, strict=False):
            running += count
            buckets.append((repr(bound), float(running)))
        buckets.append(("+Inf", float(running + counts[-1])))
        latency.add_metric([snapshot.backend, op], buckets, total)
    yield latency
