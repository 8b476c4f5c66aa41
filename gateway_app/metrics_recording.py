"""Counting tool calls and model requests for /metrics, from the audit and ledger rows as they are submitted.

Each front door already hands one row per call or request to its writer; the
writer's ``observer`` passes it here (`ToolCallMetrics.observe`,
`ModelRequestMetrics.observe`) on the request path, so this is plain dict and
list arithmetic: no locks, no prometheus_client objects (they are built only
when /metrics is read, `gateway_app.metrics`). About a microsecond per row.

Label values come only from bounded sets, never from free client text:

- ``key`` and ``team``: the authenticated key (ids from the policy or the key store);
- ``server`` and ``tool``: a tool of the catalogue (its exposed name); a name that
  resolved to no tool counts as ``tool="<unknown>"`` with an empty server;
- ``model``: the requested name when the policy spells it out (an exact route, a route
  target, a provider's ``models``, an exact ``allowed_models`` entry or price), else the
  model id of the genai-prices entry that priced it (``claude-sonnet-4-5`` for
  ``claude-sonnet-4-5-20250929``), else ``<other>``;
- ``provider``: a provider of the policy; ``outcome``: `policies.outcomes.OUTCOMES`;
- refusals: the kind, scope kind and metric of ``blocked_by``, without the scope's name.

Every table keeps at most ``max_series`` label sets; further ones are counted in
one overflow set whose labels are ``<overflow>`` (the outcome is kept), and
``overflowed`` counts how often that happened.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from policies import GatewayPolicy
from policies.budgeting import PERIODS
from policies.limits import RateLimit
from policies.outcomes import OUTCOMES, Outcome
from policies.routing import is_glob

OVERFLOW = "<overflow>"
UNKNOWN_TOOL = "<unknown>"
OTHER = "<other>"

OUTCOME_INDEX = {outcome: index for index, outcome in enumerate(OUTCOMES)}
_GATEWAY_ERROR = OUTCOME_INDEX[Outcome.GATEWAY_ERROR.value]
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
_TOKENS = len(OUTCOMES)
"""Where a model cell's token counts start (after one count per outcome); the cost follows them."""
_COST = _TOKENS + len(TOKEN_KINDS)

TOOL_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TTFB_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

LIMIT_KINDS = frozenset({"rate_limit", "budget"})
SCOPE_KINDS = frozenset({"key", "team", "org", "provider"})
LIMIT_METRICS = frozenset({*RateLimit.model_fields, *PERIODS})

Labels = tuple[Any, ...]
Cell = TypeVar("Cell")


class Histogram:
    """Counts per bucket (the last is +Inf) and the sum, in seconds; cumulated only when rendered."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds


class Table(dict[Labels, Cell]):
    """Label set -> cell, with at most ``cap`` label sets plus the overflow set."""

    def __init__(self, cap: int, make: Callable[[], Cell], overflow: Labels) -> None:
        super().__init__()
        self.cap = cap
        self.make = make
        self.overflow = overflow
        self.overflowed = 0

    def admit(self, labels: Labels) -> Cell:
        """The cell of a label set seen for the first time (the overflow cell once the table is full)."""
        if len(self) >= self.cap:
            self.overflowed += 1
            labels = self.overflow
            cell = self.get(labels)
            if cell is not None:
                return cell
        cell = self[labels] = self.make()
        return cell


class Refusals:
    """Refusals by the limit that refused: (api, kind, scope kind, metric) parsed from ``blocked_by``."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str, str], int] = {}
        self._parsed: dict[str, tuple[str, str, str]] = {}

    def count(self, api: str, blocked_by: str) -> None:
        parsed = self._parsed.get(blocked_by)
        if parsed is None:
            parsed = self._parse(blocked_by)
            if len(self._parsed) >= 4096:
                self._parsed.clear()
            self._parsed[blocked_by] = parsed
        labels = (api, *parsed)
        self.counts[labels] = self.counts.get(labels, 0) + 1

    @staticmethod
    def _parse(blocked_by: str) -> tuple[str, str, str]:
        """``rate_limit:key:<id>:requests_per_minute`` -> (rate_limit, key, requests_per_minute);
        ``budget:org:monthly`` -> (budget, org, monthly); anything unexpected becomes ``<other>``."""
        parts = blocked_by.split(":")
        kind = parts[0] if parts[0] in LIMIT_KINDS else OTHER
        scope = parts[1] if len(parts) > 2 and parts[1] in SCOPE_KINDS else OTHER
        metric = parts[-1] if len(parts) > 2 and parts[-1] in LIMIT_METRICS else OTHER
        return kind, scope, metric


