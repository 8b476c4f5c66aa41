"""Two gateway processes share their counters in Redis: every limit and budget holds across both.

Real `serve` processes on their own ports, one SQLite file, the machine's Redis under a prefix of
this test's own; requests alternate between the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_support import scratch_prefix
from tests.replicas.counters_support import PRICE, cost, replicas

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def shared_redis() -> Iterator[dict[str, str]]:
    with scratch_prefix() as (url, prefix):
        yield {"backend": "redis", "url": url, "key_prefix": prefix}


async def test_limits_hold_across_two_replicas(tmp_path: Path, shared_redis: dict[str, str]) -> None:
    async with replicas(tmp_path, [shared_redis, shared_redis]) as group:
        # 10 requests per minute: exactly 10 of 20 alternating requests pass, 5 on each replica.
        answers = [await group.message(n, "rpm") for n in range(20)]
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == 10 and statuses.count(429) == 10, statuses
        assert statuses[:10] == [200] * 10

        # 3 concurrent requests: 12 at once (slow upstream) never have more than 3 in flight.
        answers = await asyncio.gather(*(group.message(n, "conc", "claude-opus-4-8") for n in range(12)))
        statuses = [a.status_code for a in answers]
        assert group.slow.peak == 3, group.slow.peak
        assert statuses.count(200) == 3 and statuses.count(429) == 9, statuses

        # tool_calls_per_minute 5: 10 alternating calls, 5 answered and 5 refused.
        results = [await group.tool_call(n, "tools") for n in range(10)]
        answered = [r for r in results if "result" in r]
        refused = [r for r in results if r.get("error", {}).get("code") == -32011]
        assert len(answered) == 5 and len(refused) == 5, results
        for n in range(2):
            detail = await group.ready(n)
            assert detail["counters"]["backend"] == "redis" and detail["counters"]["state"] == "available"


async def test_concurrent_spend_at_a_nearly_spent_budget_overshoots_by_at_most_one_request(
    tmp_path: Path, shared_redis: dict[str, str]
) -> None:
    budget = 0.5
    async with replicas(tmp_path, [shared_redis, shared_redis], team_budget=budget) as group:
        spent, n = 0.0, 0
        one = 0.0
        while True:  # spend alternately until less than two requests' cost is left
            answer = await group.message(n, "spender")
            assert answer.status_code == 200, answer.text
            one = max(one, cost(answer))
            spent += cost(answer)
            n += 1
            if budget - spent < 2 * one:
                break
        assert one > 10 * PRICE, "each request costs something"
        answers = await asyncio.gather(*(group.message(k, "spender") for k in range(50)))
        statuses = [a.status_code for a in answers]
        spent += sum(cost(a) for a in answers if a.status_code == 200)
        assert set(statuses) <= {200, 402, 429}, statuses
        assert statuses.count(200) >= 1
        assert spent <= budget + one + 1e-9, (spent, budget, one, statuses)
        # Spent, and both replicas say so.
        for k in range(2):
            after = await group.message(k, "spender")
            assert after.status_code == 402, after.text
