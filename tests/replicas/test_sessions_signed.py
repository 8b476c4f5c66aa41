"""Signed session ids and the store that rebuilds them (in memory): what an id carries, that nothing
altered or foreign is accepted, and when a valid id is *not* rebuilt (no shared secret, another key,
a session its client ended, a key that stopped working after the id was issued); the per-key and
global caps hold for rebuilt sessions too."""

from __future__ import annotations

import time

import pytest

from gateway_app.settings import load_policy_source
from gateway_common.policy_state import PolicyState
from mcp_gateway.server.handshake import ClientCapability
from mcp_gateway.server.session_ids import CLIENT_FIELD_CHARS, SessionIds
from mcp_gateway.server.sessions import SessionLimitReached, SessionStore
from policies import Principal
from policies.secrets import hash_secret

ALICE = Principal("alice", "alice", None, "file")
BOB = Principal("bob", "bob", None, "file")
CAPS = ClientCapability.ROOTS | ClientCapability.ELICITATION


def shared(clock: float = 1_000_000.0) -> SessionIds:
    return SessionIds(b"s" * 32, shared=True, clock=lambda: clock)


def test_an_id_carries_what_another_replica_needs() -> None:
    ids = shared()
    session_id = ids.issue("alice", "2025-11-25", "client" * 40, "1.0", CAPS)
    claims = SessionIds(b"s" * 32, shared=True).read(session_id)
    assert claims is not None
    assert (claims.key_id, claims.protocol_version, claims.client_version) == ("alice", "2025-11-25", "1.0")
    assert claims.client_name is not None and len(claims.client_name) <= CLIENT_FIELD_CHARS
    assert claims.capabilities == CAPS and claims.issued_at == 1_000_000.0
    assert all(0x21 <= ord(ch) <= 0x7E for ch in session_id)  # visible ASCII, as the spec requires
    assert session_id != ids.issue("alice", "2025-11-25", "client", "1.0", CAPS)  # a fresh nonce each time


def test_altered_forged_and_foreign_ids_are_refused() -> None:
    ids = shared()
    session_id = ids.issue("alice", "2025-11-25", None, None, ClientCapability.NONE)
    nonce, claims, mac = session_id.split(".")
    other_claims = shared().issue("bob", "2025-11-25", None, None, ClientCapability.NONE).split(".")[1]
    for bad in (
        f"{nonce}.{other_claims}.{mac}",  # claims swapped under the same signature
        f"{'y' if nonce[0] == 'x' else 'x'}{nonce[1:]}.{claims}.{mac}",  # another nonce (1 in 64 began with x)
        f"{nonce}.{claims}.{mac[:-1]}A" if mac[-1] != "A" else f"{nonce}.{claims}.{mac[:-1]}B",
        session_id + ".",
        "",
        "a.b.c",
        "a" * 2000,
    ):
        assert ids.read(bad) is None, bad
    assert SessionIds(b"t" * 32, shared=True).read(session_id) is None  # another secret


def test_without_a_shared_secret_an_unknown_id_stays_unknown() -> None:
    issuer = SessionStore()
    session = issuer.create(ALICE, "2025-11-25", "c", "1", CAPS)
    other = SessionStore(ids=issuer.signer)  # same secret, but not shared: single-process behaviour
    assert not other.signer.shared
    assert other.get(session.id, ALICE) is None


def test_a_valid_id_is_rebuilt_for_its_own_key_only() -> None:
    ids = shared()
    session = SessionStore(ids=ids).create(ALICE, "2025-11-25", "c", "1", CAPS)
    replica = SessionStore(ids=shared())
    assert replica.get(session.id, BOB) is None
    rebuilt = replica.get(session.id, ALICE)
    assert rebuilt is not None and rebuilt.id == session.id
    assert (rebuilt.protocol_version, rebuilt.client_name, rebuilt.capabilities) == ("2025-11-25", "c", CAPS)
    assert replica.get(session.id, ALICE) is rebuilt and replica.rebuilt == 1


