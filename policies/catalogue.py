"""The gateway-wide tool catalogue and each key's view of it, as pure data.

The adapter feeds in the tool names each upstream reported; this module decides
which of them exist (server ceilings, naming, collisions) and which a grant may
see or call. Listing and calling go through the same `CatalogueIndex.resolve`,
so a tool that is not listed cannot be called by guessing its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from policies.naming import Collision, NamingRules, assign_names
from policies.permissions import ToolGrant, matches_any


@dataclass(frozen=True)
class CatalogueEntry:
    exposed_name: str
    server: str
    tool: str


@dataclass
class CatalogueIndex:
    entries: dict[str, CatalogueEntry] = field(default_factory=dict)
    collisions: list[Collision] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hidden_by_server_ceiling: dict[str, list[str]] = field(default_factory=dict)

    def resolve(self, exposed_name: str, grant: ToolGrant) -> CatalogueEntry | None:
        """The entry a caller with ``grant`` may call under ``exposed_name``, else None.

        "Not allowed" and "does not exist" are deliberately the same answer.
        """
        entry = self.entries.get(exposed_name)
        if entry is None or not grant.allows(entry.server, entry.tool):
            return None
        return entry

    def visible(self, grant: ToolGrant) -> list[CatalogueEntry]:
        return [entry for entry in self.entries.values() if grant.allows(entry.server, entry.tool)]


def build_catalogue(
    tools_by_server: Mapping[str, Sequence[str]],
    ceilings: Mapping[str, Iterable[str] | None],
    rules: NamingRules,
) -> CatalogueIndex:
    """Build the catalogue from live tool lists.

    ``ceilings`` holds each server's ``allowed_tools`` (None: everything); tools
    outside a ceiling never get a name, so they cannot cause collisions either.
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
    naming = assign_names(kept, rules)
    entries = {
        exposed: CatalogueEntry(exposed, server, tool) for (server, tool), exposed in naming.names.items()
    }
    return CatalogueIndex(entries, naming.collisions, naming.warnings, hidden)