class ToolCallMetrics:
    """tools/call counts per (key, team, server, tool) and outcome; latencies per (server, tool)."""

    def __init__(self, cap: int, refusals: Refusals) -> None:
        overflow = (OVERFLOW,) * 4
        self.calls: Table[list[int]] = Table(cap, lambda: [0] * len(OUTCOMES), overflow)
        self.latency: Table[tuple[Histogram, Histogram]] = Table(
            cap, lambda: (Histogram(TOOL_BUCKETS), Histogram(TOOL_BUCKETS)), overflow[:2]
        )
        self.refusals = refusals

    def observe(self, row: Mapping[str, Any]) -> None:
        """One audit row (`mcp_gateway.audit.models.ToolCallRow`)."""
        server = row["server"]
        if server is None:
            server, tool = "", UNKNOWN_TOOL
        else:
            tool = row["exposed_name"]
        calls = self.calls
        labels = (row["key_id"], row["team"], server, tool)
        counts = calls.get(labels)
        if counts is None:
            counts = calls.admit(labels)
        counts[OUTCOME_INDEX.get(row["status"], _GATEWAY_ERROR)] += 1
        where = (server, tool)
        latency = self.latency.get(where)
        if latency is None:
            latency = self.latency.admit(where)
        latency[0].observe(row["latency_ms"] / 1000)
        upstream = row["upstream_latency_ms"]
        if upstream is not None:
            latency[1].observe(upstream / 1000)
        blocked_by = row["blocked_by"]
        if blocked_by is not None:
            self.refusals.count("mcp", blocked_by)


def spelled_models(policy: GatewayPolicy) -> frozenset[str]:
    """Model names the policy writes out exactly (bounded by the file, not by clients)."""
    names: set[str] = set()
    for route in policy.routes:
        if not is_glob(route.match):
            names.add(route.match)
        names.update(target.model for target in route.targets() if target.model is not None)
    for provider in policy.providers:
        names.update(provider.models)
    for allowed in (
        *(k.allowed_models for k in policy.virtual_keys),
        *(t.allowed_models for t in policy.teams),
    ):
        names.update(model for model in allowed or () if not is_glob(model))
    names.update(model for model in policy.pricing.models if not is_glob(model))
    return frozenset(names)


class ModelRequestMetrics:
    """Model requests, tokens and cost per (key, team, provider, model); latencies per (provider, model)."""

    def __init__(self, cap: int, refusals: Refusals, policy: Callable[[], GatewayPolicy]) -> None:
        overflow = (OVERFLOW,) * 4
        self.calls: Table[list[Any]] = Table(cap, lambda: [0] * _COST + [0.0], overflow)
        self.latency: Table[tuple[Histogram, Histogram]] = Table(
            cap, lambda: (Histogram(MODEL_BUCKETS), Histogram(TTFB_BUCKETS)), overflow[:2]
        )
        self.refusals = refusals
        self._policy = policy
        self._labels_of: object = None
        self._spelled: frozenset[str] = frozenset()
        self._labels: dict[tuple[str | None, str | None], str] = {}

    def model_label(self, requested: str | None, price_source: str | None) -> str:
        policy = self._policy()
        if policy is not self._labels_of:
            self._labels_of, self._spelled = policy, spelled_models(policy)
            self._labels.clear()
        key = (requested, price_source)
        label = self._labels.get(key)
        if label is None:
            if requested is not None and requested in self._spelled:
                label = requested
            elif price_source is not None and price_source.startswith("genai-prices:"):
                label = price_source.partition("/")[2] or OTHER
            else:
                label = OTHER
            if len(self._labels) >= 4096:
                self._labels.clear()
            self._labels[key] = label
        return label

    def observe(self, row: Mapping[str, Any]) -> None:
        """One ledger row (`llm_proxy.ledger.ModelRequestRow`)."""
        model = self.model_label(row["requested_model"], row["price_source"])
        provider = row["provider"]
        calls = self.calls
        labels = (row["key_id"], row["team"], provider, model)
        cell = calls.get(labels)
        if cell is None:
            cell = calls.admit(labels)
        cell[OUTCOME_INDEX.get(row["status"], _GATEWAY_ERROR)] += 1
        cell[_TOKENS] += row["input_tokens"]
        cell[_TOKENS + 1] += row["output_tokens"]
        cell[_TOKENS + 2] += row["cache_read_tokens"]
        cell[_TOKENS + 3] += row["cache_write_tokens"]
        cell[_COST] += row["cost_usd"]
        where = (provider, model)
        latency = self.latency.get(where)
        if latency is None:
            latency = self.latency.admit(where)
        latency[0].observe(row["latency_ms"] / 1000)
        ttfb = row["ttfb_ms"]
        if ttfb is not None:
            latency[1].observe(ttfb / 1000)
        blocked_by = row["blocked_by"]
        if blocked_by is not None:
            self.refusals.count("model", blocked_by)
