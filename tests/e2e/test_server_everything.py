"""`@modelcontextprotocol/server-everything` (stdio, pinned) behind the gateway, in both eras.

The reference server nobody here wrote: its tools, resources (static and from templates),
prompts and completions through the gateway with the `mcp` SDK client, once over the
2025-11-25 handshake and once over 2026-07-28. Its sampling and elicitation tools exist only
for a client that declared those capabilities; they need server-to-client requests through the
gateway, which relays them to a client that answers.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.client.context import ClientRequestContext
from mcp_types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequestParams,
    ElicitResult,
    ImageContent,
    PromptReference,
    ResourceTemplateReference,
    TextContent,
    TextResourceContents,
)

from tests.conftest import RunningGateway, mcp_client, run_gateway
from tests.e2e.node_tools import NODE22, SERVER_EVERYTHING, require

pytestmark = pytest.mark.e2e

KEY = "alice-secret-0123456789"
MODES = ["legacy", "2026-07-28"]
DOC = "mcpgw://everything/demo://resource/static/document/features.md"
TEXT_TEMPLATE = "mcpgw://everything/demo://resource/dynamic/text/{resourceId}"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    require(NODE22, SERVER_EVERYTHING)
    config = {
        "virtual_keys": [{"id": "alice", "secret_env": "TEST_KEY_ALICE"}],
        "mcp": {
            "servers": [
                {"name": "everything", "command": str(NODE22), "args": [str(SERVER_EVERYTHING), "stdio"]}
            ],
            "virtual_key_permissions": {"alice": "*"},
        },
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_KEY_ALICE", KEY)
        async with run_gateway(config, tmp_path_factory.mktemp("gateway")) as gw:
            yield gw


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_tools(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, KEY, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"everything__echo", "everything__get-sum", "everything__get-tiny-image"} <= names, names
        echo = await client.call_tool("everything__echo", {"message": f"hello {mode}"})
        assert text_of(echo) == f"Echo: hello {mode}"
        total = await client.call_tool("everything__get-sum", {"a": 2, "b": 40})
        assert text_of(total) == "The sum of 2 and 40 is 42."
        image = await client.call_tool("everything__get-tiny-image", {})
        png = [b for b in image.content if isinstance(b, ImageContent)]
        assert png and base64.b64decode(png[0].data).startswith(b"\x89PNG")


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_resources_and_templates(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, KEY, mode=mode) as client:
        uris = {r.uri for r in (await client.list_resources()).resources}
        assert DOC in uris, sorted(uris)[:10]
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert TEXT_TEMPLATE in templates, templates
        document = (await client.read_resource(DOC)).contents
        assert isinstance(document[0], TextResourceContents) and document[0].uri == DOC
        assert "features" in document[0].text.lower()
        filled = TEXT_TEMPLATE.replace("{resourceId}", "3")
        dynamic = (await client.read_resource(filled)).contents
        assert isinstance(dynamic[0], TextResourceContents) and dynamic[0].uri == filled
        assert "3" in dynamic[0].text
    kinds = {(c.kind, c.tool, c.status) for c in await gateway.flushed_calls() if c.protocol_version}
    assert ("resource", "demo://resource/static/document/features.md", "ok") in kinds


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_prompts_and_completions(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, KEY, mode=mode) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        assert {
            "everything__simple-prompt",
            "everything__args-prompt",
            "everything__completable-prompt",
        } <= names
        simple = await client.get_prompt("everything__simple-prompt")
        assert text_of_messages(simple) == ["This is a simple prompt without arguments."]
        args = await client.get_prompt("everything__args-prompt", {"city": "Lyon", "state": "Rhone"})
        assert text_of_messages(args) == ["What's weather in Lyon, Rhone?"]
        prompt_ref = PromptReference(type="ref/prompt", name="everything__completable-prompt")
        department = await client.complete(prompt_ref, {"name": "department", "value": "S"})
        assert department.completion.values == ["Sales", "Support"]
        person = await client.complete(prompt_ref, {"name": "name", "value": ""}, {"department": "Sales"})
        assert person.completion.values == ["David", "Eve", "Frank"]
        template_ref = ResourceTemplateReference(type="ref/resource", uri=TEXT_TEMPLATE)
        resource_id = await client.complete(template_ref, {"name": "resourceId", "value": "7"})
        assert resource_id.completion.values == ["7"]


def text_of_messages(result: Any) -> list[str]:
    return [m.content.text for m in result.messages if isinstance(m.content, TextContent)]


async def answer_sampling(
    context: ClientRequestContext, params: CreateMessageRequestParams
) -> CreateMessageResult:
    return CreateMessageResult(
        role="assistant",
        content=TextContent(type="text", text="sampled by the test client"),
        model="test-model",
    )


async def answer_elicitation(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
    return ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", MODES)
async def test_sampling_tool_reaches_a_client_that_answers(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, KEY, mode=mode, sampling_callback=answer_sampling) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "everything__trigger-sampling-request" in names, sorted(names)
        result = await client.call_tool(
            "everything__trigger-sampling-request", {"prompt": "hi", "maxTokens": 5}
        )
        assert "sampled by the test client" in text_of(result)


@pytest.mark.anyio
@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", MODES)
async def test_elicitation_tool_reaches_a_client_that_answers(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, KEY, mode=mode, elicitation_callback=answer_elicitation) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "everything__trigger-elicitation-request" in names, sorted(names)
        result = await client.call_tool("everything__trigger-elicitation-request", {})
        assert "Ada Lovelace" in text_of(result)
