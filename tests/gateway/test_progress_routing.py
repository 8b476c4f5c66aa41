"""Progress and log messages reach the caller whose request caused them, and no one else.

Two callers (different keys, different eras) call the same upstream at the same time; the
upstream's ``chatty`` tool waits until both are in, then sends progress and log messages naming
its caller. Progress carries its token on every transport. Log messages carry no relation on
stdio: there the gateway relays one only while a single call is in flight (with several it
cannot tell whose it is, so it relays it to nobody); on streamable HTTP they come on the call's
own stream and always reach their caller.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_types import LoggingMessageNotificationParams

from tests.conftest import mcp_client, run_gateway
from tests.gateway.client_requests_support import BOB, KEY, policy, upstream_entry


class Seen:
    def __init__(self) -> None:
        self.progress: list[str] = []
        self.logs: list[str] = []

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append(str(message))

    async def on_log(self, params: LoggingMessageNotificationParams) -> None:
        self.logs.append(str(params.data))


def client_options(seen: Seen, mode: str) -> dict[str, Any]:
    options: dict[str, Any] = {"logging_callback": seen.on_log}
    if mode != "legacy":
        options["log_level"] = "debug"  # 2026-07-28 log messages are opt-in per request
    return options


async def call_chatty(url: str, key: str, mode: str, label: str, seen: Seen, callers: int) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # logging is deprecated in 2026-07-28
        async with mcp_client(url, key, mode, **client_options(seen, mode)) as client:
            arguments = {"label": label, "n": 3, "callers": callers, "group": f"g{callers}"}
            result = await client.call_tool("up__chatty", arguments, progress_callback=seen.on_progress)
    return str(result.content[0].text)  # type: ignore[union-attr]


@pytest.mark.anyio
@pytest.mark.parametrize("upstream", ["stdio", "http-2025"])
async def test_two_concurrent_callers_each_get_only_their_own_progress_and_logs(
    tmp_path: Path, keys_env: dict[str, str], upstream: str
) -> None:
    alice, bob = Seen(), Seen()
    with upstream_entry(upstream, tmp_path) as server:
        async with run_gateway(policy(server), tmp_path) as gw:
            answers: dict[str, str] = {}

            async def run(key: str, mode: str, label: str, seen: Seen) -> None:
                answers[label] = await call_chatty(gw.url, key, mode, label, seen, callers=2)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run, KEY, "legacy", "alice", alice)
                    tg.start_soon(run, BOB, "2026-07-28", "bob", bob)
    assert answers == {"alice": "alice", "bob": "bob"}
    assert alice.progress == ["alice 0", "alice 1", "alice 2"]
    assert bob.progress == ["bob 0", "bob 1", "bob 2"]
    assert all(line.startswith("alice") for line in alice.logs), alice.logs
    assert all(line.startswith("bob") for line in bob.logs), bob.logs
    if upstream != "stdio":  # on its own stream a log message always has its caller
        assert alice.logs == ["alice 0", "alice 1", "alice 2"]
        assert bob.logs == ["bob 0", "bob 1", "bob 2"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_lone_caller_gets_the_log_messages_of_a_stdio_upstream(
    tmp_path: Path, keys_env: dict[str, str], mode: str
) -> None:
    seen = Seen()
    with upstream_entry("stdio", tmp_path) as server:
        async with run_gateway(policy(server), tmp_path) as gw:
            with anyio.fail_after(20):
                assert await call_chatty(gw.url, KEY, mode, "solo", seen, callers=1) == "solo"
    assert seen.progress == ["solo 0", "solo 1", "solo 2"]
    assert seen.logs == ["solo 0", "solo 1", "solo 2"]


@pytest.mark.anyio
async def test_a_2025_caller_gets_log_messages_at_or_above_the_level_it_set(
    tmp_path: Path, keys_env: dict[str, str]
) -> None:
    seen = Seen()
    with upstream_entry("stdio", tmp_path) as server:
        async with (
            run_gateway(policy(server), tmp_path) as gw,
            mcp_client(gw.url, KEY, "legacy", logging_callback=seen.on_log) as client,
        ):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await client.session.set_logging_level("warning")  # chatty logs at info: filtered out
            arguments = {"label": "quiet", "n": 2, "callers": 1, "group": "quiet"}
            with anyio.fail_after(20):
                await client.call_tool("up__chatty", arguments)
    assert seen.logs == []
