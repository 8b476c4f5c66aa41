"""A change to a session's subscriptions that the change bus lost (Redis pub/sub is at most once)
is read again anyway: every `RESYNC_SECONDS` each session a replica holds reads its subscriptions
from the ledger at its next request. Here the record another replica would make is written to Redis
directly, with no bus message at all, and the gateway runs in the test's own event loop so the
period can be short."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from redis.asyncio import Redis

from mcp_gateway.server import subscription_ledger
from mcp_gateway.server.sessions import Session
from policies.secrets import hash_secret
from tests.conftest import RunningGateway, run_gateway
from tests.redis_support import scratch_prefix
from tests.replicas.support import KEY, SESSION_SECRET_ENV, initialize, policy_doc, result, rpc

pytestmark = pytest.mark.anyio
URI = "mcpgw://alpha/res://alpha/readme"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def held(gateway: RunningGateway, session_id: str) -> Session:
    principal = gateway.runtime.state.current.principal_for(hash_secret(KEY))
    assert principal is not None
    session = gateway.runtime.sessions.get(session_id, principal)
    assert session is not None
    return session


def subscribed(gateway: RunningGateway, session_id: str) -> set[str]:
    surface = held(gateway, session_id).surface
    return set() if surface is None else set(surface.requested)


async def a_request(gateway: RunningGateway, session_id: str) -> None:
    response = await asyncio.to_thread(rpc, gateway.base, session_id, "ping", {})
    assert result(response) == {}


@pytest.mark.parametrize("period", [0.3, 3600.0], ids=["resynced", "control: no resync yet"])
async def test_a_subscription_recorded_without_a_bus_message_is_served_after_the_resync_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, period: float
) -> None:
    monkeypatch.setattr(subscription_ledger, "RESYNC_SECONDS", period)
    monkeypatch.setenv(SESSION_SECRET_ENV, secrets.token_urlsafe(32))
    with scratch_prefix() as (url, prefix):
        doc = policy_doc(f"sqlite:///{tmp_path / 'gateway.db'}", url, prefix)
        async with run_gateway(doc, tmp_path) as gateway:
            session_id = await asyncio.to_thread(initialize, gateway.base)
            await a_request(gateway, session_id)
            assert subscribed(gateway, session_id) == set()
            client = Redis.from_url(url)
            try:  # what another replica records when the session subscribes there
                await client.sadd(f"{prefix}subs:{session_id}", URI)
            finally:
                await client.aclose()
            await asyncio.sleep(0.8)
            await a_request(gateway, session_id)
            assert subscribed(gateway, session_id) == ({URI} if period < 1 else set())
            if period < 1:
                client = Redis.from_url(url)
                try:  # and an unsubscribe there, whose message was lost too
                    await client.srem(f"{prefix}subs:{session_id}", URI)
                finally:
                    await client.aclose()
                await asyncio.sleep(0.8)
                await a_request(gateway, session_id)
                assert subscribed(gateway, session_id) == set()
