"""A provider carried by the httpx-based client (what a provider behind a proxy gets) behaves like one on the
fast pool: silent streams time out, cancelled requests give their connection back, streams are costed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.llm_proxy.conftest import mock_api, proxy_config, serve, start_proxy
from tests.llm_proxy.test_upstream_client import events, stalling_provider

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]


def httpx_config(url: str) -> dict[str, object]:
    config = proxy_config(url)
    config["providers"][0]["http_client"] = "httpx"
    return config


async def test_whole_and_streamed_answers(tmp_path: Path) -> None:
    async with mock_api() as (_api, url), start_proxy(httpx_config(url), tmp_path) as proxy:
        assert type(proxy.llm.providers["primary"].pool).__name__ == "HttpxClient"
        assert (await proxy.messages()).status_code == 200
        streamed = await proxy.messages(stream=True)
        assert streamed.status_code == 200 and events(streamed.content)[-1][0] == "message_stop"
        rows = await proxy.ledger()
        assert [(r.status, r.usage_estimated) for r in rows] == [("ok", False), ("ok", False)]
        assert rows[1].output_tokens > 0
        pool = proxy.llm.providers["primary"].pool
        assert (pool.in_use, pool.open_connections) == (0, 1)  # kept alive, reused


async def test_a_stream_that_goes_silent_ends_after_the_provider_timeout(tmp_path: Path) -> None:
    release = asyncio.Event()
    async with serve(stalling_provider(release)) as url:
        config = httpx_config(url)
        config["providers"][0]["timeout"] = 0.3  # type: ignore[index]
        async with start_proxy(config, tmp_path) as proxy:
            async with asyncio.timeout(10):
                response = await proxy.messages(stream=True)
            name, data = events(response.content)[-1]
            assert name == "error"
            assert data["error"]["message"] == "provider 'primary' broke off the stream: timed out"
            [row] = await proxy.ledger()
            assert (row.status, row.input_tokens) == ("timeout", 7)
            await asyncio.sleep(0.05)
            pool = proxy.llm.providers["primary"].pool
            assert (pool.in_use, pool.open_connections) == (0, 0)
        release.set()


@pytest.mark.parametrize("stall", ["headers", "body", "stream"])
async def test_a_cancelled_request_gives_its_provider_connection_back(tmp_path: Path, stall: str) -> None:
    release = asyncio.Event()
    async with serve(stalling_provider(release, stall)) as url:
        async with start_proxy(httpx_config(url), tmp_path) as proxy:
            pool = proxy.llm.providers["primary"].pool
            request = asyncio.create_task(proxy.messages(stream=True))
            while pool.in_use == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)  # the gateway waits in request, try_target or the relay
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request
            await asyncio.sleep(0.05)
            assert (pool.in_use, pool.open_connections) == (0, 0)
            [row] = await proxy.ledger()
            assert row.status == "cancelled"
        release.set()
