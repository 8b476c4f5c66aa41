"""All upstreams together: their supervisors and the catalogue built from their tool lists.

The catalogue holds each server's last-known tools whether or not it is up at the moment:
a restart neither changes any key's tools/list (no list_changed, no refetch by clients
that cache it) nor turns a permitted call into "Unknown tool"; `server.toolcall` answers
such a call with a retryable "server X is unavailable". Tools of a server that has never
answered since the gateway started are unknown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from mcp.shared.inbound import find_invalid_x_mcp_header, x_mcp_header_map

from mcp_gateway.upstream.base import JsonObject, UpstreamConnection
from mcp_gateway.upstream.supervisor import UpstreamSupervisor, make_connection
from policies import GatewayPolicy, ToolGrant
from policies.catalogue import CatalogueIndex, build_catalogue

logger = logging.getLogger("mcp_gateway.hub")


@dataclass(slots=True)
class ToolBinding:
    """Everything the tools/call hot path needs about one exposed tool, computed once per catalogue."""

    exposed_name: str
    server: str
    tool: str
    definition: JsonObject
    supervisor: UpstreamSupervisor
    timeout: float
    param_headers: dict[tuple[str, ...], str] | None
    """``x-mcp-header`` annotations of the input schema (2026 upstreams expect ``Mcp-Param-*`` headers)."""


class UpstreamHub:
    def __init__(
        self,
        policy: GatewayPolicy,
        connection_factory: Callable[[Any], UpstreamConnection] = make_connection,
    ) -> None:
        self.policy = policy
        self.supervisors: dict[str, UpstreamSupervisor] = {
            server.name: UpstreamSupervisor(server, self._changed, connection_factory=connection_factory)
            for server in policy.mcp.servers
            if server.enabled
        }
        self.index = CatalogueIndex()
        self.bindings: dict[str, ToolBinding] = {}
        """Every exposed tool, whoever asks: callers check their grant (`ToolGrant.allows`) themselves."""
        self.version = 0
        self._signature = b""
        self._reported: set[str] = set()
        self._visible_cache: dict[int, tuple[ToolGrant, int, list[JsonObject], bytes]] = {}
        self._change = asyncio.Event()

    @property
    def change_event(self) -> asyncio.Event:
        """Set (and replaced) at the next catalogue change; streams wait on it."""
        return self._change

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        for supervisor in self.supervisors.values():
            supervisor.start()

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.supervisors.values()))

    async def wait_ready(self, timeout: float) -> bool:
        results = await asyncio.gather(*(s.wait_ready(timeout) for s in self.supervisors.values()))
        return all(results)

    # -- catalogue -----------------------------------------------------------------------

    def _changed(self) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        known = {name: s for name, s in self.supervisors.items() if s.tools}
        tools_by_server = {name: [t["name"] for t in s.tools] for name, s in known.items()}
        ceilings = {name: s.config.allowed_tools for name, s in known.items()}
        index = build_catalogue(tools_by_server, ceilings, self.policy.naming_rules())
        self._report(index)
        definitions = {(name, t["name"]): t for name, s in known.items() for t in s.tools}
        bindings: dict[str, ToolBinding] = {}
        for exposed, entry in index.entries.items():
            original = definitions[(entry.server, entry.tool)]
            definition = dict(original)
            definition["name"] = exposed
            schema = original.get("inputSchema")
            headers = None
            if isinstance(schema, dict) and find_invalid_x_mcp_header(schema) is None:
                headers = x_mcp_header_map(schema) or None
            supervisor = known[entry.server]
            bindings[exposed] = ToolBinding(
                exposed,
                entry.server,
                entry.tool,
                definition,
                supervisor,
                self.policy.call_timeout(supervisor.config),
                headers,
            )
        signature = orjson.dumps(sorted((name, b.server, b.definition) for name, b in bindings.items()))
        self.index = index
        self.bindings = bindings
        if signature != self._signature:
            self._signature = signature
            self.version += 1
            self._visible_cache.clear()
            self._change.set()
            self._change = asyncio.Event()

    def _report(self, index: CatalogueIndex) -> None:
        """Log each collision and naming warning once, loudly: they hide tools from everyone."""
        for collision in index.collisions:
            text = collision.describe()
            if text not in self._reported:
                self._reported.add(text)
                logger.error("tool name collision: %s; none of these tools is exposed", text)
        for warning in index.warnings:
            if warning not in self._reported:
                self._reported.add(warning)
                logger.warning("%s", warning)

    # -- per caller ----------------------------------------------------------------------

    def lookup(self, exposed_name: str, grant: ToolGrant) -> tuple[ToolBinding | None, bool]:
        """The binding behind a name (None if no tool has it) and whether ``grant`` may call it.

        A hidden tool's binding is returned too, so the audit row can name its server and tool;
        the caller answers a hidden tool exactly like a missing one.
        """
        binding = self.bindings.get(exposed_name)
        if binding is None:
            return None, False
        return binding, self.index.resolve(exposed_name, grant) is not None

    def visible_tools(self, grant: ToolGrant) -> tuple[list[JsonObject], bytes]:
        """Tool definitions a grant may see, in name order, plus a signature to notice changes.

        Memoized per grant object (snapshots memoize grants per key) and catalogue version; a
        grant of a replaced snapshot simply stops being asked for.
        """
        cached = self._visible_cache.get(id(grant))
        if cached is not None and cached[0] is grant and cached[1] == self.version:
            return cached[2], cached[3]
        bindings = self.bindings
        tools = [bindings[entry.exposed_name].definition for entry in self.index.visible(grant)]
        tools.sort(key=lambda t: str(t["name"]))
        signature = orjson.dumps([t["name"] for t in tools])
        if len(self._visible_cache) >= 10_000:
            self._visible_cache.clear()
        self._visible_cache[id(grant)] = (grant, self.version, tools, signature)
        return tools, signature

    def explain_empty(self, grant: ToolGrant) -> str:
        """Why a grant sees no tools, for the admin's log (never sent to the caller)."""
        if grant.is_empty:
            return "no permission entry for the key or its team (deny by default)"
        servers = [name for name in self.supervisors if grant.allows_server(name)]
        if not servers:
            return f"its grant ({grant.source}) names no configured server"
        down = [name for name in servers if self.supervisors[name].state != "ready"]
        if down:
            return f"its grant ({grant.source}) allows {', '.join(servers)}; not ready: {', '.join(down)}"
        return f"its grant ({grant.source}) matches none of the tools of {', '.join(servers)}"

    def status(self) -> list[dict[str, Any]]:
        statuses = [s.status() for s in self.supervisors.values()]
        for server in self.policy.mcp.servers:
            if not server.enabled:
                statuses.append({"name": server.name, "transport": server.transport, "state": "disabled"})
        return statuses

    def catalogue_problems(self) -> list[str]:
        return [c.describe() for c in self.index.collisions]
