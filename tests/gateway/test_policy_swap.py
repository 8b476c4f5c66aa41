"""Swapping the policy snapshot under load never gives a request a mix of two policies' decisions.

Two policies that disagree on everything a request decides: under A the key belongs
to team a and may call alpha's tools and the model ``model-a`` (served by provider
``pa``, priced at 1 and 2 USD per million tokens); under B it belongs to team b and may
call beta's tools and ``model-b`` (served by ``pb``, at 10 and 20). While tools/call and
/v1/messages requests run concurrently, the test swaps A and B in as fast as it can, and
the counter store yields to the event loop on every operation (as a networked store
does), so swaps land in the middle of requests. Every audit and ledger row names the
team the request was authenticated as; every other decision in that row (outcome,
provider, price) must be that policy's.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlmodel import Session, select

from gateway_app.settings import load_policy_source
from llm_proxy.ledger import ModelRequest
from policies.memory_counters import MemoryCounterStore
from policies.outcomes import Outcome
from policies.secrets import hash_secret
from tests.conftest import run_gateway, upstream_stdio
from tests.llm_proxy.conftest import mock_api, provider_env  # noqa: F401  (a fixture)

SECRET = "swap-secret-0123456789abcdef"
MODERN = {
    "MCP-Protocol-Version": "2026-07-28",
    "Accept": "application/json, text/event-stream",
    "Authorization": f"Bearer {SECRET}",
}
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "swap-test", "version": "1"},
}


class YieldingStore(MemoryCounterStore):
    """The in-memory store, suspending before every operation like a store across the network."""

    async def window_hit(self, *args: Any) -> Any:
        await asyncio.sleep(0)
        return await super().window_hit(*args)

    async def slots_acquire(self, *args: Any) -> Any:
        await asyncio.sleep(0)
        return await super().slots_acquire(*args)

    async def spend_reserve(self, *args: Any) -> Any:
        await asyncio.sleep(0)
        return await super().spend_reserve(*args)

    async def spend_settle(self, *args: Any) -> Any:
        await asyncio.sleep(0)
        return await super().spend_settle(*args)


PRICES = {"a": (1.0, 2.0), "b": (10.0, 20.0)}


def policy(team: str, server: str, upstream: str) -> dict[str, Any]:
    price_in, price_out = PRICES[team]
    return {
        "teams": [{"name": "a", "allowed_models": ["model-a"]}, {"name": "b", "allowed_models": ["model-b"]}],
        "virtual_keys": [{"id": "swapper", "team": team, "secret_sha256": hash_secret(SECRET)}],
        "mcp": {
            "servers": [upstream_stdio("alpha"), upstream_stdio("beta")],
            "team_permissions": {team: [server]},
        },
        "providers": [
            {"name": name, "kind": "anthropic", "base_url": upstream, "api_key_env": "TEST_PROVIDER_KEY"}
            for name in ("pa", "pb")
        ],
        "routes": [{"match": "model-a", "provider": "pa"}, {"match": "model-b", "provider": "pb"}],
        "pricing": {"models": {"model-*": {"input_per_mtok": price_in, "output_per_mtok": price_out}}},
        "budgets": {"org_level": {"monthly_limit_usd": 1000}},
    }


async def call_tool(http: httpx.AsyncClient, name: str, request_id: int) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"text": "hi"}, "_meta": ENVELOPE},
    }
    headers = {**MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code < 500, response.text


async def ask_model(http: httpx.AsyncClient, model: str) -> None:
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    response = await http.post("/v1/messages", json=body, headers={"x-api-key": SECRET})
    assert response.status_code in (200, 403), response.text


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env", "keys_env")
async def test_no_request_sees_two_policies(tmp_path: Path) -> None:
    async with mock_api() as (_api, upstream):
        config_a = policy("a", "alpha", upstream)
        config_b = policy("b", "beta", upstream)
        options = {"counter_store": YieldingStore()}
        async with run_gateway(config_a, tmp_path, app_options=options) as gw:
            state = gw.runtime.state
            policy_a = state.current.policy
            policy_b = load_policy_source(yaml.safe_dump(config_b)).policy.model_copy(
                update={"gateway": policy_a.gateway}
            )
            swaps = 0
            done = asyncio.Event()

            async def swapper() -> None:
                nonlocal swaps
                for chosen in itertools.cycle((policy_b, policy_a)):
                    if done.is_set():
                        return
                    state.swap_policy(chosen)
                    swaps += 1
                    await asyncio.sleep(0)

            ids = itertools.count(1)

            async def worker(http: httpx.AsyncClient) -> None:
                for _ in range(15):
                    await call_tool(http, "alpha__echo", next(ids))
                    await ask_model(http, "model-a")
                    await call_tool(http, "beta__echo", next(ids))
                    await ask_model(http, "model-b")

            async with httpx.AsyncClient(base_url=gw.base, timeout=30) as http:
                swapping = asyncio.create_task(swapper())
                await asyncio.gather(*(worker(http) for _ in range(6)))
                done.set()
                await swapping
            tool_rows = await gw.flushed_calls()
            await gw.llm.ledger.flush()
            with Session(gw.runtime.engine) as db:
                model_rows = list(db.exec(select(ModelRequest)).all())

    assert swaps > 100
    expected_tools = {"a": {"alpha__echo": Outcome.OK, "beta__echo": Outcome.DENIED}}
    expected_tools["b"] = {"alpha__echo": Outcome.DENIED, "beta__echo": Outcome.OK}
    assert len(tool_rows) == 6 * 15 * 2
    teams = {row.team for row in tool_rows}
    assert teams == {"a", "b"}, "the swaps should have landed on both sides of some requests"
    for row in tool_rows:
        assert row.team is not None
        assert row.status == expected_tools[row.team][row.exposed_name], (
            row.team,
            row.exposed_name,
            row.status,
        )

    expected_models = {"a": {"model-a": ("ok", "pa"), "model-b": ("denied", None)}}
    expected_models["b"] = {"model-a": ("denied", None), "model-b": ("ok", "pb")}
    assert len(model_rows) == 6 * 15 * 2
    for model_row in model_rows:
        assert model_row.team is not None and model_row.requested_model is not None
        want = expected_models[model_row.team][model_row.requested_model]
        assert (model_row.status, model_row.provider) == want, model_row
        if model_row.status == "ok":
            price_in, price_out = PRICES[model_row.team]
            cost = (model_row.input_tokens * price_in + model_row.output_tokens * price_out) / 1e6
            assert model_row.cost_usd == pytest.approx(cost), model_row
