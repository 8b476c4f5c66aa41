"""A model request costs two counter store round trips with Redis: one before it is forwarded
(`admit`: concurrency, rate windows and the budget reservation) and one after (`finish`), counted
by the store's own per-operation latency record (one entry per call to Redis)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_app.app import create_app
from gateway_common.counters.health import StoreHealth
from tests.llm_proxy.conftest import KEY_ALICE, mock_api, provider_env, proxy_config, settings_for  # noqa: F401  (a fixture)
from tests.redis_support import scratch_prefix

pytestmark = pytest.mark.anyio
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}


def calls(health: StoreHealth) -> dict[str, int]:
    return {op: sum(cell.counts) for op, cell in health.latency.items()}


@contextlib.asynccontextmanager
async def gateway(
    config: dict[str, Any], tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, StoreHealth]]:
    app = create_app(settings_for(config, tmp_path))
    async with app.router.lifespan_context(app) as maybe_state:
        state: dict[str, Any] = dict(maybe_state or {})

        async def with_state(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, "state": dict(state)}, receive, send)

        transport = httpx.ASGITransport(app=with_state)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=30) as client:
            yield client, app.state.counters.health


@pytest.mark.usefixtures("provider_env")
async def test_a_model_request_is_two_round_trips_and_a_refusal_one(tmp_path: Path) -> None:
    with scratch_prefix() as (url, prefix):
        async with mock_api() as (_api, upstream):
            config = proxy_config(
                upstream,
                counters={"backend": "redis", "url": url, "key_prefix": prefix},
                budgets={
                    "org_level": {"monthly_limit_usd": 1000},
                    "teams": [{"name": "eng", "daily_limit_usd": 50}],
                },
                pricing={"models": {"claude-*": {"input_per_mtok": 1.0, "output_per_mtok": 5.0}}},
            )
            config["virtual_keys"][0]["rate_limit"] = {
                "requests_per_minute": 1,
                "tokens_per_minute": 100_000,
                "concurrent_requests": 2,
            }
            async with gateway(config, tmp_path) as (client, health):
                headers = {"x-api-key": KEY_ALICE, "anthropic-version": "2023-06-01"}
                before = calls(health)
                ok = await client.post("/v1/messages", json=MESSAGE, headers=headers)
                assert ok.status_code == 200, ok.text
                assert calls(health) == {**before, "admit": 1, "finish": 1}

                refused = await client.post("/v1/messages", json=MESSAGE, headers=headers)
                assert refused.status_code == 429, refused.text
                assert (
                    "allows 1 requests per minute (1 used in the last minute)"
                    in refused.json()["error"]["message"]
                )
                assert int(refused.headers["retry-after"]) >= 59
                assert calls(health) == {**before, "admit": 2, "finish": 1}, (
                    "a refusal holds nothing to finish"
                )
