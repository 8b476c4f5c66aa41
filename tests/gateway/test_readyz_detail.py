"""/readyz: the status for anyone, the detail (upstream PIDs, errors, audit state) for an admin
token or a peer on this host.

The whole app with its lifespan, reached in memory so that each request can come from a chosen
peer address (a real socket on this machine is always loopback).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from gateway_app.app import create_app
from gateway_app.database import create_schema
from gateway_app.health import is_loopback_peer
from gateway_common.db import make_engine
from gateway_common.keystore import create_key
from policies.secrets import hash_secret
from tests.conftest import upstream_stdio
from tests.llm_proxy.conftest import settings_for

ADMIN = "adm-secret-0123456789abcdef"
AUDITOR = "aud-secret-0123456789abcdef"
KEY = "vk-secret-0123456789abcdef"
REMOTE = ("203.0.113.7", 40000)

Clients = Callable[[tuple[str, int] | None], httpx2.AsyncClient]


def config(**gateway: Any) -> dict[str, Any]:
    return {
        "gateway": gateway,
        "virtual_keys": [{"id": "k", "secret_sha256": hash_secret(KEY)}],
        "admin": {
            "tokens": [
                {"id": "ops", "role": "admin", "secret_env": "READYZ_ADMIN"},
                {"id": "audit", "role": "auditor", "secret_sha256": hash_secret(AUDITOR)},
            ]
        },
        "mcp": {"servers": [upstream_stdio("alpha")], "virtual_key_permissions": {"k": "*"}},
    }


@pytest.fixture(autouse=True)
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READYZ_ADMIN", ADMIN)


@contextlib.asynccontextmanager
async def gateway(cfg: dict[str, Any], tmp_path: Path) -> AsyncIterator[Clients]:
    """The app with its lifespan running; yields a factory of clients that come from a given peer."""
    app = create_app(settings_for(cfg, tmp_path))
    async with app.router.lifespan_context(app) as maybe_state:
        state: dict[str, Any] = dict(maybe_state or {})
        assert await state["runtime"].hub.wait_ready(30)

        def client(peer: tuple[str, int] | None) -> httpx2.AsyncClient:
            async def with_state(scope: Any, receive: Any, send: Any) -> None:
                await app({**scope, "state": dict(state), "client": peer}, receive, send)

            transport = httpx2.ASGITransport(app=with_state)
            return httpx2.AsyncClient(transport=transport, base_url="http://localhost", timeout=30)

        yield client


async def readyz(clients: Clients, peer: tuple[str, int] | None, token: str | None = None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with clients(peer) as http:
        return await http.get("/readyz", headers=headers)


def is_detail(response: httpx2.Response) -> bool:
    body = response.json()
    if set(body) == {"status"}:
        return False
    assert body["upstreams"][0]["name"] == "alpha" and "pid" in body["upstreams"][0]
    assert "audit" in body and "sessions" in body
    assert body["audit"]["writer_process"]["pid"] > 0  # the rows are stored by the writer process
    return True


@pytest.mark.anyio
async def test_a_remote_peer_without_a_token_sees_only_the_status(tmp_path: Path) -> None:
    async with gateway(config(), tmp_path) as clients:
        remote = await readyz(clients, REMOTE)
        unknown = await readyz(clients, None)  # e.g. a unix socket: not known to be local
        local = await readyz(clients, ("127.0.0.1", 5000))
    assert remote.status_code == unknown.status_code == local.status_code == 200
    assert remote.json() == unknown.json() == {"status": "ready"}
    assert is_detail(local)


@pytest.mark.anyio
async def test_the_public_answer_keeps_the_status_code(tmp_path: Path) -> None:
    broken = config()
    broken["mcp"]["servers"] = [{"name": "gone", "command": str(tmp_path / "no-such-program")}]
    broken["mcp"]["startup_wait_seconds"] = 0  # it will never come up: no point waiting for it
    app = create_app(settings_for(broken, tmp_path))
    async with app.router.lifespan_context(app) as maybe_state:
        state: dict[str, Any] = dict(maybe_state or {})

        async def remote_app(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, "state": dict(state), "client": REMOTE}, receive, send)

        transport = httpx2.ASGITransport(app=remote_app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://localhost") as http:
            public = await http.get("/readyz")
            detail = await http.get("/readyz", headers={"Authorization": f"Bearer {ADMIN}"})
    assert public.status_code == detail.status_code == 503
    assert public.json() == {"status": "no_upstream_ready"}
    assert detail.json()["status"] == "no_upstream_ready" and detail.json()["upstreams"][0]["name"] == "gone"


@pytest.mark.anyio
async def test_admin_and_auditor_tokens_see_the_detail_from_anywhere(tmp_path: Path) -> None:
    async with gateway(config(health_details="token"), tmp_path) as clients:
        for token in (ADMIN, AUDITOR):
            assert is_detail(await readyz(clients, REMOTE, token))
            assert is_detail(await readyz(clients, ("127.0.0.1", 5000), token))
        # With health_details: token, a local peer needs a token too.
        local = await readyz(clients, ("127.0.0.1", 5000))
        assert local.status_code == 200 and local.json() == {"status": "ready"}


@pytest.mark.anyio
async def test_a_wrong_token_or_a_virtual_key_is_401(tmp_path: Path) -> None:
    async with gateway(config(), tmp_path) as clients:
        for token in ("wrong", KEY, ADMIN + "x"):
            for peer in (REMOTE, ("127.0.0.1", 5000)):
                response = await readyz(clients, peer, token)
                assert response.status_code == 401, token
                assert response.json()["error"] == "unauthorized"
                assert "upstreams" not in response.text


@pytest.mark.anyio
async def test_an_admin_token_that_is_also_a_virtual_key_is_refused_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two variables with one value: the secret works as the virtual key, never as an admin token."""
    monkeypatch.setenv("READYZ_ADMIN", KEY)
    monkeypatch.delenv("READYZ_UNSET", raising=False)
    cfg = config()
    cfg["admin"]["tokens"].append({"id": "unset", "role": "admin", "secret_env": "READYZ_UNSET"})
    with caplog.at_level(logging.WARNING, logger="mcp_gateway"):
        async with gateway(cfg, tmp_path) as clients:
            assert (await readyz(clients, REMOTE, KEY)).status_code == 401
            assert is_detail(await readyz(clients, REMOTE, AUDITOR))
    assert "admin token 'ops' has the same secret as a virtual key" in caplog.text
    assert "admin token 'unset': environment variable READYZ_UNSET is not set" in caplog.text
    assert KEY not in caplog.text


@pytest.mark.anyio
async def test_an_admin_token_holding_a_database_key_secret_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    create_schema(engine)
    _, secret = create_key(engine, "k")
    engine.dispose()
    monkeypatch.setenv("READYZ_ADMIN", secret)
    async with gateway(config(), tmp_path) as clients:
        assert (await readyz(clients, REMOTE, secret)).status_code == 401
        assert is_detail(await readyz(clients, REMOTE, AUDITOR))


@pytest.mark.parametrize(
    ("peer", "local"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.10", 1), True),
        (("::1", 1), True),
        (("::ffff:127.0.0.1", 1), True),
        (("10.0.0.1", 1), False),
        (("::ffff:10.0.0.1", 1), False),
        (("localhost", 1), False),  # not an address: not trusted
        (None, False),
    ],
)
def test_loopback_peers(peer: tuple[str, int] | None, local: bool) -> None:
    assert is_loopback_peer(peer) is local
