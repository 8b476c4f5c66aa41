"""The whole gateway behind an egress proxy: MCP upstreams (HTTPS with a company CA, and plain HTTP) and a
model provider (the mock model API over TLS) reached through a CONNECT proxy on loopback.

The upstreams are named ``*.test``: only the test proxy resolves those names, so a request that
succeeded can only have gone through it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from examples.servers.mock_model_api import MockModelApi, MockOptions
from tests.conftest import free_port, mcp_client, run_gateway
from tests.fixtures.connect_proxy import ConnectProxy
from tests.fixtures.tls import Issued, TestCA
from tests.fixtures.upstream import build
from tests.llm_proxy.conftest import PROVIDER_KEY, proxy_config, start_proxy

pytestmark = pytest.mark.anyio
KEY = "alice-secret-0123456789"


@contextlib.asynccontextmanager
async def serve(app: Any, tls: Issued | None = None, lifespan: str = "off") -> AsyncIterator[int]:
    """``app`` on uvicorn on a free loopback port (TLS with ``tls``); yields the port."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,  # type: ignore[arg-type]
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server did not start")
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ConnectProxy]:
    async with ConnectProxy(credentials=("gateway", "pr0xy-pass")) as running:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.lower(), raising=False)
        monkeypatch.setenv("HTTPS_PROXY", running.url_with("gateway", "pr0xy-pass"))
        monkeypatch.setenv("HTTP_PROXY", running.url_with("gateway", "pr0xy-pass"))
        monkeypatch.setenv(
            "NO_PROXY", "127.0.0.1,localhost"
        )  # the tests' own clients talk to the gateway directly
        yield running


async def test_mcp_upstreams_over_https_and_http_through_the_proxy(
    tmp_path: Path, keys_env: dict[str, str], proxy: ConnectProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ca = TestCA(tmp_path / "ca")
    secure_app = build("secure", None).streamable_http_app(host="0.0.0.0")
    plain_app = build("plain", None).streamable_http_app(host="0.0.0.0")
    async with (
        serve(secure_app, ca.issue("upstream"), lifespan="on") as secure_port,
        serve(plain_app, lifespan="on") as plain_port,
    ):
        config = {
            "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
            "mcp": {
                "servers": [
                    {
                        "name": "secure",
                        "url": f"https://upstream.test:{secure_port}/mcp",
                        "tls": {"ca_bundle": str(ca.cert_path)},
                    },
                    {"name": "plain", "url": f"http://upstream.test:{plain_port}/mcp"},
                ],
                "virtual_key_permissions": {"alice": ["secure", "plain"]},
            },
        }
        async with run_gateway(config, tmp_path) as gw, mcp_client(gw.url, KEY) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"secure__echo", "plain__echo"} <= names
            for server in ("secure", "plain"):
                result = await client.call_tool(f"{server}__echo", {"text": f"via the proxy to {server}"})
                assert result.content[0].text == f"via the proxy to {server}"  # type: ignore[union-attr]
    assert f"CONNECT upstream.test:{secure_port}" in proxy.requests
    assert f"POST http://upstream.test:{plain_port}/mcp" in proxy.requests
    assert all(
        "upstream.test" in request for request in proxy.requests
    )  # the client->gateway leg bypassed it
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert (
        f"HTTP client for https://upstream.test:{secure_port}: httpx (proxy http://127.0.0.1:{proxy.port} from HTTPS_PROXY; tls.ca_bundle in the policy)"
        in logged
    )
    assert "pr0xy-pass" not in logged


async def test_messages_reach_a_tls_provider_only_through_the_proxy(
    tmp_path: Path, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", PROVIDER_KEY)
    ca = TestCA(tmp_path / "ca")
    api = MockModelApi(MockOptions())
    async with serve(api, ca.issue("provider")) as port:
        config = proxy_config(f"https://provider.test:{port}")
        config["providers"][0]["tls"] = {"ca_bundle": str(ca.cert_path)}
        async with start_proxy(config, tmp_path / "through") as gateway:
            whole = await gateway.messages()
            assert whole.status_code == 200 and whole.json()["type"] == "message"
            streamed = await gateway.messages(stream=True)
            assert streamed.status_code == 200 and b"event: message_stop" in streamed.content
            rows = await gateway.ledger()
            assert [(r.status, r.provider, r.usage_estimated) for r in rows] == [("ok", "primary", False)] * 2
            assert gateway.llm.providers["primary"].pool.in_use == 0
        assert proxy.requests == [f"CONNECT provider.test:{port}"]  # one tunnel, kept alive
        assert [r.path for r in api.received] == ["/v1/messages", "/v1/messages"]

        # Without the proxy, provider.test cannot even be resolved: the answers above came through it.
        with pytest.MonkeyPatch.context() as env:
            env.delenv("HTTPS_PROXY")
            async with start_proxy(config, tmp_path / "direct") as gateway:
                refused = await gateway.messages()
                assert refused.status_code == 502
                assert "cannot connect" in refused.json()["error"]["message"]
