"""Elicitation, sampling and roots from an upstream reach the caller, in every era combination.

Real parts on both sides: the test upstream (mcp SDK, stdio) asks through the SDK's resolvers,
so it sends a real request mid-call in 2025-11-25 and answers ``input_required`` in 2026-07-28;
the downstream client is the SDK's ``Client`` with callbacks, in either mode (its 2026 mode
drives the input-required retries itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.client.context import ClientRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ListRootsResult,
    Root,
    TextContent,
)

from tests.conftest import RunningGateway, mcp_client, run_gateway
from tests.gateway.client_requests_support import KEY, policy, upstream_entry

UPSTREAMS = ["stdio", "http-2025", "http-2026"]
MODES = ["legacy", "2026-07-28"]


async def on_elicit(ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"answer": f"yes to {params.message}"})


async def on_sample(ctx: ClientRequestContext, params: CreateMessageRequestParams) -> CreateMessageResult:
    asked = params.messages[0].content
    text = asked.text if isinstance(asked, TextContent) else "?"
    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text=text.upper()), model="m"
    )


async def on_roots(ctx: ClientRequestContext) -> ListRootsResult:
    return ListRootsResult(roots=[Root(uri="file:///work/a"), Root(uri="file:///work/b")])


def text_of(result: Any) -> str:
    assert not result.is_error, result
    return str(result.content[0].text)


async def rows(gw: RunningGateway, name: str) -> list[Any]:
    return [r for r in await gw.flushed_calls() if r.exposed_name == name]


@pytest.mark.anyio
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("mode", MODES)
async def test_elicitation_reaches_the_caller_in_every_era_combination(
    tmp_path: Path, keys_env: dict[str, str], upstream: str, mode: str
) -> None:
    with upstream_entry(upstream, tmp_path) as server:
        async with (
            run_gateway(policy(server), tmp_path) as gw,
            mcp_client(gw.url, KEY, mode, elicitation_callback=on_elicit) as client,
        ):
            assert gw.runtime.hub.supervisors["up"].connection.modern is (upstream == "http-2026")  # type: ignore[union-attr]
            with anyio.fail_after(15):
                result = await client.call_tool("up__elicit", {"question": "ship it?"})
            assert text_of(result) == "accepted yes to ship it?"
            audited = await rows(gw, "up__elicit")
        assert len(gw.runtime.exchanges) == 0
    # 2026 callers make two requests (the first answered input_required): one counts the question.
    assert [r.status for r in audited] == ["ok"] * (2 if mode != "legacy" else 1)
    assert sum(r.client_requests or 0 for r in audited) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("upstream", "mode"), [("stdio", "legacy"), ("stdio", "2026-07-28"), ("http-2026", "legacy")]
)
async def test_sampling_and_roots_reach_the_caller(
    tmp_path: Path, keys_env: dict[str, str], upstream: str, mode: str
) -> None:
    options: dict[str, Any] = {"sampling_callback": on_sample, "list_roots_callback": on_roots}
    with upstream_entry(upstream, tmp_path) as server:
        async with (
            run_gateway(policy(server), tmp_path) as gw,
            mcp_client(gw.url, KEY, mode, **options) as client,
        ):
            with anyio.fail_after(15):
                assert text_of(await client.call_tool("up__sample", {"prompt": "hi"})) == "sampled HI"
                assert text_of(await client.call_tool("up__roots", {})) == "file:///work/a,file:///work/b"


@pytest.mark.anyio
@pytest.mark.parametrize("upstream", ["stdio", "http-2026"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_the_capability_gets_a_clear_error_at_once(
    tmp_path: Path, keys_env: dict[str, str], upstream: str, mode: str
) -> None:
    with upstream_entry(upstream, tmp_path) as server:
        async with run_gateway(policy(server), tmp_path) as gw, mcp_client(gw.url, KEY, mode) as client:
            with anyio.fail_after(10):  # never a hang
                try:
                    result = await client.call_tool("up__elicit", {"question": "ship it?"})
                    message = str(result.content[0].text)  # type: ignore[union-attr]
                    assert result.is_error
                except MCPError as exc:
                    message = str(exc)
            assert "did not declare" in message and "elicitation" in message, message
            # The client still works, and nothing is left waiting.
            assert text_of(await client.call_tool("up__echo", {"text": "after"})) == "after"
        assert len(gw.runtime.exchanges) == 0
