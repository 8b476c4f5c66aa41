"""Database keys in the policy snapshot: their own settings win over their team's exactly as a file
key's do, unset ones inherit, a key the file declares is the file's; rotated and expired secrets are
refused with a reason only their holders hear; a swap names the keys it ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from policies import load_policy_text
from policies.keys import KeySettings
from policies.secrets import hash_secret
from policies.snapshot import PolicySnapshot, StoredKey, StoredSecret, build_snapshot, ended_key_ids

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY: dict[str, Any] = {
    "teams": [
        {
            "name": "backend",
            "allowed_models": ["claude-sonnet-*"],
            "rate_limit": {"requests_per_minute": 100},
        }
    ],
    "virtual_keys": [{"id": "vk_file", "team": "backend", "rate_limit": {"requests_per_minute": 7}}],
    "mcp": {
        "servers": [{"name": "fs", "command": "true"}, {"name": "db", "command": "true"}],
        "team_permissions": {"backend": ["fs"]},
    },
    "providers": [{"name": "p", "kind": "anthropic", "base_url": "http://127.0.0.1:9"}],
    "routes": [{"match": "claude-*", "provider": "p"}],
    "budgets": {"teams": [{"name": "backend", "monthly_limit_usd": 100}]},
}


def snapshot(*stored: StoredKey, policy: dict[str, Any] | None = None, now: datetime = NOW) -> PolicySnapshot:
    loaded = load_policy_text(yaml.safe_dump(policy or POLICY)).policy
    built, _ = build_snapshot(loaded, version=1, environ={}, stored_keys=stored, clock=now.timestamp)
    return built


def key(key_id: str, secret: str, grace_until: datetime | None = None, **settings: Any) -> StoredKey:
    return StoredKey(key_id, KeySettings(**settings), (StoredSecret(hash_secret(secret), grace_until),))


def test_own_settings_win_over_the_team_and_unset_ones_inherit() -> None:
    own = key(
        "vk_own",
        "s-own",
        team="backend",
        allowed_models=["claude-haiku-*"],
        rate_limit={"requests_per_minute": 5, "tool_calls_per_minute": 9},
        budget={"daily_limit_usd": 2, "alert_threshold": 0.5},
        tool_permissions={"db": ["query"]},
    )
    plain = key("vk_plain", "s-plain", team="backend")
    snap = snapshot(own, plain)
    me, other = snap.identify("s-own"), snap.identify("s-plain")
    assert me is not None and other is not None
    assert (me.key_id, me.team, me.source) == ("vk_own", "backend", "database")

    grant = snap.grant(me)
    assert grant.source == "key:vk_own" and grant.allows("db", "query") and not grant.allows("fs", "read")
    assert snap.grant(other).source == "team:backend" and snap.grant(other).allows("fs", "read")

    # The key's own limits and its team's both apply, as for a file key.
    assert [(w.scope, w.metric, w.value) for w in snap.rate_plan(me).windows] == [
        ("key:vk_own", "requests_per_minute", 5),
        ("team:backend", "requests_per_minute", 100),
    ]
    assert [(t.scope, t.value) for t in snap.rate_plan(me).tool_calls] == [("key:vk_own", 9)]
    assert [w.scope for w in snap.rate_plan(other).windows] == ["team:backend"]

    assert [(s.ident, s.limits, s.alert_threshold) for s in snap.caller_budgets(me)] == [
        ("team:backend", (("monthly", 100.0),), None),
        ("key:vk_own", (("daily", 2.0),), 0.5),
    ]
    assert [s.ident for s in snap.caller_budgets(other)] == ["team:backend"]
    # Spend recorded before a restart is restored into the key's budget too.
    assert "key:vk_own" in {s.ident for s in snap.budget_scopes.all_scopes()}

    assert snap.router.allows(me, "claude-haiku-4-5") and not snap.router.allows(me, "claude-sonnet-4-5")
    assert snap.router.allows(other, "claude-sonnet-4-5") and not snap.router.allows(
        other, "claude-haiku-4-5"
    )


def test_a_database_key_with_a_file_keys_id_is_the_file_key() -> None:
    stored = key(
        "vk_file", "s-file", team="other", rate_limit={"requests_per_minute": 1}, tool_permissions="*"
    )
    snap = snapshot(stored)
    me = snap.identify("s-file")
    assert me is not None and (me.team, me.source) == ("backend", "database")
    assert snap.grant(me).source == "team:backend"
    assert [(w.scope, w.value) for w in snap.rate_plan(me).windows] == [
        ("key:vk_file", 7),
        ("team:backend", 100),
    ]


def test_a_rotated_secret_works_until_its_grace_ends_then_its_holder_is_told_why() -> None:
    until = NOW + timedelta(hours=1)
    rotated = StoredKey(
        "vk_rot",
        KeySettings(team="backend"),
        (StoredSecret(hash_secret("old"), until), StoredSecret(hash_secret("new"))),
    )
    during = snapshot(rotated)
    assert during.identify("old") is not None and during.identify("new") is not None
    assert during.refusal("old") is None

    after = snapshot(rotated, now=until + timedelta(seconds=1))
    assert after.identify("old") is None
    assert after.identify("new") is not None
    message = after.refusal("old")
    assert message is not None
    assert "replaced by a new one" in message and "2026-12-01 13:00:00 UTC" in message
    assert after.refusal("never-issued") is None and after.refusal("new") is None


def test_an_expired_key_is_refused_with_its_date_and_an_unknown_secret_learns_nothing() -> None:
    expired = key("vk_old", "s-old", expires_at=NOW - timedelta(days=1))
    snap = snapshot(expired)
    assert snap.identify("s-old") is None
    assert snap.refusal("s-old") == (
        "Virtual key 'vk_old' expired on 2026-11-30 12:00:00 UTC: ask the gateway's administrator to renew it"
    )
    assert snap.refusal("s-unknown") is None
    # A key expiring before the end of a rotation's grace ends at its expiry, said as an expiry.
    both = key("vk_both", "s-both", grace_until=NOW + timedelta(hours=2), expires_at=NOW - timedelta(hours=1))
    refusal = snapshot(both).refusal("s-both")
    assert refusal is not None and "expired on 2026-12-01 11:00:00 UTC" in refusal


def test_a_swap_names_the_keys_it_ended_and_not_those_it_kept() -> None:
    a, b = key("vk_a", "s-a"), key("vk_b", "s-b")
    before = snapshot(a, b)
    assert ended_key_ids(before, snapshot(b), NOW) == {"vk_a"}  # revoked
    rotated = StoredKey(
        "vk_a",
        KeySettings(),
        (StoredSecret(hash_secret("s-a"), NOW + timedelta(hours=1)), StoredSecret(hash_secret("s-a2"))),
    )
    assert ended_key_ids(before, snapshot(rotated, b), NOW) == frozenset()  # rotated with a grace period
    cut = StoredKey(
        "vk_a", KeySettings(), (StoredSecret(hash_secret("s-a"), NOW), StoredSecret(hash_secret("s-a2")))
    )
    assert ended_key_ids(before, snapshot(cut, b), NOW) == {"vk_a"}  # rotated with no grace
    expired_now = key("vk_b", "s-b", expires_at=NOW - timedelta(seconds=1))
    assert ended_key_ids(before, snapshot(a, expired_now), NOW) == {"vk_b"}  # expiry moved into the past
    # Revoked and re-created between two reloads: the old secret still ended.
    assert ended_key_ids(before, snapshot(key("vk_a", "s-a-new"), b), NOW) == {"vk_a"}
