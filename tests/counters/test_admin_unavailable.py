"""``GET /v1/quota`` reads the live counters; with Redis down it answers 503 with a retry-after and
a message that says why (the admin API's one error mapping), never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.admin_api.conftest import ALICE, admin_gateway, policy_doc
from tests.redis_support import own_redis_server

pytestmark = pytest.mark.anyio


async def test_quota_while_the_counter_store_is_down_is_a_503(tmp_path: Path) -> None:
    with own_redis_server(tmp_path) as server:
        counters = {"backend": "redis", "url": server.url, "key_prefix": "h9trips-test:", "timeout_ms": 200}
        async with admin_gateway(tmp_path, policy_doc(counters=counters)) as gw:
            up = await gw.call("GET", "/v1/quota", ALICE)
            assert up.status_code == 200, up.text
            concurrency = [r for r in up.json()["rate_limits"] if r["metric"] == "concurrent_requests"]
            assert concurrency == [
                {"scope": "key:alice", "metric": "concurrent_requests", "limit": 2, "used": 0, "remaining": 2}
            ]

            server.stop()
            down = await gw.call("GET", "/v1/quota", ALICE)
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "2"
            body = down.json()
            assert body["error"] == "unavailable"
            assert "cannot reach its counter store" in body["message"]
            assert "retry in 2 s" in body["message"]
            assert gw.app.state.counters.health.available is False
