"""A 2025-11-25 session's resource subscriptions follow it to another replica: subscribed on one
replica, its GET stream reconnected on the other gets ``notifications/resources/updated`` there
(two real `mcp-gateway serve` processes sharing Redis and the session secret, each with its own
upstream child offering subscriptions). Unsubscribing, or ending the session, is recorded too."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis

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
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.slow
UPSTREAM_URI = "res://alpha/readme"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Replica, Replica, str, str]]:
    tmp = tmp_path_factory.mktemp("subscriptions")
    with scratch_prefix() as (url, prefix):
        cluster = Cluster(tmp, cluster_env())
        doc = policy_doc(f"sqlite:///{tmp / 'gateway.db'}", url, prefix)
        doc["mcp"]["servers"][0]["args"].append("--surface")  # resources, subscriptions, a `touch` tool
        try:
            one, two = cluster.start(doc), cluster.start(doc)
            wait_ready([one, two])
            yield one, two, url, prefix
        finally:
            cluster.stop()


def readme_uri(base: str, session: str) -> str:
    listed = result(rpc(base, session, "resources/list", {}))["resources"]
    return str(next(r["uri"] for r in listed if r["name"] == "readme"))


def updates_after_touch(replica: Replica, session: str, uri: str, touch: str = UPSTREAM_URI) -> list[str]:
    """Open the session's GET stream on ``replica``, have its upstream announce a change of
    ``touch``, and return the URIs of the resource updates the stream carried within a few seconds."""
    stream_headers = {**headers(session=session), "Accept": "text/event-stream"}
    seen: list[str] = []
    with httpx.stream("GET", f"{replica.base}/mcp", headers=stream_headers, timeout=5) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()
        assert next(lines).startswith(":")  # the stream is open (and the session restored before it)
        touched = rpc(
            replica.base, session, "tools/call", {"name": "alpha__touch", "arguments": {"uri": touch}}
        )
        assert result(touched)["content"][0]["text"] == f"touched {touch}"
        try:
            for line in lines:
                if line.startswith("data:"):
                    message = orjson.loads(line.removeprefix("data:"))
                    if message.get("method") == "notifications/resources/updated":
                        seen.append(message["params"]["uri"])
                        break
        except httpx.ReadTimeout:
            pass
    return seen


def test_a_subscription_made_on_one_replica_is_served_by_the_other(
    pair: tuple[Replica, Replica, str, str],
) -> None:
    one, two, url, prefix = pair
    session = initialize(one.base)
    uri = readme_uri(one.base, session)
    assert result(rpc(one.base, session, "resources/subscribe", {"uri": uri})) == {}
    with redis.Redis.from_url(url) as client:
        assert client.smembers(f"{prefix}subs:{session}") == {uri.encode()}
        assert 0 < client.ttl(f"{prefix}subs:{session}") <= 7 * 86_400
    assert updates_after_touch(two, session, uri) == [uri], "the GET stream reconnected elsewhere hears it"
    assert "resource subscriptions restored" in two.text()


def test_unsubscribing_and_ending_the_session_are_recorded(pair: tuple[Replica, Replica, str, str]) -> None:
    one, two, url, prefix = pair
    session = initialize(one.base)
    uri = readme_uri(one.base, session)
    assert result(rpc(one.base, session, "resources/subscribe", {"uri": uri})) == {}
    assert result(rpc(one.base, session, "resources/unsubscribe", {"uri": uri})) == {}
    with redis.Redis.from_url(url) as client:
        assert client.smembers(f"{prefix}subs:{session}") == set()
    assert updates_after_touch(two, session, uri) == [], "nothing restored after an unsubscribe"
    assert result(rpc(one.base, session, "resources/subscribe", {"uri": uri})) == {}
    assert httpx.delete(f"{one.base}/mcp", headers=headers(session=session), timeout=10).status_code == 200
    with redis.Redis.from_url(url) as client:
        assert not client.exists(f"{prefix}subs:{session}")


def test_a_session_back_on_its_first_replica_follows_changes_made_elsewhere(
    pair: tuple[Replica, Replica, str, str],
) -> None:
    """Subscribed on one, moved to the other, changed there, back on the first: the first holds its
    own copy of the session (nothing to rebuild), and re-reads the subscriptions on the word of the
    other (the change bus) instead of serving the ones it had."""
    one, two, _, _ = pair
    session = initialize(one.base)
    readme = readme_uri(one.base, session)
    secret = readme.replace("readme", "secret")
    assert result(rpc(one.base, session, "resources/subscribe", {"uri": readme})) == {}
    assert result(rpc(two.base, session, "resources/unsubscribe", {"uri": readme})) == {}
    assert result(rpc(two.base, session, "resources/subscribe", {"uri": secret})) == {}

    def upstream_of_one_follows() -> bool:  # each try is a request on `one`: it re-reads once it has heard
        called = rpc(one.base, session, "tools/call", {"name": "alpha__subscriptions", "arguments": {}})
        # `one`'s upstream is shared by every session there; only this one ever wants the secret
        return "res://alpha/secret" in str(result(called)["content"][0]["text"]).split(",")

    wait_until(upstream_of_one_follows, [one, two], timeout=5)
    assert updates_after_touch(one, session, readme) == [], "unsubscribed elsewhere"
    assert updates_after_touch(one, session, secret, "res://alpha/secret") == [secret], "subscribed elsewhere"
