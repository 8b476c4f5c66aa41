"""The gateway-wide catalogues of tools and prompts and each key's view of them, as pure data.

The adapter feeds in the names each upstream reported; this module decides which
of them exist (server ceilings, naming, collisions) and which a grant may see or
use. Listing and calling go through the same `CatalogueIndex.resolve`, so a tool
or prompt that is not listed cannot be used by guessing its name. Resources are
named by `policies.resource_uris` instead (a URI cannot collide across servers).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from policies.naming import Collision, NamingRules, assign_names
from policies.permissions import Grant, matches_any

NamedKind = Literal["tools", "prompts"]


@dataclass(frozen=True)
class CatalogueEntry:
    exposed_name: str
    server: str
    tool: str
    """The upstream's own name (of the tool or the prompt)."""


@dataclass
class CatalogueIndex:
    entries: dict[str, CatalogueEntry] = field(default_factory=dict)
    collisions: list[Collision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hidden_by_server_ceiling: dict[str, list[str]] = field(default_factory=dict)
    kind: NamedKind = "tools"

    def resolve(self, exposed_name: str, grant: Grant) -> CatalogueEntry | None:
        """The entry a caller with ``grant`` may use under ``exposed_name``, else None.

        "Not allowed" and "does not exist" are deliberately the same answer.
        """
        entry = self.entries.get(exposed_name)
        if entry is None or not self.allowed(entry, grant):
            return None
        return entry

    def allowed(self, entry: CatalogueEntry, grant: Grant) -> bool:
        if self.kind == "tools":
            return grant.allows(entry.server, entry.tool)
        return grant.allows_prompt(entry.server, entry.tool)

    def visible(self, grant: Grant) -> list[CatalogueEntry]:
        return [entry for entry in self.entries.values() if self.allowed(entry, grant)]


def within_ceiling(name: str, ceiling: Iterable[str] | None) -> bool:
    """Whether a server's ``allowed_*`` list (None: everything) lets ``name`` be exposed at all."""
    return ceiling is None or matches_any(name, ceiling)


def build_catalogue(
    tools_by_server: Mapping[str, Sequence[str]],
    ceilings: Mapping[str, Iterable[str] | None],
    rules: NamingRules,
    kind: NamedKind = "tools",
) -> CatalogueIndex:
    """Build the catalogue of one kind (tools or prompts) from live lists.

    ``ceilings`` holds each server's ``allowed_tools`` or ``allowed_prompts`` (None:
    everything); names outside a ceiling never get an exposed name, so they cannot
    cause collisions either.
    """
    kept: dict[str, list[str]] = {}
    hidden: dict[str, list[str]] = {}
    for server, tools in tools_by_server.items():
        ceiling = ceilings.get(server)
        patterns = list(ceiling) if ceiling is not None else None
        allowed = [t for t in tools if patterns is None or matches_any(t, patterns)]
        kept[server] = allowed
        if len(allowed) != len(tools):
            hidden[server] = sorted(set(tools) - set(allowed))
    naming = assign_names(kept, rules, "tool" if kind == "tools" else "prompt")
    entries = {
        exposed: CatalogueEntry(exposed, server, tool) for (server, tool), exposed in naming.names.items()
    }
    return CatalogueIndex(entries, naming.collisions, naming.warnings, hidden, kind)
