"""Reloading model providers, routes and budgets: a changed base URL serves the next request while a
stream already under way finishes on the old one; providers come and go; a budget added by a reload
counts the spend already in the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway_app.reload_log import ReloadOutcome
from tests.gateway.reload_support import serve_policy_file
from tests.llm_proxy.conftest import KEY_ALICE, keys_config, mock_api, provider_env  # noqa: F401

PRICES = {
    "claude-*": {"input_per_mtok": 1000, "output_per_mtok": 1000},
    "gpt-*": {"input_per_mtok": 1, "output_per_mtok": 1},
}


def config(providers: dict[str, str], routes: dict[str, str], **sections: Any) -> dict[str, Any]:
    doc = keys_config()
    doc["providers"] = [
        {"name": name, "kind": "anthropic", "base_url": url, "api_key_env": "TEST_PROVIDER_KEY"}
        for name, url in providers.items()
    ]
    doc["routes"] = [{"match": match, "provider": provider} for match, provider in routes.items()]
    doc["pricing"] = {"models": PRICES}
    doc.update(sections)
    return doc


async def ask(http: httpx.AsyncClient, model: str = "claude-haiku-4-5", **body: Any) -> httpx.Response:
    payload = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}], **body}
    return await http.post("/v1/messages", json=payload, headers={"x-api-key": KEY_ALICE})


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env")
async def test_a_changed_base_url_serves_the_next_request_and_a_stream_finishes_on_the_old(
    tmp_path: Path,
) -> None:
    async with (
        mock_api() as (first, first_url),
        mock_api() as (second, second_url),
        serve_policy_file(config({"main": first_url}, {"claude-*": "main"}), tmp_path) as gw,
        httpx.AsyncClient(base_url=gw.base, timeout=30) as http,
    ):
        assert (await ask(http)).status_code == 200
        assert len(first.received) == 1
        old_client = gw.llm.providers["main"]

        # A stream under way on the first API, held after its first events.
        first.hold = asyncio.Event()
        async with http.stream(
            "POST",
            "/v1/messages",
            json={
                "model": "claude-haiku-4-5",
                "max_tokens": 16,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": KEY_ALICE},
        ) as streaming:
            assert streaming.status_code == 200
            record = await gw.reload(config({"main": second_url}, {"claude-*": "main"}))
            assert record.outcome is ReloadOutcome.APPLIED
            assert record.changes == {"providers": {"changed": ["main"]}}
            assert gw.llm.providers["main"] is not old_client

            assert (await ask(http)).status_code == 200
            assert len(second.received) == 1 and len(first.received) == 2
            first.hold.set()
            text = (await streaming.aread()).decode()
        assert "message_stop" in text, "the stream finished on the client it started with"


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env")
async def test_providers_and_routes_come_and_go(tmp_path: Path) -> None:
    async with (
        mock_api() as (first, first_url),
        mock_api() as (second, second_url),
        serve_policy_file(config({"main": first_url}, {"claude-*": "main"}), tmp_path) as gw,
        httpx.AsyncClient(base_url=gw.base, timeout=30) as http,
    ):
        assert (await ask(http, "gpt-4o-mini")).status_code == 404
        main = gw.llm.providers["main"]
        record = await gw.reload(
            config({"main": first_url, "extra": second_url}, {"claude-*": "main", "gpt-*": "extra"})
        )
        assert record.changes == {"providers": {"added": ["extra"]}, "routes": True}
        assert gw.llm.providers["main"] is main, "an unchanged provider keeps its client and connections"
        assert (await ask(http, "gpt-4o-mini")).status_code == 200
        assert len(second.received) == 1

        record = await gw.reload(config({"extra": second_url}, {"gpt-*": "extra"}))
        assert record.changes == {"providers": {"removed": ["main"]}, "routes": True}
        assert (await ask(http)).status_code == 404
        assert (await ask(http, "gpt-4o-mini")).status_code == 200
        assert len(first.received) == 0


@pytest.mark.anyio
@pytest.mark.usefixtures("provider_env")
async def test_a_budget_added_by_a_reload_counts_the_spend_already_made(tmp_path: Path) -> None:
    async with mock_api() as (_api, url):
        doc = config({"main": url}, {"claude-*": "main"})
        async with (
            serve_policy_file(doc, tmp_path) as gw,
            httpx.AsyncClient(base_url=gw.base, timeout=30) as http,
        ):
            for _ in range(3):
                assert (await ask(http)).status_code == 200
            # The three requests cost far more than this budget: with their spend counted, the next is refused.
            record = await gw.reload(
                {**doc, "budgets": {"teams": [{"name": "eng", "daily_limit_usd": 0.01}]}}
            )
            assert record.changes == {"budgets": ["budgets.teams[eng]"]}
            refused = await ask(http)
            assert refused.status_code == 402, refused.text
            assert "team:eng" in refused.text
