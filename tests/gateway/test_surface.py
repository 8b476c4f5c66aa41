"""Resources, resource templates, prompts and completions through a real gateway, per key, in
both protocol eras: two stdio upstreams of the test server with ``--surface``, SDK clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import orjson
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from tests.conftest import RunningGateway, mcp_client, run_gateway, upstream_stdio

MODES = ["legacy", "2026-07-28"]
ALICE, BOB, CAROL = "alice-secret-0123456789", "bob-secret-0123456789", "carol-secret-0123456789"


def surface_server(name: str, **extra: Any) -> dict[str, Any]:
    server = upstream_stdio(name, **extra)
    server["args"] = [*server["args"], "--surface"]
    return server


CONFIG: dict[str, Any] = {
    "teams": [{"name": "eng"}],
    "virtual_keys": [
        {"id": "alice", "name": "Alice", "team": "eng", "secret_env": "TEST_KEY_ALICE"},
        {"id": "bob", "name": "Bob", "secret_env": "TEST_KEY_BOB"},
        {"id": "carol", "name": "Carol", "secret_env": "TEST_KEY_CAROL"},
    ],
    "mcp": {
        "servers": [
            surface_server("alpha"),
            surface_server("beta", allowed_resources=["res://beta/readme"], allowed_prompts=["greet"]),
        ],
        "team_permissions": {"eng": "*"},
        "virtual_key_permissions": {
            # The explicit shape: one resource, the template, one prompt of alpha.
            "bob": {
                "alpha": {
                    "tools": ["echo"],
                    "resources": ["res://alpha/readme", "res://alpha/items/*"],
                    "prompts": ["greet"],
                }
            },
            # Today's shape: tool globs grant those tools and nothing else of the server.
            "carol": {"alpha": ["echo"]},
        },
    },
}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningGateway]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (("TEST_KEY_ALICE", ALICE), ("TEST_KEY_BOB", BOB), ("TEST_KEY_CAROL", CAROL)):
            mp.setenv(name, value)
        async with run_gateway(CONFIG, tmp_path_factory.mktemp("gw")) as gw:
            yield gw


def gw_uri(server: str, uri: str) -> str:
    return f"mcpgw://{server}/{uri}"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_each_key_lists_only_its_resources_templates_and_prompts(
    gateway: RunningGateway, mode: str
) -> None:
    # A pinned 2026 client does not discover; "auto" does (and lands in 2026-07-28).
    async with mcp_client(gateway.url, ALICE, "legacy" if mode == "legacy" else "auto") as alice:
        capabilities = alice.server_capabilities
        assert capabilities.resources is not None and capabilities.resources.subscribe is True
        assert capabilities.prompts is not None and capabilities.completions is not None
    async with mcp_client(gateway.url, ALICE, mode) as alice:
        resources = (await alice.list_resources()).resources
        assert [r.uri for r in resources] == [
            gw_uri("alpha", "res://alpha/readme"),
            gw_uri("alpha", "res://alpha/secret"),
            gw_uri("beta", "res://beta/readme"),  # beta's ceiling withholds its secret from everyone
        ]
        assert {r.name for r in resources} == {"readme", "secret"}
        templates = (await alice.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == [
            gw_uri("alpha", "res://alpha/items/{item}"),
            # beta's template is outside beta's allowed_resources
        ]
        prompts = (await alice.list_prompts()).prompts
        assert [p.name for p in prompts] == ["alpha__cite", "alpha__greet", "beta__greet"]
        assert prompts[1].arguments is not None and prompts[1].arguments[0].name == "who"
    async with mcp_client(gateway.url, BOB, mode) as bob:
        assert [r.uri for r in (await bob.list_resources()).resources] == [
            gw_uri("alpha", "res://alpha/readme")
        ]
        templates = (await bob.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == [gw_uri("alpha", "res://alpha/items/{item}")]
        assert [p.name for p in (await bob.list_prompts()).prompts] == ["alpha__greet"]
        assert [t.name for t in (await bob.list_tools()).tools] == ["alpha__echo"]
    async with mcp_client(gateway.url, CAROL, mode) as carol:
        assert (await carol.list_resources()).resources == []
        assert (await carol.list_resource_templates()).resource_templates == []
        assert (await carol.list_prompts()).prompts == []
        assert [t.name for t in (await carol.list_tools()).tools] == ["alpha__echo"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_reads_prompts_and_completions_reach_the_owning_server(
    gateway: RunningGateway, mode: str
) -> None:
    async with mcp_client(gateway.url, BOB, mode) as bob:
        read = await bob.read_resource(gw_uri("alpha", "res://alpha/readme"))
        assert [(c.uri, c.text) for c in read.contents] == [  # type: ignore[union-attr]
            (gw_uri("alpha", "res://alpha/readme"), "readme of alpha")
        ]
        filled = gw_uri("alpha", "res://alpha/items/{item}").replace("{item}", "x7")
        read = await bob.read_resource(filled)
        assert [(c.uri, c.text) for c in read.contents] == [(filled, "item x7 of alpha")]  # type: ignore[union-attr]
        prompt = await bob.get_prompt("alpha__greet", {"who": "Bob"})
        assert prompt.messages[0].content.text == "Hello Bob from alpha"  # type: ignore[union-attr]
        done = await bob.complete(
            PromptReference(type="ref/prompt", name="alpha__greet"), {"name": "who", "value": "b"}
        )
        assert done.completion.values == ["bob@alpha"]
        template = ResourceTemplateReference(
            type="ref/resource", uri=gw_uri("alpha", "res://alpha/items/{item}")
        )
        done = await bob.complete(template, {"name": "item", "value": "t"})
        # The upstream saw its own template URI, not the gateway's.
        assert done.completion.values == ["two@res://alpha/items/{item}", "three@res://alpha/items/{item}"]
    async with mcp_client(gateway.url, ALICE, mode) as alice:
        cited = await alice.get_prompt("alpha__cite", {})
        embedded, link, plain = (m.content for m in cited.messages)
        assert embedded.resource.uri == gw_uri("alpha", "res://alpha/readme")  # type: ignore[union-attr]
        assert link.uri == gw_uri("alpha", "res://alpha/secret")  # type: ignore[union-attr]
        assert plain.text == "plain"  # type: ignore[union-attr]
        read = await alice.read_resource(link.uri)  # type: ignore[union-attr]
        assert read.contents[0].text == "secret of alpha"  # type: ignore[union-attr]


async def raw_2026(
    gateway: RunningGateway, key: str, method: str, params: dict[str, Any]
) -> tuple[int, bytes]:
    """One 2026-07-28 request over plain HTTP: the exact bytes the client gets."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": method,
    }
    name = params.get("uri", params.get("name"))
    if method in ("resources/read", "prompts/get") and isinstance(name, str):
        headers["Mcp-Name"] = name
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {**params, "_meta": meta}}
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(gateway.url, content=orjson.dumps(body), headers=headers)
    return response.status_code, response.content


