"""Tools that need the client: sampling and elicitation as server-to-client requests (2025-11-25),
the same as input-required results (2026-07-28), a tool that requires a client capability, list
changes announced to listeners, and an SSE stream closed mid-call."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve, Sample
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.shared.exceptions import MCPError
from mcp_types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequest,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    SamplingMessage,
    TextContent,
)
from pydantic import BaseModel, Field


class Answer(BaseModel):
    response: str = Field(description="User's response")


class Defaults(BaseModel):
    """SEP-1034: a default for every primitive type."""

    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(
        default="active",
        description="User status",
        json_schema_extra={"enum": ["active", "inactive", "pending"]},
    )
    verified: bool = Field(default=True, description="Verification status")


def _titled(key: str, options: list[tuple[str, str]]) -> dict[str, Any]:
    return {key: [{"const": value, "title": title} for value, title in options]}


class Enums(BaseModel):
    """SEP-1330: the enum shapes an elicitation form may use."""

    untitledSingle: str = Field(
        description="Simple enum without titles",
        json_schema_extra={"enum": ["active", "inactive", "pending"]},
    )
    titledSingle: str = Field(
        description="Enum with titled options (oneOf)",
        json_schema_extra=_titled(
            "oneOf", [("low", "Low Priority"), ("medium", "Medium Priority"), ("high", "High Priority")]
        ),
    )
    untitledMulti: list[str] = Field(
        description="Multi-select without titles",
        json_schema_extra={"items": {"type": "string", "enum": ["read", "write", "execute"]}},
    )
    titledMulti: list[str] = Field(
        description="Multi-select with titled options",
        json_schema_extra={
            "items": _titled(
                "anyOf", [("feature", "New Feature"), ("bug", "Bug Fix"), ("docs", "Documentation")]
            )
        },
    )
    legacyEnum: str = Field(
        description="Legacy enum with enumNames",
        json_schema_extra={
            "enum": ["small", "medium", "large"],
            "enumNames": ["Small Size", "Medium Size", "Large Size"],
        },
    )


def _form(message: str, field: str, kind: str = "string") -> ElicitRequest:
    schema = {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample(text: str, max_tokens: int) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=text))
    return CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=max_tokens))


def _field(answer: object, name: str) -> Any:
    return answer.content.get(name) if isinstance(answer, ElicitResult) and answer.content else None


# Resolvers: what each tool asks the client (module level, so the SDK can read the annotations).


def sampling(prompt: str) -> Sample:
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=100
    )


def ask(message: str) -> Elicit[Answer]:
    return Elicit(message, Answer)


def defaults() -> Elicit[Defaults]:
    return Elicit("Please provide user information", Defaults)


def enums() -> Elicit[Enums]:
    return Elicit("Please select values using different enum schema types", Enums)


def register(server: MCPServer) -> None:
    _register_requests(server)
    _register_input_required(server)
    _register_changes(server)


def _register_requests(server: MCPServer) -> None:
    """Tools that wait for the client's answer mid-call. They are written with the SDK's resolvers
    (``Resolve``), which ask in whatever way the caller's protocol era has: a request to the client
    for 2025-11-25, an input-required result and a retry for 2026-07-28. A gateway in front may
    speak either era to this server, whatever era its own client speaks."""

    @server.tool()
    async def test_sampling(prompt: str, result: Annotated[CreateMessageResult, Resolve(sampling)]) -> str:
        """Asks the client's model to complete ``prompt``."""
        content = result.content
        text = content.text if isinstance(content, TextContent) else "No response"
        return f"LLM response: {text}"

    def said(reply: ElicitationResult[Any], prefix: str) -> str:
        if isinstance(reply, AcceptedElicitation):
            return f"{prefix}: action=accept, content={reply.data.model_dump_json()}"
        return f"{prefix}: action={reply.action}, content={{}}"

    @server.tool()
    async def test_elicitation(
        message: str, reply: Annotated[ElicitationResult[Answer], Resolve(ask)]
    ) -> str:
        """Asks the user for one string."""
        return said(reply, "User response")

    @server.tool()
    async def test_elicitation_sep1034_defaults(
        reply: Annotated[ElicitationResult[Defaults], Resolve(defaults)],
    ) -> str:
        """Asks for a form whose fields all have defaults."""
        return said(reply, "Elicitation result")

    @server.tool()
    async def test_elicitation_sep1330_enums(
        reply: Annotated[ElicitationResult[Enums], Resolve(enums)],
    ) -> str:
        """Asks for a form of every enum shape."""
        return said(reply, "Elicitation completed")

    @server.tool()
    async def test_missing_capability(ctx: Context) -> str:
        """Needs a client that declared sampling; otherwise a JSON-RPC error naming the capability."""
        caps = ctx.session.client_capabilities
        if caps is None or caps.sampling is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="This tool requires the client 'sampling' capability",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return "Client declared sampling capability; proceeding."


