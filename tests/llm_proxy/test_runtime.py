"""Start-up and plumbing: weighted provider keys, warnings, timeouts, the ledger's fallback file."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, select

from gateway_app.database import create_schema
from gateway_common.db import make_engine
from gateway_common.http.pool import HttpPool
from llm_proxy.ledger import LedgerWriter, ModelRequest
from llm_proxy.upstream import ProviderClient, ProviderUnavailable
from policies.providers import LlmProxySettings, ProviderConfig
from tests.llm_proxy.conftest import keys_config, mock_api, proxy_config, start_proxy

pytestmark = pytest.mark.anyio


async def test_weighted_provider_keys_are_all_used_by_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_A", "sk-a")
    monkeypatch.setenv("KEY_B", "sk-b")
    config = ProviderConfig.model_validate(
        {
            "name": "p",
            "kind": "anthropic",
            "base_url": "https://api.example.com",
            "api_keys": [{"env": "KEY_A", "weight": 3}, {"env": "KEY_B", "weight": 1}],
        }
    )
    client = ProviderClient(config)
    try:
        used = Counter(client.headers({})["x-api-key"] for _ in range(4000))
    finally:
        await client.aclose()
    assert set(used) == {"sk-a", "sk-b"}
    assert 2.0 < used["sk-a"] / used["sk-b"] < 4.5


async def test_a_provider_without_its_key_is_skipped_with_a_clear_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    config = ProviderConfig(
        name="p", kind="openai-compatible", base_url="https://x/v1", api_key_env="NOT_SET_ANYWHERE"
    )
    client = ProviderClient(config)
    try:
        with pytest.raises(ProviderUnavailable, match="set NOT_SET_ANYWHERE"):
            client.headers({})
        assert client.target("/v1/chat/completions", "") == "/v1/chat/completions"
        assert isinstance(client.pool, HttpPool) and client.pool.host_header == "x"
    finally:
        await client.aclose()


async def test_start_up_warns_about_unpriced_models_and_missing_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MISSING_PROVIDER_KEY", raising=False)
    caplog.set_level(logging.WARNING, logger="llm_proxy")
    config = keys_config()
    config["providers"] = [
        {
            "name": "p",
            "kind": "anthropic",
            "base_url": "http://127.0.0.1:9",
            "api_key_env": "MISSING_PROVIDER_KEY",
        }
    ]
    config["routes"] = [{"match": "house-model", "provider": "p"}, {"match": "claude-*", "provider": "p"}]
    async with start_proxy(config, tmp_path):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "model 'house-model' (provider 'p') has no known price: requests are refused (pricing.unknown_model: block)"
        in m
        for m in messages
    )
    assert any("MISSING_PROVIDER_KEY not set" in m for m in messages)


@pytest.mark.usefixtures("provider_env")
async def test_a_provider_that_stops_answering_times_out_into_the_fallback(tmp_path: Path) -> None:
    async with mock_api() as (hung, hung_url), mock_api() as (_backup, backup_url):
        hung.hold = asyncio.Event()  # never set: the provider accepts the request and never answers
        config = proxy_config(hung_url)
        config["providers"][0]["timeout"] = 0.3
        config["providers"].append({"name": "backup", "kind": "anthropic", "base_url": backup_url})
        config["routes"] = [
            {"match": "claude-*", "provider": "primary", "fallbacks": [{"provider": "backup"}]}
        ]
        async with start_proxy(config, tmp_path) as proxy:
            response = await proxy.messages()
            assert response.status_code == 200
            [row] = await proxy.ledger()
            assert (row.provider, row.attempts) == ("backup", 2)
        hung.hold.set()


async def test_ledger_rows_survive_a_refusing_database_through_the_fallback_file(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    settings = LlmProxySettings(ledger_fallback_file=str(tmp_path / "ledger-fallback.jsonl"))
    arrived = time.time()
    row = {
        "request_id": "a" * 32,
        "timestamp": arrived,
        "endpoint": "messages",
        "key_id": "k",
        "key_name": "k",
        "status": "ok",
        "cost_usd": 0.5,
    }
    writer = LedgerWriter(engine, settings)
    await writer.start()  # the table does not exist yet: the database refuses the batch
    writer.submit(dict(row))  # type: ignore[arg-type]  # a partial row: the database refuses it anyway
    await writer.aclose()
    assert writer.diverted == 1 and (tmp_path / "ledger-fallback.jsonl").exists()

    create_schema(engine)
    replaying = LedgerWriter(engine, settings)
    await replaying.start()
    await replaying.aclose()
    with Session(engine) as db:
        [stored] = db.exec(select(ModelRequest)).all()
    assert stored.request_id == "a" * 32 and stored.cost_usd == 0.5
    assert stored.timestamp.tzinfo is not None
    assert abs(stored.timestamp.timestamp() - arrived) < 0.001
    assert not (tmp_path / "ledger-fallback.jsonl").exists()
