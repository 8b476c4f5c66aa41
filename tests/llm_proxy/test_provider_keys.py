"""A provider key never reaches a client, a log line or the database, whatever happens."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from tests.llm_proxy.conftest import (
    BACKUP_KEY,
    KEY_ALICE,
    PROVIDER_KEY,
    keys_config,
    mock_api,
    serve,
    start_proxy,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]


async def test_provider_keys_never_leak(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def echoing_upstream(scope: dict[str, object], receive: object, send: object) -> None:
        """A careless provider that echoes the key it got in its error message."""
        headers = dict(scope["headers"])  # type: ignore[call-overload]
        key = headers.get(b"x-api-key", b"")
        body = (
            b'{"type":"error","error":{"type":"invalid_request_error","message":"bad request for key '
            + key
            + b'"}}'
        )
        await receive()  # type: ignore[operator]
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json")],
            }
        )  # type: ignore[operator]
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    async with (
        mock_api(api_key=PROVIDER_KEY) as (api, url),
        mock_api(fail_status=503, api_key=BACKUP_KEY) as (_failing, failing_url),
        serve(echoing_upstream) as echo_url,
    ):
        config = keys_config()
        config["providers"] = [
            {"name": "good", "kind": "anthropic", "base_url": url, "api_key_env": "TEST_PROVIDER_KEY"},
            {
                "name": "failing",
                "kind": "anthropic",
                "base_url": failing_url,
                "api_key_env": "TEST_BACKUP_KEY",
            },
            {"name": "echo", "kind": "anthropic", "base_url": echo_url, "api_key_env": "TEST_PROVIDER_KEY"},
            {"name": "wrongkey", "kind": "anthropic", "base_url": url, "api_key_env": "TEST_BACKUP_KEY"},
        ]
        config["routes"] = [
            {"match": "claude-good*", "provider": "failing", "fallbacks": [{"provider": "good"}]},
            {"match": "claude-echo*", "provider": "echo"},
            {"match": "claude-wrong*", "provider": "wrongkey", "fallbacks": [{"provider": "failing"}]},
        ]
        config["pricing"] = {"unknown_model": "zero"}
        seen: list[str] = []
        async with start_proxy(config, tmp_path, socket=True) as proxy:
            for model in ("claude-good-1", "claude-echo-1", "claude-wrong-1"):
                for stream in (False, True):
                    response = await proxy.messages(model=model, stream=stream)
                    seen.append(f"{response.status_code} {response.headers} {response.text}")
            count = await proxy.client.post(
                "/v1/messages/count_tokens",
                json={"model": "claude-echo-1", "messages": []},
                headers={"x-api-key": KEY_ALICE},
            )
            seen.append(f"{count.status_code} {count.headers} {count.text}")
            seen.append((await proxy.client.get("/v1/models", headers={"x-api-key": KEY_ALICE})).text)
            await asyncio.sleep(0)
            rows = await proxy.ledger()
        assert any(
            r.headers.get("x-api-key") == PROVIDER_KEY for r in api.received
        )  # the key was used upstream
        assert {r.status for r in rows} >= {"ok", "provider_error", "upstream_error"}

    everything = "\n".join(seen)
    for secret in (PROVIDER_KEY, BACKUP_KEY):
        assert secret not in everything
        assert not [
            r.getMessage() for r in caplog.records if secret in r.getMessage() or secret in str(r.args)
        ]
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    assert "[redacted]" in everything  # the echoed key was scrubbed from the relayed error
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        dump = "\n".join(db.iterdump())
    assert PROVIDER_KEY not in dump and BACKUP_KEY not in dump
    assert "refused the gateway's key" in everything
