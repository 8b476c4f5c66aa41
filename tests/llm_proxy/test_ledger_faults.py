"""The model proxy under hostile input and faults: deeply nested bodies are refused before anything
reads them, poisoned ledger rows never stop the ledger writer, and a ledger writer whose loop dies
fails /readyz and comes back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlmodel import Session, select

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from llm_proxy.ledger import LedgerWriter, ModelRequest
from policies.providers import LlmProxySettings
from tests.llm_proxy.conftest import KEY_ALICE, FakeClock, mock_api, proxy_config, start_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]


def deep_body(levels: int, **fields: Any) -> bytes:
    """A /v1/messages body whose one message nests ``levels`` objects below the top."""
    head = orjson.dumps({"model": "claude-haiku-4-5", "max_tokens": 10, **fields})
    nested = b'{"k":' * levels + b"1" + b"}" * levels
    return head[:-1] + b',"messages":[{"role":"user","content":"hi","extra":' + nested + b"}]}"


def ledger_row(request_id: str, **overrides: Any) -> Any:  # a ModelRequestRow, or a broken one
    values: dict[str, Any] = {
        "request_id": request_id,
        "timestamp": time.time(),
        "endpoint": "messages",
        "key_id": "k",
        "key_name": "k",
        "status": "ok",
        "cost_usd": 0.25,
    }
    return values | overrides


async def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("levels", [300, 1000, 1100])
async def test_deeply_nested_bodies_are_400_and_limits_and_ledger_keep_working(
    tmp_path: Path, levels: int
) -> None:
    async with mock_api() as (api, url):
        config = proxy_config(url)
        config["virtual_keys"][0]["rate_limit"] = {"requests_per_minute": 2}
        async with start_proxy(config, tmp_path, clock=FakeClock()) as proxy:
            headers = {"x-api-key": KEY_ALICE, "anthropic-version": "2023-06-01"}
            for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions"):
                refused = await proxy.client.post(path, content=deep_body(levels), headers=headers)
                assert refused.status_code == 400, path
                error = refused.json()["error"]  # both API shapes carry message and type here
                assert "nests JSON" in error["message"] and "limit of 64" in error["message"]
                assert error["type"] == "invalid_request_error"
            assert not api.received  # nothing deep reached the provider

            # Legal nesting passes; the refused bodies did not count against the key's 2 per minute.
            assert (
                await proxy.client.post("/v1/messages", content=deep_body(40), headers=headers)
            ).status_code == 200
            assert (await proxy.messages()).status_code == 200
            assert (await proxy.messages()).status_code == 429

            rows = await proxy.ledger()
            assert [r.http_status for r in rows] == [400, 400, 200, 200, 429]
            assert proxy.llm.ledger.stopped is None and proxy.llm.ledger.pending == 0


async def test_poisoned_ledger_rows_are_kept_and_the_rest_is_written(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    create_schema(engine)
    fallback = tmp_path / "ledger-fallback.jsonl"
    writer = LedgerWriter(engine, LlmProxySettings(ledger_fallback_file=str(fallback)))
    await writer.start()
    writer.submit(ledger_row("a" * 32))
    writer.submit(ledger_row("b" * 32, timestamp=float("nan")))  # prepare raises ValueError
    writer.submit(ledger_row("c" * 32, timestamp="not a time"))  # the insert refuses it
    writer.submit(ledger_row("d" * 32, error=object()))  # nothing can bind it
    writer.submit(ledger_row("e" * 32))
    await writer.flush()
    writer.submit(ledger_row("f" * 32))
    await writer.aclose()

    with Session(engine) as db:
        ids = sorted(r.request_id for r in db.exec(select(ModelRequest)).all())
    assert ids == ["a" * 32, "e" * 32, "f" * 32]
    kept = [orjson.loads(line) for line in fallback.read_bytes().splitlines()]
    assert sorted(line["request_id"] for line in kept) == ["b" * 32, "c" * 32, "d" * 32]
    assert writer.stopped is None and writer.salvaged == 1 and writer.refused == 3
    assert writer.last_error is None
    engine.dispose()


async def test_a_ledger_writer_whose_loop_dies_fails_readiness_and_is_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with mock_api() as (_api, url), start_proxy(proxy_config(url), tmp_path) as proxy:
        ledger = proxy.llm.ledger
        ledger.restart_delay = 0.05
        broken = threading.Event()
        broken.set()
        real_store = ledger._store_batch

        async def faulty_store(batch: list[dict[str, Any]]) -> None:
            if broken.is_set():
                raise RuntimeError("injected fault in the ledger loop")
            await real_store(batch)

        monkeypatch.setattr(ledger, "_store_batch", faulty_store)
        assert (await proxy.messages()).status_code == 200  # answered; its row waits in memory
        await wait_for(lambda: ledger.stopped is not None)

        down = await proxy.client.get("/readyz")
        assert down.status_code == 503 and down.json()["status"] == "ledger_writer_stopped"
        assert "injected fault" in down.json()["ledger"]["stopped"] and ledger.pending == 1

        broken.clear()
        await wait_for(lambda: ledger.stopped is None and ledger.pending == 0)
        up = await proxy.client.get("/readyz")
        assert up.status_code == 200 and up.json()["status"] == "ready"
        [row] = await proxy.ledger()
        assert row.status == "ok"
