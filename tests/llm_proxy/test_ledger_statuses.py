"""Every way a model request ends lands in the ledger with its own `Outcome`, so refusals are queryable.

Each case drives the whole app against the mock model API (or a provider that is
down, keyless or silent) and reads the one ledger row it leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.servers.mock_model_api import MockModelApi
from llm_proxy.ledger import STATUSES, ModelRequest
from policies.outcomes import Outcome
from tests.llm_proxy.conftest import (
    KEY_ALICE,
    FakeClock,
    Proxy,
    free_port,
    mock_api,
    proxy_config,
    serve,
    start_proxy,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]
PRICING = {"models": {"claude-*": {"input_per_mtok": 1000, "output_per_mtok": 1000}}}
GUARD = 20.0
"""A deadlock guard only; no assertion depends on time."""


@contextlib.contextmanager
def holding(api: MockModelApi) -> Iterator[None]:
    """The mock keeps every answer back until the block ends (even when it fails)."""
    api.hold = asyncio.Event()
    try:
        yield
    finally:
        api.hold.set()


@contextlib.asynccontextmanager
async def proxy_for(config: dict[str, Any], tmp_path: Path) -> AsyncIterator[Proxy]:
    async with start_proxy(config, tmp_path, clock=FakeClock()) as proxy:
        yield proxy


async def last_row(proxy: Proxy) -> ModelRequest:
    return (await proxy.ledger())[-1]


def test_the_ledger_vocabulary_is_the_outcome_vocabulary() -> None:
    assert set(STATUSES) == {o.value for o in Outcome} - {"tool_error"}


async def test_ok_and_provider_error(tmp_path: Path) -> None:
    async with mock_api() as (api, url), proxy_for(proxy_config(url), tmp_path) as proxy:
        assert (await proxy.messages()).status_code == 200
        assert (await last_row(proxy)).status == Outcome.OK
        api.options.fail_status = 400
        assert (await proxy.messages()).status_code == 400
        assert (await last_row(proxy)).status == Outcome.PROVIDER_ERROR


@pytest.mark.parametrize(
    ("model", "http_status"),
    [("claude-opus-4-8", 403), ("gpt-nobody-routes", 404), ("claude-unpriced-9", 403)],
    ids=["not-allowed", "unknown", "unpriced"],
)
async def test_denied(tmp_path: Path, model: str, http_status: int) -> None:
    async with mock_api() as (api, url):
        price = {"input_per_mtok": 1, "output_per_mtok": 1}
        pricing = {"unknown_model": "block", "models": {"claude-haiku-*": price, "claude-opus-*": price}}
        config = proxy_config(url, pricing=pricing)
        config["virtual_keys"][0]["allowed_models"] = ["claude-haiku-*", "claude-unpriced-*"]
        async with proxy_for(config, tmp_path) as proxy:
            assert (await proxy.messages(model=model)).status_code == http_status
            row = await last_row(proxy)
    assert (row.status, row.http_status) == (Outcome.DENIED, http_status)
    assert not api.received


@pytest.mark.parametrize(
    ("content", "http_status"), [(b"{not json", 400), (b'{"model": "x", "pad": "' + b"y" * 5000 + b'"}', 413)]
)
async def test_invalid_request(tmp_path: Path, content: bytes, http_status: int) -> None:
    async with mock_api() as (api, url):
        config = proxy_config(url, llm_proxy={"max_body_bytes": 2048})
        async with proxy_for(config, tmp_path) as proxy:
            response = await proxy.client.post(
                "/v1/messages", content=content, headers={"x-api-key": KEY_ALICE}
            )
            assert response.status_code == http_status
            row = await last_row(proxy)
    assert (row.status, row.http_status) == (Outcome.INVALID_REQUEST, http_status)
    assert not api.received


async def test_rate_limited(tmp_path: Path) -> None:
    async with mock_api() as (_api, url):
        config = proxy_config(url)
        config["virtual_keys"][0]["rate_limit"] = {"requests_per_minute": 1}
        async with proxy_for(config, tmp_path) as proxy:
            assert (await proxy.messages()).status_code == 200
            assert (await proxy.messages()).status_code == 429
            row = await last_row(proxy)
    assert (row.status, row.blocked_by) == (Outcome.RATE_LIMITED, "rate_limit:key:alice:requests_per_minute")


async def test_budget_exceeded_when_spent_and_when_held_by_requests_in_flight(tmp_path: Path) -> None:
    budgets = {"virtual_key_overrides": [{"id": "alice", "daily_limit_usd": 0.05}]}
    async with (
        mock_api() as (api, url),
        proxy_for(proxy_config(url, pricing=PRICING, budgets=budgets), tmp_path) as proxy,
    ):
        with holding(api):
            first = asyncio.create_task(proxy.messages())  # reserves more than the whole limit
            async with asyncio.timeout(GUARD):
                while not api.received:
                    await asyncio.sleep(0.01)
            held = await proxy.messages()
            assert held.status_code == 429
            assert (await last_row(proxy)).status == Outcome.BUDGET_EXCEEDED
        assert (await first).status_code == 200
        assert (await proxy.messages()).status_code == 200
        spent = await proxy.messages()  # two requests at ~$0.04 each have spent the $0.05
        assert spent.status_code == 402
        rows = await proxy.ledger()
    refused = [(r.status, r.http_status, r.blocked_by) for r in rows if r.status != Outcome.OK]
    assert refused == [
        (Outcome.BUDGET_EXCEEDED, 429, "budget:key:alice:daily"),
        (Outcome.BUDGET_EXCEEDED, 402, "budget:key:alice:daily"),
    ]


async def test_upstream_unavailable_when_no_provider_can_be_reached(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    config = proxy_config(nobody)
    config["providers"].append(
        {"name": "keyless", "kind": "anthropic", "base_url": nobody, "api_key_env": "TEST_UNSET_KEY_ENV"}
    )
    config["routes"] = [{"match": "claude-*", "provider": "primary", "fallbacks": [{"provider": "keyless"}]}]
    async with proxy_for(config, tmp_path) as proxy:
        response = await proxy.messages()
        assert response.status_code == 502
        row = await last_row(proxy)
    assert (row.status, row.attempts) == (Outcome.UPSTREAM_UNAVAILABLE, 2)
    assert "cannot connect" in (row.error or "") and "has no API key" in (row.error or "")


@pytest.mark.parametrize(("fail_status", "http_status"), [(503, 502), (529, 529), (429, 429)])
async def test_upstream_error_when_every_provider_answers_with_an_error(
    tmp_path: Path, fail_status: int, http_status: int
) -> None:
    async with (
        mock_api(fail_status=fail_status) as (_api, url),
        proxy_for(proxy_config(url), tmp_path) as proxy,
    ):
        assert (await proxy.messages()).status_code == http_status
        row = await last_row(proxy)
    assert (row.status, row.blocked_by) == (Outcome.UPSTREAM_ERROR, None)  # a provider's 429 is not our limit


async def test_upstream_error_wins_over_unreachable_fallbacks(tmp_path: Path) -> None:
    async with mock_api(fail_status=503) as (_api, url):
        config = proxy_config(url)
        config["providers"].append(
            {"name": "down", "kind": "anthropic", "base_url": f"http://127.0.0.1:{free_port()}"}
        )
        config["routes"] = [{"match": "claude-*", "provider": "primary", "fallbacks": [{"provider": "down"}]}]
        async with proxy_for(config, tmp_path) as proxy:
            assert (await proxy.messages()).status_code == 502
            row = await last_row(proxy)
    assert (row.status, row.attempts) == (Outcome.UPSTREAM_ERROR, 2)


async def silent_provider(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the request and never answers; returns when the gateway gives up and disconnects."""
    if scope["type"] == "http":
        await receive()
        await receive()  # http.disconnect


async def test_timeout_when_the_provider_stays_silent(tmp_path: Path) -> None:
    async with serve(silent_provider) as url:
        config = proxy_config(url)
        config["providers"][0]["timeout"] = 0.3
        async with proxy_for(config, tmp_path) as proxy:
            async with asyncio.timeout(GUARD):
                response = await proxy.messages()
            assert response.status_code == 502
            row = await last_row(proxy)
    assert (row.status, row.error) == (Outcome.TIMEOUT, "No provider could answer (primary: timed out)")


async def test_gateway_error_for_a_bug_in_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mock_api() as (_api, url), proxy_for(proxy_config(url), tmp_path) as proxy:

        def broken(*args: object) -> None:
            raise KeyError("a bug")

        monkeypatch.setattr(proxy.llm, "route", broken)
        response = await proxy.messages()
        assert response.status_code == 500
        row = await last_row(proxy)
    assert (row.status, row.error) == (Outcome.GATEWAY_ERROR, "gateway failure: KeyError")
