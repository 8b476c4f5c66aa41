"""A reload builds its snapshot off the event loop and installs it later: keys read from the database
in between are not lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from gateway_common.keystore import create_key
from gateway_common.policy_state import PolicyState
from policies import GatewayPolicy, load_policy_text


def policy(team: str) -> GatewayPolicy:
    doc = {
        "gateway": {"key_refresh_seconds": 3600},
        "teams": [{"name": "a"}, {"name": "b"}],
        "virtual_keys": [{"id": "vk_db", "team": team}],
    }
    return load_policy_text(yaml.safe_dump(doc)).policy


@pytest.mark.anyio
async def test_keys_read_between_prepare_and_install_are_kept(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    create_schema(engine)
    state = PolicyState(policy("a"), engine, clock=time.time)
    await state.refresh_keys()
    prepared = state.prepare_policy(policy("b"))
    _, secret = create_key(engine, "vk_db")
    await state.refresh_keys()  # a key created while the reload was preparing
    installed = state.install(prepared)
    declared = installed.policy.key("vk_db")
    assert state.current is installed and declared is not None and declared.team == "b"
    principal, snapshot = await state.authenticate(secret)
    assert snapshot is installed and principal is not None and principal.team == "b"

    unchanged_keys = state.prepare_policy(policy("a"))
    assert state.install(unchanged_keys) is unchanged_keys.snapshot, "built once when nothing changed"
    engine.dispose()
