"""``GET /v1/quota``: each key sees its own limits and the budgets that apply to it, with the use
the live counters hold (the same limiter and budget book the front doors decide with), and
nothing of another key's; a missing or unknown key, or an admin token, gets 401."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from policies.keys import Principal
from tests.admin_api.conftest import ADMIN, ALICE, BOB, Gateway, admin_gateway


async def use(gw: Gateway, key_id: str, *, tool_calls: int = 0, spend: float = 0.0) -> None:
    """Count tool calls and settle spend for a key through the runtime's own limiter and budgets."""
    snapshot = gw.runtime.state.current
    principal = Principal(key_id, key_id, "eng", "file")
    limiter, book = gw.llm.limiter, gw.llm.budgets
    for _ in range(tool_calls):
        assert (await limiter.acquire_tool_call(snapshot.rate_plan(principal))).allowed
    if spend:
        reservation = await book.reserve(snapshot.caller_budgets(principal), spend, f"lease-{key_id}")
        await book.settle(reservation, spend)  # type: ignore[arg-type]


def limits(quota: dict[str, Any]) -> dict[tuple[str, str], tuple[int, float | None]]:
    return {(r["scope"], r["metric"]): (r["limit"], r["used"]) for r in quota["rate_limits"]}


def budgets(quota: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float]]:
    return {(b["budget"], b["period"]): (b["limit_usd"], b["spent_usd"]) for b in quota["budgets"]}


@pytest.mark.anyio
async def test_each_key_sees_its_own_quota_and_nothing_of_anothers(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        await use(gw, "alice", tool_calls=3, spend=1.25)
        await use(gw, "bob", spend=0.5)
        alice_plan = gw.runtime.state.current.rate_plan(Principal("alice", "alice", "eng", "file"))
        store = gw.llm.limiter.store  # one of alice's requests in flight
        assert await store.slots_acquire(alice_plan.slot_checks, "in-flight", gw.clock(), 60.0) is None
        alice = await gw.call("GET", "/v1/quota", ALICE)
        assert alice.status_code == 200, alice.text
        bob = await gw.http.get("/v1/quota", headers={"x-api-key": BOB})  # the model API's header works too
        assert bob.status_code == 200, bob.text
        a, b = alice.json(), bob.json()

    assert (a["key_id"], a["team"], b["key_id"], b["team"]) == ("alice", "eng", "bob", "eng")
    assert limits(a) == {
        ("key:alice", "requests_per_minute"): (60, 0.0),
        ("team:eng", "requests_per_minute"): (1000, 0.0),
        ("key:alice", "tool_calls_per_minute"): (10, 3.0),
        ("key:alice", "concurrent_requests"): (2, 1),
    }
    assert limits(b) == {
        ("team:eng", "requests_per_minute"): (1000, 0.0),
        ("key:bob", "tokens_per_minute"): (5000, 0.0),
    }
    assert budgets(a) == {
        ("org", "monthly"): (1000, 1.75),
        ("team:eng", "monthly"): (100, 1.75),
        ("key:alice", "daily"): (5, 1.25),
    }
    assert budgets(b) == {("org", "monthly"): (1000, 1.75), ("team:eng", "monthly"): (100, 1.75)}
    assert "alice" not in orjson.dumps(b).decode()
    assert "bob" not in orjson.dumps(a).decode()
    own = next(x for x in a["budgets"] if x["budget"] == "key:alice")
    assert own["remaining_usd"] == 3.75 and own["resets_at"] > a["at"]


@pytest.mark.anyio
async def test_quota_needs_a_virtual_key(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw:
        for token in (None, ADMIN, "mgw_never_issued"):
            refused = await gw.call("GET", "/v1/quota", token)
            assert refused.status_code == 401, refused.text
            assert refused.headers["www-authenticate"] == 'Bearer realm="mcp-gateway"'
            assert refused.json()["error"] == "unauthorized"
