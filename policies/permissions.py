"""Which upstream tools a virtual key may see and call.

A permission entry in the policy file takes one of three shapes:

* ``"*"`` - every tool of every server;
* ``[filesystem, database]`` - every tool of the named servers;
* ``{filesystem: [read_file, "list_*"], database: "*"}`` - tool name globs per server.

Deny by default: a key with no entry (and no team entry to inherit) sees nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal

ALL: Literal["*"] = "*"

PermissionSpec = Literal["*"] | list[str] | dict[str, Literal["*"] | list[str]]


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Case-sensitive glob match of ``name`` against any pattern."""
    return any(pattern == ALL or fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True)
class ToolGrant:
    """The decision "may this key use tool T of server S", independent of any transport."""

    per_server: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Server name (or ``*`` for any server) to tool globs."""
    source: str = "none"
    """Where the grant came from, for admins: ``key:<id>``, ``team:<name>`` or ``none``."""

    @classmethod
    def from_spec(cls, spec: PermissionSpec | None, source: str) -> ToolGrant:
        if spec is None:
            return cls(source="none")
        if spec == ALL:
            return cls({ALL: (ALL,)}, source)
        if isinstance(spec, list):
            return cls({server: (ALL,) for server in spec}, source)
        return cls(
            {server: (ALL,) if tools == ALL else tuple(tools) for server, tools in spec.items()},
            source,
        )

    @property
    def is_empty(self) -> bool:
        return not self.per_server

    def allows_server(self, server: str) -> bool:
        return server in self.per_server or ALL in self.per_server

    def allows(self, server: str, tool: str) -> bool:
        patterns = self.per_server.get(server)
        if patterns is not None and matches_any(tool, patterns):
            return True
        wildcard = self.per_server.get(ALL)
        return wildcard is not None and matches_any(tool, wildcard)

    def servers(self) -> list[str]:
        return sorted(self.per_server)


NO_TOOLS = ToolGrant()
