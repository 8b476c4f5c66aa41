"""Redis stopped under two running gateways: the configured behaviour, no crash, readiness shows it;
Redis back on the same port: counting resumes without restarting either gateway.

Replica 0 has the defaults (budgets refuse, rate limits allow); replica 1 refuses rate limits too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.redis_support import own_redis_server
from tests.replicas.counters_support import replicas

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(120)]


async def test_a_redis_outage_gets_the_policy_and_counting_resumes_after_it(tmp_path: Path) -> None:
    with own_redis_server(tmp_path) as server:
        defaults = {"backend": "redis", "url": server.url, "timeout_ms": 200}
        strict = {**defaults, "on_unavailable": {"budgets": "refuse", "rate_limits": "refuse"}}
        async with replicas(tmp_path, [defaults, strict]) as group:
            assert (await group.message(0, "spender")).status_code == 200
            assert [(await group.message(n, "rpm")).status_code for n in range(4)] == [200] * 4

            server.stop()
            budgeted = await group.message(0, "spender")
            assert budgeted.status_code == 503, budgeted.text
            assert int(budgeted.headers["retry-after"]) >= 1
            assert "counter store" in budgeted.json()["error"]["message"]
            assert (await group.message(1, "spender")).status_code == 503
            # Rate limits: replica 0 lets requests through uncounted (past the limit), replica 1 refuses.
            assert [(await group.message(0, "rpm")).status_code for _ in range(8)] == [200] * 8
            refused = await group.message(1, "rpm")
            assert refused.status_code == 503, refused.text
            tool = await group.tool_call(1, "tools")
            assert tool["error"]["code"] == -32011 and "counter store" in tool["error"]["message"], tool
            assert "result" in await group.tool_call(0, "tools")
            for n in range(2):
                ready = await group.ready(n)
                assert ready["status"] == "degraded", ready
                assert ready["counters"]["state"] == "unavailable", ready
                assert group.procs[n].poll() is None

            server.start()  # same port, empty
            for _ in range(100):
                if (await group.message(0, "spender")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("budgets did not come back")
            for n in range(2):
                for _ in range(50):
                    if (await group.ready(n))["counters"]["state"] == "available":
                        break
                    await group.message(n, "spender")
                    await asyncio.sleep(0.1)
                ready = await group.ready(n)
                assert ready["status"] == "ready" and ready["counters"]["state"] == "available", ready
            statuses = [(await group.message(n, "rpm")).status_code for n in range(12)]
            assert statuses == [200] * 10 + [429] * 2, statuses
        for n in range(2):
            log = group.log(n)
            assert log.count("counter store (redis) UNAVAILABLE") == 1, log
            assert "available again" in log and "Traceback" not in log, log
