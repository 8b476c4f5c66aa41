"""GET /metrics: parses with Prometheus' own parser, moves by exactly the calls made, keeps client text
out of its labels, bounds its label sets, and is readable only where /readyz's detail is.

The whole app with its lifespan (a stdio test upstream, the mock model API on loopback), reached in
memory so each request can come from a chosen peer address.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from gateway_app.app import create_app
from gateway_app.metrics import GatewayMetrics
from llm_proxy.ledger import ModelRequest
from policies import load_policy_text
from policies.gateway_settings import MetricsSettings
from policies.secrets import hash_secret
from tests.conftest import upstream_stdio
from tests.llm_proxy.conftest import mock_api, settings_for

ALICE = "mgw_metrics_alice_0123456789"
BOB = "mgw_metrics_bob_0123456789"
ADMIN = "adm-metrics-0123456789abcdef"
LOCAL = ("127.0.0.1", 5000)
REMOTE = ("203.0.113.7", 40000)
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
Clients = Callable[[tuple[str, int] | None], httpx2.AsyncClient]


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_ADMIN", ADMIN)
    monkeypatch.setenv("TEST_PROVIDER_KEY", "sk-provider-metrics-0000")


def config(upstream: str, **gateway: Any) -> dict[str, Any]:
    return {
        "gateway": gateway,
        "teams": [{"name": "eng"}, {"name": "ops"}],
        "virtual_keys": [
            {"id": "alice", "team": "eng", "secret_sha256": hash_secret(ALICE)},
            {
                "id": "bob",
                "team": "ops",
                "secret_sha256": hash_secret(BOB),
                "rate_limit": {"tool_calls_per_minute": 2},
            },
        ],
        "admin": {"tokens": [{"id": "ops", "role": "auditor", "secret_env": "METRICS_ADMIN"}]},
        "mcp": {
            "servers": [upstream_stdio("alpha")],
            "virtual_key_permissions": {"alice": "*", "bob": {"alpha": ["echo"]}},
        },
        "providers": [
            {"name": "primary", "kind": "anthropic", "base_url": upstream, "api_key_env": "TEST_PROVIDER_KEY"}
        ],
        "routes": [
            {"match": "claude-*", "provider": "primary"},
            {"match": "fast", "provider": "primary", "model": "claude-haiku-4-5"},
        ],
    }


@contextlib.asynccontextmanager
async def gateway(cfg: dict[str, Any], tmp_path: Path) -> AsyncIterator[tuple[Any, Clients]]:
    app = create_app(settings_for(cfg, tmp_path))
    async with app.router.lifespan_context(app) as maybe_state:
        state: dict[str, Any] = dict(maybe_state or {})
        assert await state["runtime"].hub.wait_ready(30)

        def client(peer: tuple[str, int] | None) -> httpx2.AsyncClient:
            async def with_state(scope: Any, receive: Any, send: Any) -> None:
                await app({**scope, "state": dict(state), "client": peer}, receive, send)

            transport = httpx2.ASGITransport(app=with_state)
            return httpx2.AsyncClient(transport=transport, base_url="http://localhost", timeout=30)

        yield state, client


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def scrape(clients: Clients, state: dict[str, Any]) -> tuple[str, Samples]:
    await state["runtime"].audit.flush()  # the writer counts come from rows already written
    await state["llm"].ledger.flush()
    async with clients(LOCAL) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text, parse(response.text)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def call_tool(
    http: httpx2.AsyncClient, key: str, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": ENVELOPE},
    }
    headers = {
        "Authorization": f"Bearer {key}",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": name,
        "Accept": "application/json, text/event-stream",
    }
    response = await http.post("/mcp", json=body, headers=headers)
    reply: dict[str, Any] = response.json()
    return reply


async def ask_model(http: httpx2.AsyncClient, key: str, model: str) -> int:
    body = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "hello there"}]}
    response = await http.post(
        "/v1/messages", json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}
    )
    return response.status_code


@pytest.mark.anyio
async def test_counters_move_by_exactly_the_calls_made(tmp_path: Path) -> None:
    unknown = f"no-such-tool-{uuid.uuid4().hex}"
    bogus_model = f"gpt-nope-{uuid.uuid4().hex}"
    async with mock_api() as (_, upstream), gateway(config(upstream), tmp_path) as (state, clients):
        _, before = await scrape(clients, state)
        async with clients(LOCAL) as http:
            for _ in range(3):
                assert "result" in await call_tool(http, ALICE, "alpha__echo", {"text": "hi"})
            for _ in range(2):
                reply = await call_tool(http, ALICE, "alpha__fail", {})
                assert reply["result"]["isError"] is True
            assert "error" in await call_tool(http, ALICE, unknown, {})
            for _ in range(2):
                assert "result" in await call_tool(http, BOB, "alpha__echo", {"text": "hi"})
            assert (
                "rate"
                in (await call_tool(http, BOB, "alpha__echo", {"text": "hi"}))["error"]["message"].lower()
            )
            assert "error" in await call_tool(http, BOB, "alpha__add", {"a": 1, "b": 2})  # hidden from bob
            assert [await ask_model(http, ALICE, "claude-haiku-4-5-20251001") for _ in range(2)] == [200, 200]
            assert await ask_model(http, ALICE, "fast") == 200
            assert await ask_model(http, BOB, bogus_model) == 404
        text, after = await scrape(clients, state)
        ledger = await _ledger(state)

    calls = "mcp_gateway_tool_calls_total"
    expected_calls = {
        ("alice", "eng", "alpha", "alpha__echo", "ok"): 3,
        ("alice", "eng", "alpha", "alpha__fail", "tool_error"): 2,
        ("alice", "eng", "", "<unknown>", "denied"): 1,
        ("bob", "ops", "alpha", "alpha__echo", "ok"): 2,
        ("bob", "ops", "alpha", "alpha__echo", "rate_limited"): 1,
        ("bob", "ops", "alpha", "alpha__add", "denied"): 1,
    }
    names = ("key", "team", "server", "tool", "outcome")
    moved = {
        tuple(dict(labels)[n] for n in names): value - before.get((name, labels), 0.0)
        for (name, labels), value in after.items()
        if name == calls and value != before.get((name, labels), 0.0)
    }
    assert moved == expected_calls
    duration = "mcp_gateway_tool_call_duration_seconds_count"
    assert delta(before, after, duration, server="alpha", tool="alpha__echo") == 6
    upstream_count = "mcp_gateway_tool_call_upstream_duration_seconds_count"
    upstream_calls = delta(before, after, upstream_count, server="alpha", tool="alpha__echo")
    assert upstream_calls == 5  # not the refused one
    limit = {"api": "mcp", "limit": "rate_limit", "scope": "key", "metric": "tool_calls_per_minute"}
    assert delta(before, after, "mcp_gateway_refusals_total", **limit) == 1
    assert delta(before, after, "mcp_gateway_writer_rows_written_total", writer="audit") == 10
    assert delta(before, after, "mcp_gateway_writer_rows_written_total", writer="ledger") == 4

    requests = "mcp_gateway_model_requests_total"
    haiku = {"key": "alice", "team": "eng", "provider": "primary", "model": "claude-haiku-4-5"}
    alias = {**haiku, "model": "fast"}
    assert delta(before, after, requests, **haiku, outcome="ok") == 2  # the price data's model id
    assert delta(before, after, requests, **alias, outcome="ok") == 1  # a name the policy spells
    other = {"key": "bob", "team": "ops", "provider": "", "model": "<other>"}
    assert delta(before, after, requests, **other, outcome="denied") == 1
    mine = [row for row in ledger if row.key_id == "alice"]
    for labels, rows in (
        (haiku, [row for row in mine if row.requested_model != "fast"]),
        (alias, [row for row in mine if row.requested_model == "fast"]),
    ):
        for kind, column in (("input", "input_tokens"), ("output", "output_tokens")):
            expected = sum(getattr(row, column) for row in rows)
            assert expected > 0
            assert delta(before, after, "mcp_gateway_model_tokens_total", **labels, kind=kind) == expected
        cost = sum(row.cost_usd for row in rows)
        assert cost > 0
        assert delta(before, after, "mcp_gateway_model_cost_usd_total", **labels) == pytest.approx(cost)

    # Client text never becomes a label value.
    assert unknown not in text and bogus_model not in text
    assert after[("mcp_gateway_upstream_up", frozenset({("server", "alpha")}))] == 1
    assert after[("mcp_gateway_upstream_state", frozenset({("server", "alpha"), ("state", "ready")}))] == 1
    assert after[("mcp_gateway_writer_healthy", frozenset({("writer", "audit")}))] == 1
    assert ("mcp_gateway_writer_queue_depth", frozenset({("writer", "ledger")})) in after
    assert after[("mcp_gateway_retention_deleted_rows_total", frozenset({("table", "tool_calls")}))] == 0


async def _ledger(state: dict[str, Any]) -> list[ModelRequest]:
    await state["llm"].ledger.flush()
    with Session(state["llm"].ledger.engine) as db:
        return list(db.exec(select(ModelRequest)).all())


@pytest.mark.anyio
async def test_who_may_read_the_metrics(tmp_path: Path) -> None:
    async with mock_api() as (_, upstream):
        async with gateway(config(upstream), tmp_path / "loopback") as (_, clients):
            assert await status(clients, LOCAL) == 200
            assert await status(clients, REMOTE) == 403
            assert await status(clients, None) == 403
            assert await status(clients, REMOTE, ADMIN) == 200
            assert await status(clients, LOCAL, ALICE) == 401  # a virtual key is not an admin token
            assert await status(clients, LOCAL, "wrong") == 401
        async with gateway(config(upstream, health_details="token"), tmp_path / "token") as (_, clients):
            assert await status(clients, LOCAL) == 403
            assert await status(clients, LOCAL, ADMIN) == 200
        async with gateway(config(upstream, metrics={"enabled": False}), tmp_path / "off") as (_, clients):
            assert await status(clients, LOCAL, ADMIN) == 404


async def status(clients: Clients, peer: tuple[str, int] | None, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with clients(peer) as http:
        response = await http.get("/metrics", headers=headers)
    if response.status_code == 200:
        parse(response.text)
    return response.status_code


def tool_row(
    key: str, status: str = "ok", server: str | None = "alpha", tool: str = "alpha__echo"
) -> dict[str, Any]:
    return {
        "key_id": key,
        "team": "eng",
        "server": server,
        "exposed_name": tool,
        "status": status,
        "latency_ms": 2.0,
        "upstream_latency_ms": 1.0,
        "blocked_by": None,
    }


def test_label_sets_are_capped_and_the_rest_counted_in_one_overflow_series() -> None:
    policy = load_policy_text("{}").policy
    metrics = GatewayMetrics(MetricsSettings(max_series=10), policy)
    for i in range(25):
        metrics.tools.observe(tool_row(f"key-{i}", "ok" if i % 2 else "denied"))
    samples = parse(metrics.render().decode())
    calls = {
        labels: value for (name, labels), value in samples.items() if name == "mcp_gateway_tool_calls_total"
    }
    keys = {dict(labels)["key"] for labels in calls}
    assert keys == {f"key-{i}" for i in range(10)} | {"<overflow>"}
    overflow = {
        dict(labels)["outcome"]: value
        for labels, value in calls.items()
        if dict(labels)["key"] == "<overflow>"
    }
    assert overflow == {"ok": 7, "denied": 8}  # keys 10..24: 15 calls, outcomes kept
    assert sum(calls.values()) == 25
    assert samples[("mcp_gateway_metric_overflow_total", frozenset({("metric", "tool_calls")}))] == 15


def test_refusals_are_labelled_by_the_kind_of_limit_never_its_scope_name() -> None:
    metrics = GatewayMetrics(MetricsSettings(), load_policy_text("{}").policy)
    secret_team = f"team-{uuid.uuid4().hex}"
    for blocked_by in (
        f"rate_limit:team:{secret_team}:tool_calls_per_minute",
        "budget:org:monthly",
        f"budget:team:{secret_team}:daily",
        "something:else",
    ):
        metrics.tools.observe({**tool_row("k", "rate_limited"), "blocked_by": blocked_by})
    text = metrics.render().decode()
    samples = parse(text)
    assert secret_team not in text
    refused = {
        tuple(dict(labels)[n] for n in ("limit", "scope", "metric")): value
        for (name, labels), value in samples.items()
        if name == "mcp_gateway_refusals_total"
    }
    assert refused == {
        ("rate_limit", "team", "tool_calls_per_minute"): 1,
        ("budget", "org", "monthly"): 1,
        ("budget", "team", "daily"): 1,
        ("<other>", "<other>", "<other>"): 1,
    }


def test_two_apps_in_one_process_count_separately(tmp_path: Path) -> None:
    policy = load_policy_text("{}").policy
    one, two = GatewayMetrics(MetricsSettings(), policy), GatewayMetrics(MetricsSettings(), policy)
    one.tools.observe(tool_row("k"))
    key = (
        "mcp_gateway_tool_calls_total",
        frozenset(
            {("key", "k"), ("team", "eng"), ("server", "alpha"), ("tool", "alpha__echo"), ("outcome", "ok")}
        ),
    )
    assert parse(one.render().decode())[key] == 1
    assert key not in parse(two.render().decode())


@pytest.mark.anyio
async def test_an_observer_that_fails_costs_no_row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from gateway_app.database import create_schema
    from gateway_common.db import make_engine
    from mcp_gateway.audit import AuditWriter
    from policies.gateway_settings import AuditSettings
    from tests.gateway.test_audit_writer import count, row

    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    create_schema(engine)
    writer = AuditWriter(engine, AuditSettings(fallback_file=str(tmp_path / "fb")))

    def broken(row: Any) -> None:
        raise RuntimeError("observer bug")

    writer.observer = broken
    await writer.start()
    writer.submit(row())
    writer.submit(row())
    await writer.aclose()
    assert count(engine) == 2
    assert caplog.text.count("observer failed") == 1
    engine.dispose()
