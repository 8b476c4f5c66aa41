"""What the nesting-depth check (`gateway_common.json_depth`) costs on both hot paths.

Run: ``python benchmarks/json_depth.py``. Two bodies: a typical tools/call and a
~230 KB Claude-Code-like /v1/messages request (system prompt, 25 tools with nested
input schemas, hundreds of messages with tool_use / tool_result / thinking blocks,
code with brackets inside strings). For each: orjson.loads alone, the depth check
alone, and the reader with the check (`parse_message`, `Dialect.parse`), as µs per
call (p50 and p99 over repeated timeit batches).
"""

from __future__ import annotations

import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway_common.json_depth import nesting_exceeds
from llm_proxy.dialects import MESSAGES
from mcp_gateway.jsonrpc import parse_message

LIMIT = 64
CODE = 'def f(x):\n    return {"a": [x, {"b": x[0]}]}  # "quoted" \\ path C:\\dir\n' * 3


def tools_call_body() -> bytes:
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 17,
            "method": "tools/call",
            "params": {
                "name": "filesystem__read_file",
                "arguments": {"path": "src/app/main.py", "options": {"encoding": "utf-8", "lines": [1, 200]}},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
                    "io.modelcontextprotocol/clientInfo": {"name": "claude-code", "version": "2.1.332"},
                },
            },
        }
    )


def _schema(depth: int) -> dict[str, Any]:
    if depth == 0:
        return {"type": "string", "description": "a value [with brackets] {and braces}"}
    return {
        "type": "object",
        "properties": {f"p{i}": _schema(depth - 1) for i in range(2)},
        "required": ["p0"],
        "additionalProperties": False,
    }


def messages_body(size: int = 200_000) -> bytes:
    tools = [
        {"name": f"mcp__gateway__tool_{i}", "description": "Does things. " * 20, "input_schema": _schema(4)}
        for i in range(25)
    ]
    messages: list[dict[str, Any]] = []
    while len(orjson.dumps(messages)) < size * 3 // 4:
        n = len(messages)
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": f"toolu_{n:08d}",
                        "content": [{"type": "text", "text": CODE * 2}],
                    },
                    {"type": "text", "text": "continue please"},
                ],
            }
        )
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm " * 30, "signature": "x" * 100},
                    {
                        "type": "tool_use",
                        "id": f"toolu_{n + 1:08d}",
                        "name": "mcp__gateway__tool_1",
                        "input": {"path": "src/a.py", "opts": {"deep": [[{"k": [1, 2, {"z": None}]}]]}},
                    },
                ],
            }
        )
    return orjson.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 64000,
            "stream": True,
            "system": [
                {
                    "type": "text",
                    "text": "You are Claude Code. " * 500,
                    "cache_control": {"type": "ephemeral"},
                }
            ],
            "tools": tools,
            "messages": messages,
            "metadata": {"user_id": "u"},
            "thinking": {"type": "enabled", "budget_tokens": 31999},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        }
    )


def per_call(action: Callable[[], object], number: int, repeat: int) -> tuple[float, float]:
    """p50 and p99 of µs per call over ``repeat`` batches of ``number`` calls."""
    times = sorted(t / number * 1e6 for t in timeit.repeat(action, number=number, repeat=repeat))
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def report(name: str, body: bytes, reader: Callable[[bytes], object], number: int, repeat: int) -> None:
    document = orjson.loads(body)
    print(f"{name}: {len(body):,} bytes")
    for label, action in (
        ("orjson.loads", lambda: orjson.loads(body)),
        ("depth check", lambda: nesting_exceeds(document, LIMIT)),
        ("reader with check", lambda: reader(body)),
    ):
        p50, p99 = per_call(action, number, repeat)
        print(f"  {label:20} p50 {p50:8.2f} µs   p99 {p99:8.2f} µs")


def main() -> None:
    report("tools/call", tools_call_body(), lambda b: parse_message(b, max_depth=LIMIT), 20_000, 100)
    report("/v1/messages", messages_body(), lambda b: MESSAGES.parse(b, LIMIT), 50, 100)


if __name__ == "__main__":
    main()