def test_an_ended_session_is_never_rebuilt_here_or_on_peers() -> None:
    issuer, peer = SessionStore(ids=shared()), SessionStore(ids=shared())
    told: list[str] = []
    issuer.on_end(told.append)
    session = issuer.create(ALICE, "2025-11-25", None, None, CAPS)
    assert peer.get(session.id, ALICE) is not None
    issuer.end(session)
    assert told == [session.id]
    assert issuer.get(session.id, ALICE) is None
    peer.forget(told[0])  # what the change bus does on the other replica
    assert peer.get(session.id, ALICE) is None and len(peer) == 0


def test_a_key_that_stopped_working_after_the_id_was_issued_gets_no_rebuilt_session() -> None:
    ended: dict[str, float] = {}
    store = SessionStore(
        ids=shared(clock=100.0), key_ended_after=lambda key, when: ended.get(key, -1) >= when
    )
    session_id = shared(clock=100.0).issue("alice", "2025-11-25", None, None, CAPS)
    ended["alice"] = 150.0
    assert store.get(session_id, ALICE) is None
    later = shared(clock=200.0).issue("alice", "2025-11-25", None, None, CAPS)  # opened after the end
    assert store.get(later, ALICE) is not None


def test_rebuilt_sessions_keep_to_the_per_key_and_global_caps() -> None:
    issuer = SessionStore(ids=shared(), max_per_key=1000)
    ids = [issuer.create(ALICE, "2025-11-25", None, None, CAPS).id for _ in range(5)]
    replica = SessionStore(ids=shared(), max_per_key=2, max_sessions=3)
    for session_id in ids:
        assert replica.get(session_id, ALICE) is not None
    assert len(replica.ids("alice")) == 2  # the key's least recently used ones were closed
    bob_ids = [SessionStore(ids=shared()).create(BOB, "2025-11-25", None, None, CAPS).id for _ in range(2)]
    assert replica.get(bob_ids[0], BOB) is not None
    with pytest.raises(SessionLimitReached):
        replica.get(bob_ids[1], BOB)
    assert len(replica) == 3


def test_from_environment() -> None:
    ids, warning = SessionIds.from_environment(None, {})
    assert not ids.shared and warning is None
    ids, warning = SessionIds.from_environment("SECRET", {})
    assert not ids.shared and warning is not None and "SECRET is not set" in warning
    ids, warning = SessionIds.from_environment("SECRET", {"SECRET": "short"})
    assert ids.shared and warning is not None and "fewer than" in warning
    ids, warning = SessionIds.from_environment("SECRET", {"SECRET": "x" * 64})
    assert ids.shared and warning is None


def test_check_warns_about_redis_counters_without_a_session_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    redis = "counters: {backend: redis, url: 'redis://127.0.0.1:6379/0'}\n"
    warnings = load_policy_source(redis).warnings
    assert any("gateway.session_secret_env is not set" in w for w in warnings), warnings
    monkeypatch.delenv("MCPGW_SECRET_FOR_CHECK", raising=False)
    named = redis + "gateway: {session_secret_env: MCPGW_SECRET_FOR_CHECK}\n"
    assert any("MCPGW_SECRET_FOR_CHECK is not set" in w for w in load_policy_source(named).warnings)
    monkeypatch.setenv("MCPGW_SECRET_FOR_CHECK", "x" * 64)
    assert not any("session_secret_env" in w for w in load_policy_source(named).warnings)


def test_the_policy_state_says_when_a_key_ended() -> None:
    with_key = load_policy_source(
        f"virtual_keys: [{{id: alice, secret_sha256: '{hash_secret('a' * 24)}'}}]\n"
    )
    state = PolicyState(with_key.policy, None, clock=time.time)
    issued = SessionIds(b"s" * 32, shared=True).issue("alice", "2025-11-25", None, None, CAPS)
    before = time.time() - 1
    state.swap_policy(load_policy_source("virtual_keys: []\n").policy)  # the key is gone
    assert state.ended_after("alice", before) and not state.ended_after("alice", time.time() + 60)
    store = SessionStore(ids=SessionIds(b"s" * 32, shared=True), key_ended_after=state.ended_after)
    assert store.get(issued, ALICE) is None
