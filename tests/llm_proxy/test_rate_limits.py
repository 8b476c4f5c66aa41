"""Rate limits: requests, tokens and concurrency per key and team, tool calls; all on an injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from policies import Principal, load_policy_text
from policies.memory_counters import MemoryCounterStore
from policies.ratelimit import RateLimiter, build_rate_plan
from tests.llm_proxy.conftest import (
    KEY_ALICE,
    KEY_BOB,
    KEY_CAROL,
    FakeClock,
    mock_api,
    proxy_config,
    start_proxy,
)

pytestmark = pytest.mark.anyio

POLICY = """
teams:
  - name: eng
    rate_limit: {requests_per_minute: 5, tool_calls_per_minute: 3}
virtual_keys:
  - id: alice
    team: eng
    rate_limit: {requests_per_minute: 2, tokens_per_minute: 1000, concurrent_requests: 1, tool_calls_per_minute: 2}
  - id: bob
    team: eng
"""
ALICE = Principal("alice", "alice", "eng", "file")
BOB = Principal("bob", "bob", "eng", "file")


PLANS = {p: build_rate_plan(load_policy_text(POLICY).policy, p) for p in (ALICE, BOB)}


def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(MemoryCounterStore(), clock)


async def test_requests_per_minute_slides_with_the_clock() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    first = await rl.acquire_request(PLANS[ALICE], "r1")
    assert first.allowed and first.ticket is not None
    await rl.finish(first.ticket, 0)
    clock.advance(20)
    second = await rl.acquire_request(PLANS[ALICE], "r2")
    assert second.allowed and second.ticket is not None
    await rl.finish(second.ticket, 0)
    third = await rl.acquire_request(PLANS[ALICE], "r3")
    assert not third.allowed
    assert third.blocked_by == "rate_limit:key:alice:requests_per_minute"
    assert third.retry_after == pytest.approx(40, abs=1)
    assert "key 'alice' allows 2 requests per minute" in third.message
    clock.advance(41)  # the first request has left the window
    assert (await rl.acquire_request(PLANS[ALICE], "r4")).allowed


async def test_team_limit_is_shared_by_its_keys() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    for i in range(5):
        decision = await rl.acquire_request(PLANS[BOB], f"b{i}")
        assert decision.allowed and decision.ticket is not None
        await rl.finish(decision.ticket, 0)
    refused = await rl.acquire_request(PLANS[ALICE], "a1")
    assert not refused.allowed and refused.blocked_by == "rate_limit:team:eng:requests_per_minute"
    clock.advance(60)
    assert (await rl.acquire_request(PLANS[ALICE], "a2")).allowed


async def test_tokens_per_minute_counts_real_usage_after_the_response() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    first = await rl.acquire_request(PLANS[ALICE], "r1")
    assert first.ticket is not None
    await rl.finish(first.ticket, 1200)  # one response used more than the whole budget
    clock.advance(1)
    refused = await rl.acquire_request(PLANS[ALICE], "r2")
    assert not refused.allowed and refused.blocked_by == "rate_limit:key:alice:tokens_per_minute"
    assert refused.retry_after == pytest.approx(59, abs=1)
    clock.advance(60)
    assert (await rl.acquire_request(PLANS[ALICE], "r3")).allowed


async def test_concurrent_requests_hold_a_slot_until_finished() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    first = await rl.acquire_request(PLANS[ALICE], "r1")
    assert first.allowed and first.ticket is not None
    second = await rl.acquire_request(PLANS[ALICE], "r2")
    assert not second.allowed and second.blocked_by == "rate_limit:key:alice:concurrent_requests"
    await rl.finish(first.ticket, 10)
    third = await rl.acquire_request(PLANS[ALICE], "r3")
    assert third.allowed  # the refused second request did not use up the per-minute allowance


async def test_tool_calls_per_minute_for_key_and_team() -> None:
    clock = FakeClock()
    rl = limiter(clock)
    assert (await rl.acquire_tool_call(PLANS[ALICE])).allowed
    assert (await rl.acquire_tool_call(PLANS[ALICE])).allowed
    refused = await rl.acquire_tool_call(PLANS[ALICE])
    assert not refused.allowed and refused.blocked_by == "rate_limit:key:alice:tool_calls_per_minute"
    assert refused.retry_after_seconds == 60
    assert (await rl.acquire_tool_call(PLANS[BOB])).allowed
    team_refused = await rl.acquire_tool_call(PLANS[BOB])  # the team's 3 per minute are used up
    assert not team_refused.allowed and team_refused.blocked_by == "rate_limit:team:eng:tool_calls_per_minute"
    clock.advance(60)
    assert (await rl.acquire_tool_call(PLANS[BOB])).allowed
    unlimited = build_rate_plan(load_policy_text(POLICY).policy, Principal("zed", "zed", None, "database"))
    assert all([(await rl.acquire_tool_call(unlimited)).allowed for _ in range(100)])


# -- through the proxy --------------------------------------------------------------------------


def limited_config(url: str) -> dict[str, Any]:
    config = proxy_config(url)
    config["virtual_keys"][0]["rate_limit"] = {"requests_per_minute": 2, "tokens_per_minute": 60}
    config["virtual_keys"][2]["rate_limit"] = {"concurrent_requests": 2}
    return config


@pytest.mark.usefixtures("provider_env")
async def test_rpm_and_tpm_through_the_proxy(tmp_path: Path) -> None:
    clock = FakeClock()
    async with mock_api() as (api, url), start_proxy(limited_config(url), tmp_path, clock=clock) as proxy:
        assert (await proxy.messages()).status_code == 200
        assert (await proxy.messages(key=KEY_BOB)).status_code == 200  # other keys are not affected
        clock.advance(1)
        # alice's first response used ~30 tokens: still under 60
        assert (await proxy.messages()).status_code == 200
        refused = await proxy.messages()
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert int(refused.headers["retry-after"]) >= 55
        clock.advance(60)
        big = "word " * 300  # ~380 tokens of input: over the 60 tokens per minute
        assert (await proxy.messages(messages=[{"role": "user", "content": big}])).status_code == 200
        clock.advance(1)
        by_tokens = await proxy.messages()
        assert by_tokens.status_code == 429
        assert "tokens per minute" in by_tokens.json()["error"]["message"]
        rows = await proxy.ledger()
        refused_rows = [r for r in rows if r.status == "rate_limited"]
        assert [r.blocked_by for r in refused_rows] == [
            "rate_limit:key:alice:requests_per_minute",
            "rate_limit:key:alice:tokens_per_minute",
        ]
        assert all(r.http_status == 429 and r.error_type == "rate_limit_error" for r in refused_rows)
        assert len(api.received) == 4


@pytest.mark.usefixtures("provider_env")
async def test_concurrency_limit_through_the_proxy(tmp_path: Path) -> None:
    clock = FakeClock()
    async with mock_api() as (api, url), start_proxy(limited_config(url), tmp_path, clock=clock) as proxy:
        api.hold = asyncio.Event()
        first = asyncio.create_task(proxy.messages(key=KEY_CAROL))
        second = asyncio.create_task(proxy.messages(key=KEY_CAROL))
        while len(api.received) < 2:
            await asyncio.sleep(0.005)
        third = await proxy.messages(key=KEY_CAROL)
        assert third.status_code == 429
        assert "allows 2 concurrent requests" in third.json()["error"]["message"]
        assert third.headers["retry-after"] == "1"
        api.hold.set()
        assert (await first).status_code == 200 and (await second).status_code == 200
        assert (await proxy.messages(key=KEY_CAROL)).status_code == 200


async def test_rate_limited_errors_use_the_openai_shape_on_openai_routes(tmp_path: Path) -> None:
    async with mock_api() as (_api, url):
        config = proxy_config(url)
        config["providers"] = [{"name": "oa", "kind": "openai-compatible", "base_url": f"{url}/v1"}]
        config["routes"] = [{"match": "gpt-*", "provider": "oa"}]
        config["virtual_keys"][0]["rate_limit"] = {"requests_per_minute": 1}
        async with start_proxy(config, tmp_path, clock=FakeClock()) as proxy:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
            headers = {"authorization": f"Bearer {KEY_ALICE}"}
            assert (
                await proxy.client.post("/v1/chat/completions", json=body, headers=headers)
            ).status_code == 200
            refused = await proxy.client.post("/v1/chat/completions", json=body, headers=headers)
            assert refused.status_code == 429
            assert refused.json() == {
                "error": {
                    "message": refused.json()["error"]["message"],
                    "type": "rate_limit_error",
                    "code": "rate_limit_exceeded",
                }
            }
            assert refused.headers["retry-after"]


async def test_the_limiter_is_in_the_lifespan_state_for_mcp_tool_calls(tmp_path: Path) -> None:
    config = proxy_config("http://127.0.0.1:9")
    config["virtual_keys"][0]["rate_limit"] = {"tool_calls_per_minute": 1}
    async with start_proxy(config, tmp_path, clock=FakeClock()) as proxy:
        limiter = proxy.llm.limiter
        alice = proxy.llm.state.current.rate_plan(Principal("alice", "alice", "eng", "file"))
        assert (await limiter.acquire_tool_call(alice)).allowed
        refused = await limiter.acquire_tool_call(alice)
        assert not refused.allowed and refused.retry_after_seconds >= 1 and refused.message
