"""Tools whose results the suite checks by content: text, image, audio, embedded resources, a mix,
an error, log messages, progress, and a JSON Schema 2020-12 input schema kept as written."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp_types import AudioContent, EmbeddedResource, ImageContent, TextContent, TextResourceContents

# A 1x1 PNG and a tiny WAV, as the suite's scenarios expect them.
PNG_BASE64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


def _image() -> ImageContent:
    return ImageContent(type="image", data=PNG_BASE64, mime_type="image/png")


def register(server: MCPServer) -> None:
    @server.tool()
    def test_simple_text() -> str:
        """Returns one text block."""
        return "This is a simple text response for testing."

    @server.tool()
    def test_image_content() -> list[ImageContent]:
        """Returns one PNG image block."""
        return [_image()]

    @server.tool()
    def test_audio_content() -> list[AudioContent]:
        """Returns one WAV audio block."""
        return [AudioContent(type="audio", data=WAV_BASE64, mime_type="audio/wav")]

    @server.tool()
    def test_embedded_resource() -> list[EmbeddedResource]:
        """Returns one embedded text resource."""
        resource = TextResourceContents(
            uri="test://embedded-resource",
            mime_type="text/plain",
            text="This is an embedded resource content.",
        )
        return [EmbeddedResource(type="resource", resource=resource)]

    @server.tool()
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        """Returns text, an image and an embedded resource together."""
        resource = TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text='{"test": "data", "value": 123}',
        )
        return [
            TextContent(type="text", text="Multiple content types test:"),
            _image(),
            EmbeddedResource(type="resource", resource=resource),
        ]

    @server.tool()
    def test_error_handling() -> str:
        """Always fails, as a tool error the model can read."""
        raise RuntimeError("This tool intentionally returns an error for testing")

    @server.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Sends three log messages while it runs."""
        for text in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.log("info", text)
            await anyio.sleep(0.02)
        return "Tool with logging executed successfully"

    @server.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Reports progress 0, 50 and 100 of 100; returns the progress token it was given."""
        for step in (0, 50, 100):
            await ctx.report_progress(progress=step, total=100, message=f"Completed step {step} of 100")
            await anyio.sleep(0.02)
        meta = ctx.request_context.meta if ctx.request_context else None
        return str(meta.get("progress_token") if meta else 0)

    @server.tool(name="json_schema_2020_12_tool")
    def json_schema_2020_12_tool() -> str:
        """Its input schema uses JSON Schema 2020-12 keywords ($defs, $anchor, if/then/else, ...)."""
        return "json_schema_2020_12_tool"

    # MCPServer derives input schemas from signatures; this one is declared as written.
    server._tool_manager._tools["json_schema_2020_12_tool"].parameters = JSON_SCHEMA_2020_12
