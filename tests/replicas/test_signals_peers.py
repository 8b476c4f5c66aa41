"""The wiring between the change bus and a gateway (`gateway_app.peers`), two real apps in one loop on
an in-process bus: the replica that notices a key change publishes it and the other applies it; a
reload through one's API makes the other reload the same content (trigger ``peer``), and one whose
file differs refuses and records why; a resync re-reads a file that changed meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from gateway_app.app import create_app
from gateway_app.keys_admin import KeysAdmin
from gateway_app.reload import PolicySource, Reloader
from gateway_app.reload_log import ReloadOutcome
from gateway_app.serving import uvicorn_config
from gateway_app.settings import Settings, load_policy_file
from gateway_common.policy_state import PolicyState
from gateway_common.signals import RESYNC, Change, MemoryBroker, MemoryBus
from policies.keys import KeySettings
from policies.secrets import hash_secret
from tests.conftest import free_port

pytestmark = pytest.mark.anyio


@dataclass
class App:
    state: PolicyState
    reloader: Reloader
    bus: MemoryBus


def doc(database: Path, permissions: Any = "*") -> dict[str, Any]:
    return {
        "virtual_keys": [{"id": "k", "secret_sha256": hash_secret("peer-key-0123456789")}],
        "teams": [{"name": "eng"}],
        "mcp": {
            "servers": [],
            "team_permissions": {"eng": "*"},
            "virtual_key_permissions": {"k": permissions},
        },
        "gateway": {"database_url": f"sqlite:///{database}", "key_refresh_seconds": 60},
    }


@contextlib.asynccontextmanager
async def running(path: Path, broker: MemoryBroker) -> AsyncIterator[App]:
    settings = Settings.from_loaded(load_policy_file(path))
    bus = MemoryBus(broker)
    app = create_app(settings, policy_source=PolicySource(path), change_bus=bus)
    server = uvicorn.Server(
        uvicorn_config(app, settings.policy.gateway, port=free_port(), log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield App(app.state.runtime.state, app.state.reloader, bus)
    finally:
        app.state.shutdown.trigger()
        server.should_exit = True
        await task


async def eventually(condition: Any, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_the_replica_that_notices_a_key_change_tells_the_other(tmp_path: Path) -> None:
    database = tmp_path / "shared.db"
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc(database)))
    broker = MemoryBroker()
    async with running(tmp_path / "one.yaml", broker) as one, running(tmp_path / "two.yaml", broker) as two:
        heard: list[Change] = []

        async def collect(change: Change) -> None:
            heard.append(change)

        two.bus.subscribe(collect)
        assert one.state.engine is not None
        issued = await asyncio.to_thread(
            KeysAdmin(one.state.engine, one.state.policy).create, "dev", KeySettings(team="eng")
        )
        digest = hash_secret(issued.secret)
        assert await one.state.refresh_if_changed()  # what its poll (or an unknown secret) does
        await eventually(lambda: any(c.kind == "keys" for c in heard))
        assert [c.payload for c in heard if c.kind == "keys"] == [{"version": one.state.change_version}]
        await eventually(lambda: two.state.current.principal_for(digest) is not None)
        # told of its own change it does not tell again: one message only
        await asyncio.sleep(0.05)
        assert len([c for c in heard if c.kind == "keys"]) == 1
        # A change this process makes and reads at once (the admin API's path) is told too.
        await asyncio.to_thread(KeysAdmin(one.state.engine, one.state.policy).revoke, "dev")
        await one.state.refresh_keys()
        await eventually(lambda: len([c for c in heard if c.kind == "keys"]) == 2)
        await eventually(lambda: two.state.current.principal_for(digest) is None)


async def test_a_reload_through_one_replica_reaches_the_other(tmp_path: Path) -> None:
    database = tmp_path / "shared.db"
    first, second = tmp_path / "one.yaml", tmp_path / "two.yaml"
    for path in (first, second):
        path.write_text(yaml.safe_dump(doc(database)))
    broker = MemoryBroker()
    async with running(first, broker) as one, running(second, broker) as two:
        for path in (first, second):
            path.write_text(yaml.safe_dump(doc(database, [])))
        record = await one.reloader.reload("api")
        assert record.outcome is ReloadOutcome.APPLIED
        await eventually(lambda: any(r.trigger == "peer" for r in two.reloader.history()))
        followed = next(r for r in two.reloader.history() if r.trigger == "peer")
        assert followed.outcome is ReloadOutcome.APPLIED
        assert two.state.policy == one.state.policy
        assert not any(r.trigger == "peer" for r in one.reloader.history())  # never its own

        # Files that differ: the follower refuses, says why, and keeps its policy.
        first.write_text(yaml.safe_dump(doc(database, ["*"])))
        kept = two.state.policy
        assert (await one.reloader.reload("signal")).outcome is ReloadOutcome.APPLIED
        await eventually(lambda: two.reloader.history()[0].outcome is ReloadOutcome.REFUSED)
        refused = two.reloader.history()[0]
        assert (
            refused.trigger == "peer" and "replicas must share the policy file's content" in refused.errors[0]
        )
        assert two.state.policy == kept

        # A resync (after the bus was cut) re-reads a file that changed meanwhile, and only then.
        second.write_text(yaml.safe_dump(doc(database, ["*"])))
        two.bus.hear(Change(RESYNC))
        await eventually(lambda: two.reloader.history()[0].outcome is ReloadOutcome.APPLIED)
        count = len(two.reloader.history())
        two.bus.hear(Change(RESYNC))
        await asyncio.sleep(0.1)
        assert len(two.reloader.history()) == count
