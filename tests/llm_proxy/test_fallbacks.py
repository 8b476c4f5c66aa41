"""Ordered fallbacks: connection errors, 5xx, 429 and refused provider keys move to the next target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.llm_proxy.conftest import (
    BACKUP_KEY,
    PROVIDER_KEY,
    FakeClock,
    keys_config,
    mock_api,
    serve,
    start_proxy,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]


def two_providers(primary: str, backup: str, **route: Any) -> dict[str, Any]:
    config = keys_config()
    config["providers"] = [
        {"name": "primary", "kind": "anthropic", "base_url": primary, "api_key_env": "TEST_PROVIDER_KEY"},
        {"name": "backup", "kind": "anthropic", "base_url": backup, "api_key_env": "TEST_BACKUP_KEY"},
    ]
    config["routes"] = [
        {"match": "claude-*", "provider": "primary", "fallbacks": [{"provider": "backup", **route}]},
    ]
    return config


@pytest.mark.parametrize("stream", [False, True])
async def test_fallback_to_the_second_provider_when_the_first_returns_503(
    tmp_path: Path, stream: bool
) -> None:
    async with (
        mock_api(fail_status=503, api_key=PROVIDER_KEY) as (primary, primary_url),
        mock_api(api_key=BACKUP_KEY) as (backup, backup_url),
        start_proxy(two_providers(primary_url, backup_url, model="claude-haiku-4-5"), tmp_path) as proxy,
    ):
        response = await proxy.messages(model="claude-sonnet-4-5", stream=stream)
        assert response.status_code == 200, response.text
        assert "Hello from the mock model API" in response.text or "Hello" in response.text
        assert len(primary.received) == 1 and len(backup.received) == 1
        assert backup.received[0].headers["x-api-key"] == BACKUP_KEY
        assert b'"claude-haiku-4-5"' in backup.received[0].body
        [row] = await proxy.ledger()
        assert (row.provider, row.attempts, row.status, row.served_model) == (
            "backup",
            2,
            "ok",
            "claude-haiku-4-5",
        )
        assert row.cost_usd > 0 and row.price_source == "genai-prices:anthropic/claude-haiku-4-5"


async def test_connection_refused_falls_back(tmp_path: Path) -> None:
    async with (
        mock_api() as (_backup, backup_url),
        start_proxy(two_providers("http://127.0.0.1:9", backup_url), tmp_path) as proxy,
    ):
        assert (await proxy.messages()).status_code == 200
        [row] = await proxy.ledger()
        assert (row.provider, row.attempts) == ("backup", 2)


async def test_a_refused_provider_key_falls_back_and_is_not_blamed_on_the_client(tmp_path: Path) -> None:
    async with (
        mock_api(api_key="some-other-key") as (_primary, primary_url),
        mock_api(api_key="yet-another-key") as (_backup, backup_url),
        start_proxy(two_providers(primary_url, backup_url), tmp_path) as proxy,
    ):
        response = await proxy.messages()
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "api_error"
        assert "primary: HTTP 401 the provider refused the gateway's key" in error["message"]
        assert "backup: HTTP 401" in error["message"]


@pytest.mark.parametrize(
    ("status", "expected_status", "expected_type"),
    [(503, 502, "api_error"), (529, 529, "overloaded_error"), (429, 429, "rate_limit_error")],
)
async def test_when_every_provider_fails(
    tmp_path: Path, status: int, expected_status: int, expected_type: str
) -> None:
    async with (
        mock_api(fail_status=status) as (_p, primary_url),
        mock_api(fail_status=status) as (_b, backup_url),
        start_proxy(two_providers(primary_url, backup_url), tmp_path) as proxy,
    ):
        response = await proxy.messages(stream=True)
        assert response.status_code == expected_status
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == expected_type
        assert "No provider could answer (primary: HTTP" in body["error"]["message"]
        if status == 429:
            assert response.headers["retry-after"] == "1"
        [row] = await proxy.ledger()
        assert (row.status, row.attempts, row.http_status) == ("upstream_error", 2, expected_status)


async def test_a_stream_that_opens_with_an_error_event_falls_back(tmp_path: Path) -> None:
    async def overloaded_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        event = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
        await send({"type": "http.response.body", "body": event})

    async with (
        serve(overloaded_stream) as primary_url,
        mock_api() as (_backup, backup_url),
        start_proxy(two_providers(primary_url, backup_url), tmp_path) as proxy,
    ):
        response = await proxy.messages(stream=True)
        assert response.status_code == 200
        assert "overloaded" not in response.text and "event: message_stop" in response.text
        [row] = await proxy.ledger()
        assert (row.provider, row.attempts) == ("backup", 2)


async def test_an_exhausted_provider_budget_moves_to_the_next_provider(tmp_path: Path) -> None:
    async with mock_api() as (primary, primary_url), mock_api() as (backup, backup_url):
        config = two_providers(primary_url, backup_url)
        config["budgets"] = {"providers": [{"name": "primary", "daily_limit_usd": 0.00001}]}
        async with start_proxy(config, tmp_path, clock=FakeClock()) as proxy:
            assert (await proxy.messages()).status_code == 200  # admitted: nothing spent yet
            assert (await proxy.messages()).status_code == 200  # primary's budget is spent: backup answers
            assert (len(primary.received), len(backup.received)) == (1, 1)
            rows = await proxy.ledger()
            assert [(r.provider, r.attempts) for r in rows] == [("primary", 1), ("backup", 1)]
            status = {s["budget"]: s["spent_usd"] for s in await proxy.llm.budget_status()}
            assert status["provider:primary"] == pytest.approx(rows[0].cost_usd)
