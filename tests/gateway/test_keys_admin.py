"""The key service (`gateway_app.keys_admin`): what a key change may be, checked against the policy
with the policy file's own models, and what it writes (settings on every secret, rotation grace
periods, the change counter gateways poll)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine

from gateway_app.database import create_schema
from gateway_app.keys_admin import KeyNotFound, KeyRequestError, KeysAdmin, parse_settings
from gateway_common.db import make_engine
from gateway_common.keystore import key_change_version, load_stored_keys
from policies import GatewayPolicy, load_policy_text
from policies.keys import KeySettings
from policies.secrets import hash_secret

POLICY: dict[str, Any] = {
    "teams": [{"name": "backend"}, {"name": "frontend"}],
    "virtual_keys": [
        {"id": "vk_declared", "team": "backend"},
        {"id": "vk_file", "secret_sha256": hash_secret("file-secret")},
    ],
    "mcp": {"servers": [{"name": "fs", "command": "true"}, {"name": "db", "command": "true"}]},
}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    create_schema(engine)
    yield engine
    engine.dispose()


def policy() -> GatewayPolicy:
    return load_policy_text(yaml.safe_dump(POLICY)).policy


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"rate_limit": {"requests_per_minute": 0}},
            "rate_limit.requests_per_minute: Input should be greater",
        ),
        ({"rate_limit": {"request_per_minute": 5}}, "rate_limit.request_per_minute: unknown field"),
        ({"budget": {"alert_threshold": 0.5}}, "budget: a budget needs at least one of daily_limit_usd"),
        (
            {"budget": {"daily_limit_usd": -1}},
            "budget.daily_limit_usd: Input should be greater than or equal",
        ),
        ({"tool_permissions": {"fs": 3}}, 'tool_permissions must be "*", a list of servers, or {server:'),
        ({"tool_permissions": "all"}, 'tool_permissions must be "*", a list of servers'),
        ({"allowed_models": [""]}, "allowed_models: model names and globs must be non-empty"),
        ({"team": "no spaces allowed"}, "team: String should match pattern"),
        ({"colour": "red"}, "colour: unknown field"),
    ],
)
def test_settings_are_validated_with_the_policy_files_models(values: dict[str, Any], message: str) -> None:
    with pytest.raises(KeyRequestError) as refused:
        parse_settings(values)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("key_id", "settings", "message"),
    [
        (
            "vk_new",
            {"team": "bakend"},
            "team 'bakend' is not declared under teams (known teams: backend, frontend)",
        ),
        (
            "vk_new",
            {"tool_permissions": ["fs", "tickets"]},
            "names servers the policy does not define: tickets",
        ),
        ("vk_new", {"tool_permissions": {"nope": "*"}}, "names servers the policy does not define: nope"),
        ("vk_declared", {"team": "frontend"}, "declared in the policy file with team 'backend'"),
        (
            "vk_declared",
            {"allowed_models": ["x"]},
            "declared in the policy file, which decides its allowed_models",
        ),
        ("bad id!", {}, "key id 'bad id!' must be 1-128 letters"),
        ("vk_new", {"expires_at": "2020-01-01T00:00:00Z"}, "is in the past"),
    ],
)
def test_create_refuses_what_the_policy_does_not_allow(
    engine: Engine, key_id: str, settings: dict[str, Any], message: str
) -> None:
    admin = KeysAdmin(engine, policy())
    with pytest.raises(KeyRequestError) as refused:
        admin.create(key_id, parse_settings(settings))
    assert message in str(refused.value)
    assert load_stored_keys(engine) == ()
    assert key_change_version(engine) == 0


def test_without_a_policy_a_team_or_tool_permissions_cannot_be_checked(engine: Engine) -> None:
    admin = KeysAdmin(engine, None)
    for settings in ({"team": "backend"}, {"tool_permissions": "*"}):
        with pytest.raises(KeyRequestError, match="checked against the policy: give --config FILE"):
            admin.create("vk_new", parse_settings(settings))
    issued = admin.create(
        "vk_new", parse_settings({"allowed_models": ["claude-*"], "budget": {"daily_limit_usd": 1}})
    )
    assert issued.key.settings.allowed_models == ["claude-*"]


def test_create_stores_every_setting_and_returns_the_secret_once(engine: Engine) -> None:
    admin = KeysAdmin(engine, policy())
    settings = parse_settings(
        {
            "name": "Sam",
            "team": "backend",
            "allowed_models": ["claude-haiku-*"],
            "rate_limit": {"requests_per_minute": 30},
            "budget": {"daily_limit_usd": 5, "alert_threshold": 0.8},
            "tool_permissions": {"fs": ["read_*"]},
            "expires_at": "2027-01-01T00:00:00Z",
        }
    )
    issued = admin.create("vk_sam", settings)
    assert issued.secret.startswith("mgw_") and issued.key.current_prefix == issued.secret[:10]
    assert issued.key.settings == settings and issued.key.state == "active"
    (stored,) = load_stored_keys(engine)
    assert stored.settings == settings
    assert [s.sha256 for s in stored.secrets] == [hash_secret(issued.secret)]
    assert issued.secret not in str(admin.show("vk_sam").to_json())
    assert key_change_version(engine) == 1
    with pytest.raises(KeyRequestError, match="already exists: `keys rotate vk_sam`"):
        admin.create("vk_sam", KeySettings())


def test_update_merges_changes_and_unset_returns_a_setting_to_inheriting(engine: Engine) -> None:
    admin = KeysAdmin(engine, policy())
    admin.create("vk_sam", parse_settings({"team": "backend", "rate_limit": {"requests_per_minute": 30}}))
    changed = admin.update(
        "vk_sam", {"budget": {"monthly_limit_usd": 50}, "team": "frontend"}, unset=["rate_limit"]
    )
    assert (changed.settings.team, changed.settings.rate_limit) == ("frontend", None)
    assert changed.settings.budget is not None and changed.settings.budget.monthly_limit_usd == 50
    assert load_stored_keys(engine)[0].settings == changed.settings
    assert key_change_version(engine) == 2
    with pytest.raises(KeyRequestError, match="team 'ops' is not declared"):
        admin.update("vk_sam", {"team": "ops"})
    with pytest.raises(KeyRequestError, match="nothing to change"):
        admin.update("vk_sam", {})
    with pytest.raises(KeyRequestError, match="unknown setting"):
        admin.update("vk_sam", {}, unset=["colour"])
    with pytest.raises(KeyNotFound):
        admin.update("vk_nobody", {"name": "x"})
    assert key_change_version(engine) == 2


def test_rotation_keeps_the_old_secret_for_its_grace_and_only_ever_shortens_it(engine: Engine) -> None:
    clock = Clock()
    admin = KeysAdmin(engine, policy(), clock=clock)
    first = admin.create("vk_sam", parse_settings({"team": "backend", "allowed_models": ["claude-*"]}))
    second = admin.rotate("vk_sam", timedelta(hours=24))
    assert second.secret != first.secret
    assert second.replaced_until == clock.now + timedelta(hours=24)
    assert second.key.settings == first.key.settings  # the new secret is the same key
    assert [s.state for s in second.key.secrets] == ["active", "grace"]
    clock.now += timedelta(minutes=5)
    third = admin.rotate("vk_sam", timedelta(0))  # leaked: every older secret stops now
    (stored,) = load_stored_keys(engine, clock.now)
    grace = {s.sha256: s.grace_until for s in stored.secrets}
    assert grace == {
        hash_secret(first.secret): clock.now,
        hash_secret(second.secret): clock.now,
        hash_secret(third.secret): None,
    }
    assert admin.verify_secret("vk_sam", third.secret)
    assert not admin.verify_secret("vk_sam", second.secret)
    assert key_change_version(engine) == 3
    with pytest.raises(KeyRequestError, match="cannot be negative"):
        admin.rotate("vk_sam", timedelta(seconds=-1))


def test_an_expired_key_is_renewed_before_it_is_rotated(engine: Engine) -> None:
    clock = Clock()
    admin = KeysAdmin(engine, policy(), clock=clock)
    admin.create("vk_sam", parse_settings({"expires_at": clock.now + timedelta(days=1)}))
    clock.now += timedelta(days=2)
    assert admin.show("vk_sam").state == "expired"
    with pytest.raises(
        KeyRequestError, match=r"expired on 2026-12-02 12:00 UTC: renew it first \(`keys update"
    ):
        admin.rotate("vk_sam")
    admin.update("vk_sam", {"expires_at": clock.now + timedelta(days=30)})
    assert admin.rotate("vk_sam").key.state == "active"


def test_revoke_ends_database_secrets_and_the_files_secret(engine: Engine) -> None:
    admin = KeysAdmin(engine, policy())
    admin.create("vk_sam", KeySettings())
    admin.rotate("vk_sam")
    result = admin.revoke("vk_sam")
    assert (result.database_secrets, result.file_secret) == (2, False)
    assert admin.show("vk_sam").state == "revoked" and admin.keys() == []
    assert [k.key_id for k in admin.keys(include_revoked=True)] == ["vk_sam"]
    assert admin.verify_secret("vk_file", "file-secret")
    file_result = admin.revoke("vk_file")
    assert (file_result.database_secrets, file_result.file_secret) == (0, True)
    assert not admin.verify_secret("vk_file", "file-secret")
    again = admin.revoke("vk_file")
    assert (again.file_secret, again.file_secret_already_revoked) == (False, True)
    assert key_change_version(engine) == 4  # create, rotate, revoke, file revocation
    # After a revocation the id can be given a new key.
    assert admin.create("vk_sam", KeySettings()).key.state == "active"


def test_the_same_on_postgresql() -> None:
    """JSON settings, rotation and the change counter on PostgreSQL (a database of this test's own)."""
    from tests.postgres import scratch_database

    with scratch_database("keys_test") as url:
        engine = make_engine(url)
        try:
            create_schema(engine)
            admin = KeysAdmin(engine, policy())
            settings = parse_settings(
                {"team": "backend", "budget": {"weekly_limit_usd": 3}, "tool_permissions": "*"}
            )
            first = admin.create("vk_pg", settings)
            admin.rotate("vk_pg", timedelta(minutes=10))
            admin.update("vk_pg", {"allowed_models": ["claude-*"]})
            (stored,) = load_stored_keys(engine)
            assert stored.settings == settings.model_copy(update={"allowed_models": ["claude-*"]})
            assert len(stored.secrets) == 2 and admin.verify_secret("vk_pg", first.secret)
            assert admin.revoke("vk_pg").database_secrets == 2
            assert load_stored_keys(engine) == () and key_change_version(engine) == 4
        finally:
            engine.dispose()
