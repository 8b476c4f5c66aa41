"""A 2025-11-25 session opened on one replica is served by another (two real `mcp-gateway serve`
processes sharing a SQLite file, Redis and the session secret): tools/list, tools/call, the GET
stream after a reconnect; DELETE on one ends it on both; forged ids and other keys get 404."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.redis_support import scratch_prefix
from tests.replicas.support import (
    Cluster,
    Replica,
    cluster_env,
    headers,
    initialize,
    policy_doc,
    result,
    rpc,
    tool_names,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replica, Replica]]:
    tmp = tmp_path_factory.mktemp("sessions")
    with scratch_prefix() as (url, prefix):
        cluster = Cluster(tmp, cluster_env())
        doc = policy_doc(f"sqlite:///{tmp / 'gateway.db'}", url, prefix)
        try:
            one, two = cluster.start(doc), cluster.start(doc)
            wait_ready([one, two])
            yield one, two
        finally:
            cluster.stop()


def test_a_session_opened_on_one_replica_answers_on_the_other(pair: tuple[Replica, Replica]) -> None:
    one, two = pair
    session = initialize(one.base)
    assert "alpha__echo" in tool_names(two.base, session)
    call = rpc(two.base, session, "tools/call", {"name": "alpha__echo", "arguments": {"text": "across"}})
    assert result(call)["content"][0]["text"] == "across"
    assert call.headers["mcp-session-id"] == session
    # and back: both now hold it
    assert result(
        rpc(one.base, session, "tools/call", {"name": "alpha__add", "arguments": {"a": 2, "b": 3}})
    )["structuredContent"] == {"result": 5}
    assert "rebuilt from its signed id" in two.text()


def test_the_get_stream_reconnects_on_the_other_replica(pair: tuple[Replica, Replica]) -> None:
    one, two = pair
    session = initialize(one.base)
    stream_headers = {**headers(session=session), "Accept": "text/event-stream"}
    for replica in (one, two):  # opened on the first, then (the client reconnecting) on the second
        with httpx.stream("GET", f"{replica.base}/mcp", headers=stream_headers, timeout=10) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            first = next(response.iter_lines())
            assert first.startswith(":"), first  # the stream's opening comment


def test_delete_on_one_replica_ends_the_session_on_both(pair: tuple[Replica, Replica]) -> None:
    one, two = pair
    session = initialize(one.base)
    assert tool_names(two.base, session)  # both hold it now
    assert httpx.delete(f"{two.base}/mcp", headers=headers(session=session), timeout=10).status_code == 200
    wait_until(lambda: rpc(one.base, session, "tools/list", {}).status_code == 404, [one, two], timeout=2)
    assert rpc(two.base, session, "tools/list", {}).status_code == 404  # never rebuilt where it ended


def test_forged_or_foreign_ids_are_not_sessions(pair: tuple[Replica, Replica]) -> None:
    one, two = pair
    session = initialize(one.base)
    nonce, claims, mac = session.split(".")
    altered = f"{nonce}.{claims}.{'A' * len(mac)}"
    assert rpc(two.base, altered, "tools/list", {}).status_code == 404
    assert rpc(two.base, "f" * 32, "tools/list", {}).status_code == 404  # an id of the old form
    assert rpc(two.base, "x" * 5000, "tools/list", {}).status_code in (404, 431)
