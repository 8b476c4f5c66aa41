"""How upstream tool and prompt names become the names a client sees.

Names are decided once for the whole gateway (not per key), so a tool keeps its
name whichever key lists it. Prompts are named by the same rules as tools, in a
namespace of their own (a tool and a prompt may share a name). Claude Code shows
an MCP tool to the model as ``mcp__<server>__<tool>`` and model APIs accept
``[A-Za-z0-9_-]{1,64}``, so we warn about tool names that would break there
(prompts become slash commands, which have no such limit).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

MODEL_TOOL_NAME_LIMIT = 64
_MODEL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


class PrefixMode(StrEnum):
    ALWAYS = "always"
    """``<server><sep><tool>`` for every tool (the default; names never change)."""
    NEVER = "never"
    """The upstream name as is; two servers with the same tool name are a collision."""
    ON_CONFLICT = "on_conflict"
    """Plain names, prefixed only where two servers expose the same name."""


@dataclass(frozen=True)
class NamingRules:
    separator: str = "__"
    prefix: PrefixMode = PrefixMode.ALWAYS
    client_server_name: str = "gateway"
    """The name users give the gateway in their client; only used for the length warning."""

    def client_visible(self, exposed: str) -> str:
        return f"mcp__{self.client_server_name}__{exposed}"


@dataclass(frozen=True)
class Collision:
    exposed_name: str
    sources: tuple[tuple[str, str], ...]
    """(server, tool) pairs that would all be called ``exposed_name``."""
    noun: str = "tool"
    """What collides: ``tool`` or ``prompt``."""

    def describe(self) -> str:
        noun = self.noun
        who = ", ".join(f"{noun} {tool!r} of server {server!r}" for server, tool in self.sources)
        return (
            f"{noun} name {self.exposed_name!r} is claimed by {who}; "
            "rename a server or change mcp.tool_naming"
        )


@dataclass
class NamingResult:
    names: dict[tuple[str, str], str] = field(default_factory=dict)
    """(server, upstream tool) -> exposed name, for every tool that got one."""
    collisions: list[Collision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def name_warnings(exposed: str, rules: NamingRules) -> list[str]:
    warnings = []
    visible = rules.client_visible(exposed)
    if len(visible) > MODEL_TOOL_NAME_LIMIT:
        warnings.append(
            f"tool {exposed!r} becomes {visible!r} in Claude Code ({len(visible)} characters); "
            f"model APIs reject tool names over {MODEL_TOOL_NAME_LIMIT}"
        )
    if not _MODEL_SAFE.match(exposed):
        warnings.append(f"tool {exposed!r} has characters outside [A-Za-z0-9_-]; model APIs may reject it")
    return warnings


def assign_names(
    tools_by_server: Mapping[str, Sequence[str]], rules: NamingRules, noun: str = "tool"
) -> NamingResult:
    """Give every (server, tool) an exposed name, reporting collisions instead of guessing.

    Colliding tools get no name at all: exposing one of them at random would make
    a call reach a server the caller did not mean. ``noun`` says what is named (``tool`` or
    ``prompt``); only tool names are checked against model API limits.
    """
    plain_owners: dict[str, list[str]] = defaultdict(list)
    for server, tools in tools_by_server.items():
        for tool in tools:
            plain_owners[tool].append(server)

    candidates: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for server, tools in tools_by_server.items():
        for tool in tools:
            prefixed = rules.prefix is PrefixMode.ALWAYS or (
                rules.prefix is PrefixMode.ON_CONFLICT and len(plain_owners[tool]) > 1
            )
            exposed = f"{server}{rules.separator}{tool}" if prefixed else tool
            candidates[exposed].append((server, tool))

    result = NamingResult()
    for exposed, sources in candidates.items():
        if len(sources) > 1:
            result.collisions.append(Collision(exposed, tuple(sorted(sources)), noun))
            continue
        result.names[sources[0]] = exposed
        if noun == "tool":
            result.warnings.extend(name_warnings(exposed, rules))
    result.collisions.sort(key=lambda c: c.exposed_name)
    return result
