"""POST /v1/messages in memory: forwarding, headers, body passthrough, usage and cost in the ledger, refusals."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from policies.pricing import Usage, genai_prices_lookup
from tests.llm_proxy.conftest import KEY_ALICE, PROVIDER_KEY, mock_api, proxy_config, start_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]


async def test_non_stream_request_is_forwarded_and_costed_with_cache_tokens(tmp_path: Path) -> None:
    async with (
        mock_api(cache_read_tokens=3000, cache_write_tokens=500, api_key=PROVIDER_KEY) as (_api, url),
        start_proxy(proxy_config(url), tmp_path) as proxy,
    ):
        system = [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]
        response = await proxy.messages(model="claude-sonnet-4-5", system=system)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["content"][0]["text"].startswith("Hello from the mock model API")
        usage = body["usage"]
        assert usage["cache_read_input_tokens"] == 3000 and usage["cache_creation_input_tokens"] == 500
        assert response.headers["gateway-request-id"]

        [row] = await proxy.ledger()
        assert (row.key_id, row.team, row.provider, row.status, row.stream) == (
            "alice",
            "eng",
            "primary",
            "ok",
            False,
        )
        assert (row.requested_model, row.served_model) == ("claude-sonnet-4-5", "claude-sonnet-4-5")
        assert (row.input_tokens, row.output_tokens) == (usage["input_tokens"], usage["output_tokens"])
        assert (row.cache_read_tokens, row.cache_write_tokens) == (3000, 500)
        rates = genai_prices_lookup("claude-sonnet-4-5", "anthropic", None)
        assert rates is not None
        expected = rates.cost(Usage(usage["input_tokens"], usage["output_tokens"], 3000, 500))
        assert row.cost_usd == pytest.approx(expected)
        assert row.cost_usd > 0 and row.price_source == "genai-prices:anthropic/claude-sonnet-4-5"
        assert (
            row.latency_ms > 0
            and row.ttfb_ms is not None
            and row.request_id == response.headers["gateway-request-id"]
        )


async def test_stream_usage_and_cost_are_recorded_once(tmp_path: Path) -> None:
    async with (
        mock_api(cache_read_tokens=1200, cache_write_tokens=300) as (_api, url),
        start_proxy(proxy_config(url), tmp_path) as proxy,
    ):
        system = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]
        response = await proxy.messages(stream=True, system=system)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.text.split("\n") if line.startswith("event: ")]
        assert events[0] == "event: message_start" and events[-1] == "event: message_stop"
        final = next(
            orjson.loads(line[6:])
            for line in response.text.split("\n")
            if line.startswith("data: ") and "message_delta" in line
        )["usage"]
        [row] = await proxy.ledger()
        assert row.stream and row.status == "ok"
        # message_start and message_delta both carry the input fields: counted once, not twice
        assert (row.input_tokens, row.output_tokens) == (final["input_tokens"], final["output_tokens"])
        assert (row.cache_read_tokens, row.cache_write_tokens) == (1200, 300)
        assert row.cost_usd > 0 and row.ttfb_ms is not None


async def test_headers_and_body_pass_through_and_the_virtual_key_does_not(tmp_path: Path) -> None:
    async with mock_api() as (api, url), start_proxy(proxy_config(url), tmp_path) as proxy:
        body = {
            "model": "claude-opus-4-8",
            "max_tokens": 64000,
            "stream": False,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
            "messages": [
                {"role": "system", "content": "a system item inside messages"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            ],
            "some_future_field": {"nested": [1, 2.5, None, "ü"]},
        }
        raw = orjson.dumps(body)
        response = await proxy.client.post(
            "/v1/messages?beta=true",
            content=raw,
            headers={
                "authorization": f"Bearer {KEY_ALICE}",
                "anthropic-version": "2023-06-01",
                "anthropic-beta": "interleaved-thinking-2025-05-14,context-management-2025-06-27",
                "x-claude-code-session-id": "session-123",
                "x-stainless-os": "Linux",
            },
        )
        assert response.status_code == 200, response.text
        received = api.received[-1]
        assert received.body == raw  # byte for byte: no rewrite needed
        assert received.query == "beta=true"
        assert received.headers["anthropic-version"] == "2023-06-01"
        assert (
            received.headers["anthropic-beta"]
            == "interleaved-thinking-2025-05-14,context-management-2025-06-27"
        )
        assert received.headers["x-api-key"] == PROVIDER_KEY
        assert "authorization" not in received.headers and "x-stainless-os" not in received.headers
        assert KEY_ALICE not in str(received.headers)
        [row] = await proxy.ledger()
        assert row.session_id == "session-123"


async def test_alias_routes_rewrite_only_the_model(tmp_path: Path) -> None:
    config = proxy_config("http://unused")
    async with mock_api() as (api, url):
        config["providers"][0]["base_url"] = url
        config["routes"] = [
            {"match": "fast", "provider": "primary", "model": "claude-haiku-4-5"},
            {"match": "claude-*", "provider": "primary"},
        ]
        async with start_proxy(config, tmp_path) as proxy:
            response = await proxy.messages(model="fast", metadata={"user_id": "u1"})
            assert response.status_code == 200
            sent = orjson.loads(api.received[-1].body)
            assert sent["model"] == "claude-haiku-4-5" and sent["metadata"] == {"user_id": "u1"}
            [row] = await proxy.ledger()
            assert (row.requested_model, row.served_model, row.route) == ("fast", "claude-haiku-4-5", "fast")


async def test_model_not_allowed_is_403_permission_error(tmp_path: Path) -> None:
    async with mock_api() as (api, url):
        config = proxy_config(url)
        config["virtual_keys"][0]["allowed_models"] = ["claude-haiku-*"]
        async with start_proxy(config, tmp_path) as proxy:
            response = await proxy.messages(model="claude-opus-4-8")
            assert response.status_code == 403
            assert response.json() == {
                "type": "error",
                "error": {
                    "type": "permission_error",
                    "message": "Key 'alice' may not use model 'claude-opus-4-8'",
                },
            }
            assert (await proxy.messages(model="claude-haiku-4-5")).status_code == 200
            assert len(api.received) == 1
            rows = await proxy.ledger()
            assert [(r.status, r.http_status, r.error_type) for r in rows] == [
                ("denied", 403, "permission_error"),
                ("ok", 200, None),
            ]


async def test_unknown_model_is_404_and_unpriced_model_is_blocked_by_policy(tmp_path: Path) -> None:
    async with mock_api() as (_api, url):
        config = proxy_config(url)
        config["routes"].append({"match": "house-*", "provider": "primary"})
        async with start_proxy(config, tmp_path) as proxy:
            missing = await proxy.messages(model="gpt-4o")
            assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
            unpriced = await proxy.messages(model="house-model-1")
            assert unpriced.status_code == 403 and "no known price" in unpriced.json()["error"]["message"]
        config["pricing"] = {"unknown_model": "zero"}
        async with start_proxy(config, tmp_path / "zero") as proxy:
            assert (await proxy.messages(model="house-model-1")).status_code == 200
            [row] = await proxy.ledger()
            assert row.cost_usd == 0 and row.price_source is None
        config["pricing"] = {"models": {"house-*": {"input_per_mtok": 1, "output_per_mtok": 2}}}
        async with start_proxy(config, tmp_path / "priced") as proxy:
            assert (await proxy.messages(model="house-model-1")).status_code == 200
            [row] = await proxy.ledger()
            assert row.cost_usd == pytest.approx((row.input_tokens * 1 + row.output_tokens * 2) / 1e6)
            assert row.price_source == "policy:house-*"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Missing virtual key"),
        ({"x-api-key": "mgw_unknown"}, "Invalid virtual key"),
        ({"authorization": "Bearer mgw_unknown"}, "Invalid virtual key"),
        ({"authorization": "Basic abc"}, "Missing virtual key"),
    ],
)
async def test_missing_or_unknown_key_is_401(tmp_path: Path, headers: dict[str, str], message: str) -> None:
    async with mock_api() as (api, url), start_proxy(proxy_config(url), tmp_path) as proxy:
        response = await proxy.client.post(
            "/v1/messages", json={"model": "claude-haiku-4-5"}, headers=headers
        )
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["type"] == "authentication_error" and error["message"].startswith(message)
        assert not api.received and await proxy.ledger() == []


async def test_revoked_and_expired_keys_are_401(tmp_path: Path) -> None:
    async with mock_api() as (_api, url):
        config = proxy_config(url)
        config["virtual_keys"][0]["expires_at"] = "2020-01-01T00:00:00Z"
        config["virtual_keys"][1]["disabled"] = True
        async with start_proxy(config, tmp_path) as proxy:
            from tests.llm_proxy.conftest import KEY_BOB

            for key in (KEY_ALICE, KEY_BOB):
                response = await proxy.messages(key=key)
                assert response.status_code == 401, response.text
                assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("content", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"messages": []}', 400, "model"),
        (b'{"model": "claude-haiku-4-5"}', 400, "messages"),
        (b'{"model": "claude-haiku-4-5", "messages": [], "max_tokens": "many"}', 400, "max_tokens"),
        (b'{"model": "claude-haiku-4-5", "messages": [], "stream": "yes"}', 400, "stream"),
        (
            b'{"model": "claude-haiku-4-5", "messages": [], "pad": "' + b"x" * 5000 + b'"}',
            413,
            "limit of 2048",
        ),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_the_service_keeps_running(
    tmp_path: Path, content: bytes, status: int, fragment: str
) -> None:
    async with mock_api() as (api, url):
        config = proxy_config(url, llm_proxy={"max_body_bytes": 2048})
        async with start_proxy(config, tmp_path) as proxy:
            response = await proxy.client.post(
                "/v1/messages", content=content, headers={"x-api-key": KEY_ALICE}
            )
            assert response.status_code == status
            error = response.json()["error"]
            assert fragment in error["message"]
            assert error["type"] == ("request_too_large" if status == 413 else "invalid_request_error")
            assert not api.received
            assert (await proxy.messages()).status_code == 200
            rows = await proxy.ledger()
            assert [r.status for r in rows] == ["invalid_request", "ok"]


async def test_provider_errors_are_relayed_without_fallback(tmp_path: Path) -> None:
    async with mock_api(fail_status=400) as (_api, url), start_proxy(proxy_config(url), tmp_path) as proxy:
        response = await proxy.messages()
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        [row] = await proxy.ledger()
        assert (row.status, row.http_status, row.error_type, row.attempts) == (
            "provider_error",
            400,
            "invalid_request_error",
            1,
        )


async def test_count_tokens_models_and_root(tmp_path: Path) -> None:
    async with mock_api() as (_api, url):
        config = proxy_config(url)
        config["routes"].insert(0, {"match": "fast", "provider": "primary", "model": "claude-haiku-4-5"})
        config["providers"][0]["models"] = ["claude-sonnet-4-5", "claude-opus-4-8"]
        config["virtual_keys"][0]["allowed_models"] = ["fast", "claude-sonnet-*"]
        async with start_proxy(config, tmp_path) as proxy:
            counted = await proxy.client.post(
                "/v1/messages/count_tokens",
                json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]},
                headers={"x-api-key": KEY_ALICE},
            )
            assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
            refused = await proxy.client.post(
                "/v1/messages/count_tokens",
                json={"model": "claude-opus-4-8", "messages": []},
                headers={"x-api-key": KEY_ALICE},
            )
            assert refused.status_code == 403
            models = await proxy.client.get(
                "/v1/models", headers={"x-api-key": KEY_ALICE, "anthropic-version": "2023-06-01"}
            )
            assert models.status_code == 200
            assert [m["id"] for m in models.json()["data"]] == ["fast", "claude-sonnet-4-5"]
            assert (await proxy.client.get("/v1/models")).status_code == 401
            assert (await proxy.client.head("/")).status_code == 200
            assert (await proxy.client.get("/")).status_code == 200
            assert await proxy.ledger() == []  # count_tokens and listings are not model requests