@pytest.mark.anyio
async def test_a_hidden_resource_is_refused_exactly_like_a_missing_one(gateway: RunningGateway) -> None:
    cases = {
        "hidden": gw_uri("alpha", "res://alpha/secret"),  # bob may read only alpha's readme and items
        "upstream has none": gw_uri("alpha", "res://alpha/nope/x"),  # outside bob's globs too
        "missing template item": gw_uri("alpha", "res://alpha/items/a/b"),  # permitted; the upstream has none
        "outside the ceiling": gw_uri("beta", "res://beta/secret"),
        "no such server": gw_uri("zeta", "res://zeta/readme"),
        "not a gateway URI": "res://alpha/readme",
    }
    answers = {}
    for label, uri in cases.items():
        status, body = await raw_2026(gateway, BOB, "resources/read", {"uri": uri})
        answers[label] = (status, body.replace(uri.encode(), b"<uri>"))
    assert len(set(answers.values())) == 1, answers
    error = orjson.loads(next(iter(answers.values()))[1])["error"]
    assert error == {"code": -32602, "message": "Unknown resource: '<uri>'"}
    for mode in MODES:
        async with mcp_client(gateway.url, BOB, mode) as bob:
            seen = set()
            for uri in cases.values():
                with pytest.raises(MCPError) as refused:
                    await bob.read_resource(uri)
                seen.add((refused.value.error.code, refused.value.error.message.replace(uri, "<uri>")))
            assert seen == {(-32602, "Unknown resource: '<uri>'")}
    uris = set(cases.values())
    rows = [
        r
        for r in await gateway.flushed_calls()
        if r.kind == "resource" and r.key_id == "bob" and r.exposed_name in uris
    ]
    by_uri = {r.exposed_name: r for r in rows}
    assert {r.status for r in rows} == {"denied"}, [(r.exposed_name, r.status, r.key_id) for r in rows]
    assert (by_uri[cases["hidden"]].server, by_uri[cases["hidden"]].tool) == ("alpha", "res://alpha/secret")
    missing = by_uri[cases["missing template item"]]
    assert (missing.server, missing.upstream_latency_ms is not None) == ("alpha", True)
    assert "the upstream answered -32602" in (missing.error or "")
    for label in ("outside the ceiling", "no such server", "not a gateway URI"):
        assert by_uri[cases[label]].server is None, label


