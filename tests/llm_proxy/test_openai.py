"""POST /v1/chat/completions for OpenAI-compatible clients: routing, usage, errors in the OpenAI shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.llm_proxy.conftest import KEY_ALICE, PROVIDER_KEY, mock_api, proxy_config, start_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]


def openai_config(url: str) -> dict[str, Any]:
    config = proxy_config(url)
    config["providers"].append(
        {
            "name": "oa",
            "kind": "openai-compatible",
            "base_url": f"{url}/v1",
            "api_key_env": "TEST_PROVIDER_KEY",
        }
    )
    config["routes"].append({"match": "gpt-*", "provider": "oa"})
    return config


async def test_chat_completion_is_forwarded_with_the_provider_key_and_costed(tmp_path: Path) -> None:
    async with (
        mock_api(api_key=PROVIDER_KEY, cache_read_tokens=40) as (api, url),
        start_proxy(openai_config(url), tmp_path) as proxy,
    ):
        body = {
            "model": "gpt-4o-mini",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
                }
            ],
        }
        response = await proxy.client.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY_ALICE}"}
        )
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        assert api.received[-1].path == "/v1/chat/completions"
        assert api.received[-1].headers["authorization"] == f"Bearer {PROVIDER_KEY}"
        assert orjson.loads(api.received[-1].body) == body
        [row] = await proxy.ledger()
        assert row.endpoint == "chat.completions" and row.provider == "oa"
        assert (row.input_tokens, row.cache_read_tokens) == (usage["prompt_tokens"] - 40, 40)
        assert row.output_tokens == usage["completion_tokens"] and row.cost_usd > 0


async def test_openai_errors_and_dialect_mismatch(tmp_path: Path) -> None:
    async with mock_api() as (_api, url), start_proxy(openai_config(url), tmp_path) as proxy:
        missing = await proxy.client.post(
            "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": []}
        )
        assert missing.status_code == 401
        assert missing.json() == {
            "error": {
                "message": "Missing virtual key: send it in the x-api-key header or as 'Authorization: Bearer <key>'",
                "type": "authentication_error",
                "code": "invalid_api_key",
            }
        }
        headers = {"authorization": f"Bearer {KEY_ALICE}"}
        bad = await proxy.client.post("/v1/chat/completions", content=b"{", headers=headers)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
        wrong_api = await proxy.client.post(
            "/v1/chat/completions", json={"model": "claude-haiku-4-5", "messages": []}, headers=headers
        )
        assert wrong_api.status_code == 404 and "/v1/messages" in wrong_api.json()["error"]["message"]
        other_way = await proxy.messages(model="gpt-4o-mini")
        assert other_way.status_code == 404 and "/v1/chat/completions" in other_way.json()["error"]["message"]