def _register_input_required(server: MCPServer) -> None:
    """2026-07-28: the tool answers with the inputs it needs; the client retries with them."""

    @server.tool()
    async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
        """Needs one elicitation answer."""
        answers = ctx.input_responses or {}
        if "user_name" in answers:
            return f"Hello, {_field(answers['user_name'], 'name') or '?'}!"
        return InputRequiredResult(input_requests={"user_name": _form("What is your name?", "name")})

    @server.tool()
    async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
        """Needs one sampling answer."""
        answers = ctx.input_responses or {}
        if "capital_question" in answers:
            answer = answers["capital_question"]
            ok = isinstance(answer, CreateMessageResult) and answer.content.type == "text"
            return f"Model said: {answer.content.text if ok else '?'}"  # type: ignore[union-attr]
        return InputRequiredResult(
            input_requests={"capital_question": _sample("What is the capital of France?", 100)}
        )

    @server.tool()
    async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
        """Needs the client's roots."""
        answers = ctx.input_responses or {}
        if "client_roots" in answers:
            answer = answers["client_roots"]
            return (
                f"Client exposed {len(answer.roots) if isinstance(answer, ListRootsResult) else 0} root(s)."
            )
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})

    @server.tool()
    async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
        """Needs its requestState echoed with the answer."""
        if "confirm" in (ctx.input_responses or {}) and ctx.request_state == "request-state-nonce":
            return "state-ok: confirmation received"
        return InputRequiredResult(
            input_requests={"confirm": _form("Please confirm", "ok", "boolean")},
            request_state="request-state-nonce",
        )

    @server.tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
        """Needs an elicitation, a sampling and a roots answer at once."""
        if {"user_name", "greeting", "client_roots"} <= (ctx.input_responses or {}).keys():
            return "All inputs received."
        requests: dict[str, InputRequest] = {
            "user_name": _form("What is your name?", "name"),
            "greeting": _sample("Generate a greeting", 50),
            "client_roots": ListRootsRequest(),
        }
        return InputRequiredResult(input_requests=requests, request_state="multiple-inputs")

    @server.tool()
    async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
        """Three rounds: a name, then a colour, then the answer; the round travels in requestState."""
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        answers = ctx.input_responses or {}
        if state["round"] == 1 and "step1" in answers:
            return InputRequiredResult(
                input_requests={"step2": _form("Step 2: What is your favorite color?", "color")},
                request_state=json.dumps({"round": 2, "name": _field(answers["step1"], "name")}),
            )
        if state["round"] == 2 and "step2" in answers:
            return f"{state.get('name')} likes {_field(answers['step2'], 'color')}."
        return InputRequiredResult(
            input_requests={"step1": _form("Step 1: What is your name?", "name")},
            request_state=json.dumps({"round": 1}),
        )

    @server.tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
        """Echoes its requestState; the SDK refuses one that was altered."""
        if ctx.request_state is None:
            return InputRequiredResult(
                input_requests={"confirm": _form("Please confirm", "ok", "boolean")}, request_state="round-1"
            )
        return f"state-ok: {ctx.request_state}"

    @server.tool()
    async def test_streaming_elicitation(ctx: Context) -> str | InputRequiredResult:
        """Needs an answer; in 2026-07-28 it asks in its result, never with a request of its own."""
        if "confirm" in (ctx.input_responses or {}):
            return "confirmed"
        return InputRequiredResult(input_requests={"confirm": _form("Please confirm", "ok", "boolean")})

    @server.tool()
    async def test_logging_tool(ctx: Context) -> str:
        """Logs one message; a 2026 client that did not ask for logs must not get it."""
        await ctx.log("info", "test_logging_tool ran")
        return "logged"

    @server.tool()
    async def test_input_required_result_capabilities(ctx: Context) -> InputRequiredResult:
        """Asks only for inputs the client declared it can give."""
        caps = ctx.client_capabilities
        requests: dict[str, InputRequest] = {}
        if caps is None or caps.sampling is not None:
            requests["sample"] = _sample("Say hello", 50)
        if caps is None or caps.elicitation is not None:
            requests["ask"] = _form("What is your name?", "name")
        return InputRequiredResult(input_requests=requests, request_state="capability-gated")

    @server.prompt()
    async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
        """A prompt that needs one elicitation answer first."""
        answers = ctx.input_responses or {}
        if "user_context" in answers:
            text = _field(answers["user_context"], "context") or "?"
            return [
                UserMessage(
                    role="user", content=TextContent(type="text", text=f"Use the following context: {text}")
                )
            ]
        return InputRequiredResult(
            input_requests={"user_context": _form("What context should the prompt use?", "context")}
        )


def _register_changes(server: MCPServer) -> None:
    def dynamic() -> str:
        """Exists only for a moment."""
        return "dynamic"

    @server.tool()
    async def test_trigger_tool_change(ctx: Context) -> str:
        """Adds and removes a tool, then announces that the tool list changed."""
        server.add_tool(dynamic, name="test_dynamic_tool")
        server.remove_tool("test_dynamic_tool")
        await ctx.notify_tools_changed()
        return "tool list changed"

    @server.tool()
    async def test_trigger_prompt_change(ctx: Context) -> str:
        """Adds and removes a prompt, then announces that the prompt list changed."""
        server.add_prompt(Prompt.from_function(dynamic, name="test_dynamic_prompt", description="dynamic"))
        server.remove_prompt("test_dynamic_prompt")
        await ctx.notify_prompts_changed()
        return "prompt list changed"

    @server.tool()
    async def test_reconnection(ctx: Context) -> str:
        """Closes its SSE stream mid-call; the client resumes it and still gets the result."""
        await ctx.log("info", "Before disconnect")
        await ctx.close_sse_stream()
        await anyio.sleep(0.2)
        await ctx.log("info", "After reconnect")
        return "Reconnection test completed"