@pytest.mark.anyio
async def test_hidden_and_missing_prompts_and_completions_get_the_same_answer(
    gateway: RunningGateway,
) -> None:
    prompt_answers = set()
    for name in ("alpha__cite", "beta__greet", "alpha__nope", "beta__cite"):
        status, body = await raw_2026(gateway, BOB, "prompts/get", {"name": name, "arguments": {}})
        prompt_answers.add((status, body.replace(name.encode(), b"<name>")))
    assert len(prompt_answers) == 1, prompt_answers
    assert orjson.loads(next(iter(prompt_answers))[1])["error"] == {
        "code": -32602,
        "message": "Unknown prompt: '<name>'",
    }
    completion_answers = set()
    for ref in (
        {"type": "ref/prompt", "name": "alpha__cite"},
        {"type": "ref/prompt", "name": "alpha__nope"},
    ):
        params = {"ref": ref, "argument": {"name": "x", "value": ""}}
        status, body = await raw_2026(gateway, BOB, "completion/complete", params)
        completion_answers.add((status, body.replace(ref["name"].encode(), b"<name>")))
    assert len(completion_answers) == 1, completion_answers
    refused = {"alpha__cite", "beta__greet", "alpha__nope", "beta__cite"}
    rows = [
        r
        for r in await gateway.flushed_calls()
        if r.key_id == "bob" and r.kind in ("prompt", "completion") and r.exposed_name in refused
    ]
    assert len(rows) == 6
    assert {r.status for r in rows} == {"denied"}
    hidden = next(r for r in rows if r.kind == "prompt" and r.exposed_name == "alpha__cite")
    assert (hidden.server, hidden.tool) == ("alpha", "cite")
    assert next(r for r in rows if r.exposed_name == "alpha__nope").server is None


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_reads_prompts_and_completions_are_audited_with_their_kind(
    gateway: RunningGateway, mode: str
) -> None:
    marker = f"audit-{mode}"
    async with mcp_client(gateway.url, ALICE, mode) as alice:
        await alice.read_resource(gw_uri("alpha", f"res://alpha/items/{marker}"))
        await alice.get_prompt("beta__greet", {"who": marker})
        await alice.complete(
            PromptReference(type="ref/prompt", name="beta__greet"), {"name": "who", "value": marker}
        )
        await alice.call_tool("alpha__echo", {"text": marker})
    rows = [
        r
        for r in await gateway.flushed_calls()
        if r.key_id == "alice" and marker in str(r.exposed_name) + str(r.arguments)
    ]
    kinds = {r.kind: r for r in rows}
    assert set(kinds) == {"resource", "prompt", "completion", "tool"}
    read = kinds["resource"]
    assert (read.server, read.tool, read.status) == ("alpha", f"res://alpha/items/{marker}", "ok")
    assert read.result["contents"][0]["uri"] == gw_uri("alpha", f"res://alpha/items/{marker}")
    prompt = kinds["prompt"]
    assert (prompt.exposed_name, prompt.server, prompt.tool, prompt.arguments) == (
        "beta__greet",
        "beta",
        "greet",
        {"who": marker},
    )
    completion = kinds["completion"]
    assert (completion.server, completion.tool, completion.status) == ("beta", "greet", "ok")
    assert completion.arguments["argument"] == {"name": "who", "value": marker}
    for row in rows:
        assert row.latency_ms > 0 and row.upstream_latency_ms is not None
        assert row.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")


@pytest.mark.anyio
async def test_2026_list_results_are_private_and_promise_no_freshness_their_sources_did_not(
    gateway: RunningGateway,
) -> None:
    for method in ("tools/list", "resources/list", "resources/templates/list", "prompts/list"):
        status, body = await raw_2026(gateway, ALICE, method, {})
        result = orjson.loads(body)["result"]
        assert status == 200
        # Per-key lists are private; the stdio (2025-era) upstreams gave no ttlMs, so nothing is fresh.
        assert (result["cacheScope"], result["ttlMs"], result["resultType"]) == ("private", 0, "complete")
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-gateway"
    status, body = await raw_2026(
        gateway, ALICE, "resources/read", {"uri": gw_uri("alpha", "res://alpha/readme")}
    )
    result = orjson.loads(body)["result"]
    assert (result["cacheScope"], result["ttlMs"]) == ("private", 0)
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-gateway"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_merged_lists_keep_one_order_from_call_to_call(gateway: RunningGateway, mode: str) -> None:
    async with mcp_client(gateway.url, ALICE, mode, cache=None) as alice:
        first = [await alice.list_prompts(), await alice.list_resources(), await alice.list_tools()]
        again = [await alice.list_prompts(), await alice.list_resources(), await alice.list_tools()]
        tools = await alice.list_tools()
    for one, two in zip(first, again, strict=True):
        assert one.model_dump() == two.model_dump()
    names = [t.name for t in tools.tools]
    assert names == sorted(names)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_resource_links_in_tool_results_can_be_read_back_through_the_gateway(
    gateway: RunningGateway, mode: str
) -> None:
    async with mcp_client(gateway.url, ALICE, mode) as alice:
        result = await alice.call_tool("alpha__link", {})
        link, embedded, text = result.content
        assert link.uri == gw_uri("alpha", "res://alpha/readme")  # type: ignore[union-attr]
        assert embedded.resource.uri == gw_uri("alpha", "res://alpha/secret")  # type: ignore[union-attr]
        assert text.text == "see above"  # type: ignore[union-attr]
        read = await alice.read_resource(link.uri)  # type: ignore[union-attr]
        assert read.contents[0].text == "readme of alpha"  # type: ignore[union-attr]
    row = next(r for r in await gateway.flushed_calls() if r.exposed_name == "alpha__link")
    assert row.result["content"][0]["uri"] == gw_uri("alpha", "res://alpha/readme")
