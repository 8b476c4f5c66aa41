"""Client strings are bounded: a 1 MB model name costs neither a 1 MB error nor a 1 MB ledger row."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.bounds import ELLIPSIS, MAX_ECHO_CHARS, MAX_ID_CHARS, MAX_NAME_CHARS
from tests.llm_proxy.conftest import KEY_ALICE, mock_api, proxy_config, start_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("provider_env")]
MEGABYTE = 1024 * 1024
SHORT_ERROR = 400
"""Characters an error message may have around one echoed name (MAX_ECHO_CHARS)."""


def huge(prefix: str) -> str:
    return prefix + "x" * MEGABYTE


def assert_clipped(stored: str | None, original: str, limit: int) -> None:
    assert stored is not None and len(stored) == limit
    assert stored == original[: limit - 1] + ELLIPSIS


@pytest.mark.parametrize(
    ("model", "http_status", "fragment"),
    [
        (huge("nomatch-"), 404, "is not served by this gateway"),
        (huge("claude-opus-"), 403, "may not use model"),
        (huge("claude-haiku-unpriced-"), 403, "has no known price"),
        (huge("gpt-"), 404, "does not speak this API"),
    ],
    ids=["unknown", "not-allowed", "unpriced", "wrong-api"],
)
async def test_a_huge_model_name_gets_a_short_error_and_a_clipped_row(
    tmp_path: Path, model: str, http_status: int, fragment: str
) -> None:
    async with mock_api() as (api, url):
        config = proxy_config(url, pricing={"unknown_model": "block"})
        config["virtual_keys"][0]["allowed_models"] = ["claude-haiku-*", "gpt-*"]
        config["providers"].append({"name": "oa", "kind": "openai-compatible", "base_url": f"{url}/v1"})
        config["routes"].append({"match": "gpt-*", "provider": "oa"})
        async with start_proxy(config, tmp_path) as proxy:
            response = await proxy.messages(model=model)
            [row] = await proxy.ledger()
    assert response.status_code == http_status
    message = response.json()["error"]["message"]
    assert fragment in message and len(message) < SHORT_ERROR
    assert repr(model[: MAX_ECHO_CHARS - 1] + ELLIPSIS) in message
    assert_clipped(row.requested_model, model, MAX_NAME_CHARS)
    assert row.error == message
    assert not api.received


async def test_a_huge_model_name_that_is_routed_is_clipped_in_the_row(tmp_path: Path) -> None:
    model = huge("claude-haiku-")
    async with mock_api() as (api, url):
        config = proxy_config(url, pricing={"unknown_model": "zero"})
        async with start_proxy(config, tmp_path) as proxy:
            response = await proxy.messages(model=model)
            [row] = await proxy.ledger()
    assert response.status_code == 200 and len(api.received) == 1  # the mock serves (and echoes) any model
    assert_clipped(row.requested_model, model, MAX_NAME_CHARS)
    assert_clipped(row.served_model, model, MAX_NAME_CHARS)


async def test_count_tokens_errors_echo_a_clipped_model(tmp_path: Path) -> None:
    model = huge("nomatch-")
    async with mock_api() as (_api, url), start_proxy(proxy_config(url), tmp_path) as proxy:
        response = await proxy.client.post(
            "/v1/messages/count_tokens",
            json={"model": model, "messages": []},
            headers={"x-api-key": KEY_ALICE},
        )
    assert response.status_code == 404
    message = response.json()["error"]["message"]
    assert "is not served" in message and len(message) < SHORT_ERROR


async def test_huge_headers_are_clipped_in_the_row(tmp_path: Path) -> None:
    session, agent = "s" * 10_000, "a" * 10_000
    headers = {"x-api-key": KEY_ALICE, "x-claude-code-session-id": session, "user-agent": agent}
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    async with mock_api() as (_api, url), start_proxy(proxy_config(url), tmp_path) as proxy:
        assert (await proxy.client.post("/v1/messages", json=body, headers=headers)).status_code == 200
        [row] = await proxy.ledger()
    assert_clipped(row.session_id, session, MAX_ID_CHARS)
    assert_clipped(row.user_agent, agent, MAX_ID_CHARS)
