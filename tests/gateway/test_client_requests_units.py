"""The parked exchanges of 2026 callers: bounded in time and number, bound to their key and name."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from mcp_gateway.errors import InvalidParams
from mcp_gateway.server.client_requests import log_wanted, refusal
from mcp_gateway.server.client_requests_modern import (
    MAX_PER_KEY,
    ExchangeAsker,
    ExchangeRegistry,
    TooManyExchanges,
)
from mcp_gateway.server.handshake import ClientCapability

ELICIT = {"method": "elicitation/create", "params": {"message": "name?", "requestedSchema": {}}}


def context(key_id: str = "alice", timeout: float = 0.05) -> Any:
    mcp = SimpleNamespace(client_request_timeout_seconds=timeout)
    return SimpleNamespace(
        principal=SimpleNamespace(key_id=key_id),
        snapshot=SimpleNamespace(policy=SimpleNamespace(mcp=mcp)),
        capabilities=ClientCapability.ELICITATION | ClientCapability.ELICITATION_FORM,
        log_level=None,
        client_requests=0,
    )


@pytest.mark.anyio
async def test_a_parked_exchange_expires_answering_its_question_and_cancelling_the_call() -> None:
    registry = ExchangeRegistry()
    answers: list[Any] = []
    cancelled = asyncio.Event()

    async def call(asker: ExchangeAsker) -> Any:
        # As the session does on a reader's transport: the question is answered on its own task.
        question = asyncio.ensure_future(asker.ask(ELICIT))
        question.add_done_callback(lambda done: answers.append(done.result()))
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ctx = context()
    exchange = registry.start(ctx, "tools/call", "up__elicit", call)
    reply = await exchange.next(ctx, None)
    result = reply["result"]
    assert result["resultType"] == "input_required"
    assert list(result["inputRequests"].values()) == [ELICIT]
    assert result["requestState"].startswith("mcpgw-ir:")
    assert ctx.client_requests == 1
    await asyncio.wait_for(cancelled.wait(), 5)
    await asyncio.sleep(0)
    assert answers[0]["error"]["message"] == "the client did not retry with the answers within 0.05 s"
    assert len(registry) == 0
    with pytest.raises(InvalidParams):  # expired: the token no longer resumes anything
        registry.resume(ctx, "tools/call", "up__elicit", result["requestState"])


@pytest.mark.anyio
async def test_a_token_resumes_only_for_its_own_key_method_and_name() -> None:
    registry = ExchangeRegistry()

    async def call(asker: ExchangeAsker) -> Any:
        answer = await asker.ask(ELICIT)
        return {"result": {"content": [], "answer": answer}}

    ctx = context(timeout=5)
    exchange = registry.start(ctx, "tools/call", "up__elicit", call)
    token = (await exchange.next(ctx, None))["result"]["requestState"]
    for other, method, name in [
        (context("bob"), "tools/call", "up__elicit"),
        (ctx, "prompts/get", "up__elicit"),
        (ctx, "tools/call", "up__other"),
    ]:
        with pytest.raises(InvalidParams):
            registry.resume(other, method, name, token)
    resumed = registry.resume(ctx, "tools/call", "up__elicit", token)
    key = next(iter(exchange.questions))
    assert resumed.answer({key: {"action": "accept", "content": {"name": "x"}}}) == 1
    final = await resumed.next(ctx, None)
    assert final["result"]["answer"] == {"result": {"action": "accept", "content": {"name": "x"}}}
    assert len(registry) == 0
    with pytest.raises(InvalidParams):  # used once
        registry.resume(ctx, "tools/call", "up__elicit", token)


@pytest.mark.anyio
async def test_a_key_may_hold_only_so_many_waiting_calls() -> None:
    registry = ExchangeRegistry()
    ctx = context(timeout=5)

    async def call(asker: ExchangeAsker) -> Any:
        return await asker.ask(ELICIT)

    exchanges = [registry.start(ctx, "tools/call", "t", call) for _ in range(MAX_PER_KEY)]
    with pytest.raises(TooManyExchanges):
        registry.start(ctx, "tools/call", "t", call)
    registry.start(context("bob", 5), "tools/call", "t", call).end("done")  # another key is not affected
    for exchange in exchanges:
        exchange.end("done")
    assert len(registry) == 0


def test_refusals_name_the_missing_capability() -> None:
    url = {"method": "elicitation/create", "params": {"mode": "url", "url": "https://x"}}
    form_only = ClientCapability.ELICITATION | ClientCapability.ELICITATION_FORM
    assert refusal(ELICIT, form_only) is None
    assert refusal(url, form_only) == {
        "code": -32021,
        "message": "the client of this call did not declare the elicitation.url capability",
    }
    assert refusal({"method": "roots/list"}, form_only)["code"] == -32021  # type: ignore[index]
    assert refusal({"method": "tasks/get"}, form_only)["code"] == -32601  # type: ignore[index]


def test_log_messages_pass_at_or_above_the_callers_level() -> None:
    def note(level: str) -> dict[str, Any]:
        return {"method": "notifications/message", "params": {"level": level, "data": "x"}}

    assert not log_wanted(None, note("emergency"))
    assert log_wanted("warning", note("error")) and log_wanted("warning", note("warning"))
    assert not log_wanted("warning", note("info"))
