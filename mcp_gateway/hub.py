"""All upstreams together: their supervisors and the catalogues built from their lists.

Tools and prompts get gateway-wide names (`policies.catalogue`: ``<server><sep><name>``,
collisions withheld), resources and resource templates gateway URIs
(`policies.resource_uris`: ``mcpgw://<server>/<upstream URI>``). Each key sees its grant's
share of each (`view`), memoized per grant.

The catalogues hold each server's last-known lists whether or not it is up at the moment:
a restart neither changes any key's lists (no list_changed, no refetch by clients that
cache them) nor turns a permitted call into "Unknown tool"; `server.toolcall` answers such a
call with a retryable "server X is unavailable". The lists of a server that has never
answered since the gateway started are unknown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from mcp.shared.inbound import find_invalid_x_mcp_header, x_mcp_header_map

from mcp_gateway.subscriptions import MAX_SUBSCRIPTIONS, ClientSurface, SubscriptionRegistry
from mcp_gateway.upstream.base import JsonObject, UpstreamConnection
from mcp_gateway.upstream.listing import LIST_KINDS, ListKind
from mcp_gateway.upstream.supervisor import UpstreamSupervisor, make_connection
from mcp_gateway.views import ListView, ViewCache, build_view
from policies import GatewayPolicy, Grant, ServerConfig
from policies.catalogue import CatalogueIndex, build_catalogue, within_ceiling
from policies.changes import server_needs_restart
from policies.resource_uris import expose_uri, split_uri

logger = logging.getLogger("mcp_gateway.hub")

RETIRE_GRACE_SECONDS = 1.0
"""A replaced or removed server keeps its connection at least this long after a reload: a call that
found its tool just before the swap still reaches it."""


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


@dataclass(slots=True)
class Binding:
    """A prompt, resource or resource template as exposed, and where it comes from."""

    exposed_name: str
    """The prompt name, resource URI or URI template clients see."""
    server: str
    name: str
    """The upstream's own prompt name, resource URI or URI template."""
    definition: JsonObject
    """The item as clients list it (name or URI rewritten, the rest as the upstream gave it)."""
    supervisor: UpstreamSupervisor
    timeout: float


@dataclass
class ServerChanges:
    """What a reload did to the upstream servers."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    """Started anew with the new configuration; the old connection finished its calls, then stopped."""
    updated: list[str] = field(default_factory=list)
    """Kept their connection (only their allowed tools, timeout or description changed)."""

    def to_json(self) -> dict[str, list[str]]:
        return {name: values for name, values in vars(self).items() if values}


class UpstreamHub:
    def __init__(
        self,
        policy: GatewayPolicy,
        connection_factory: Callable[[Any], UpstreamConnection] = make_connection,
    ) -> None:
        self.policy = policy
        self._factory = connection_factory
        self.subscriptions = SubscriptionRegistry()
        self.supervisors: dict[str, UpstreamSupervisor] = {
            server.name: self._supervisor(server) for server in policy.mcp.servers if server.enabled
        }
        self._incoming: dict[str, UpstreamSupervisor] = {}
        """Started for a reload that has not been applied yet (new servers and replacements)."""
        self._retiring: set[UpstreamSupervisor] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self.index = CatalogueIndex()
        self.bindings: dict[str, ToolBinding] = {}
        """Every exposed tool, whoever asks: callers check their grant (`Grant.allows`) themselves."""
        self.prompt_index = CatalogueIndex(kind="prompts")
        self.prompts: dict[str, Binding] = {}
        self.resources: dict[str, Binding] = {}
        self.templates: dict[str, Binding] = {}
        self.capabilities: JsonObject = {"tools": {"listChanged": True}}
        """What the gateway offers clients: tools always, the rest when some upstream offers it."""
        self.version = 0
        self._versions: dict[ListKind, int] = dict.fromkeys(LIST_KINDS, 0)
        self._signatures: dict[ListKind, bytes] = dict.fromkeys(LIST_KINDS, b"")
        self._reported: set[str] = set()
        self._views = ViewCache()
        self._change = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    @property
    def change_event(self) -> asyncio.Event:
        """Set (and replaced) at the next catalogue change; streams wait on it."""
        return self._change

    # -- lifecycle -----------------------------------------------------------------------

    def _supervisor(self, config: ServerConfig) -> UpstreamSupervisor:
        supervisor = UpstreamSupervisor(config, self._changed, connection_factory=self._factory)
        supervisor.on_resource_updated = self._updater(config.name)
        supervisor.wanted_subscriptions = self._wanted(config.name)
        return supervisor

    def start(self) -> None:
        self._started = True
        for supervisor in self.supervisors.values():
            supervisor.start()

    async def stop(self) -> None:
        everyone = [*self.supervisors.values(), *self._incoming.values(), *self._retiring]
        self._incoming.clear()
        await asyncio.gather(*(s.stop() for s in everyone))
        tasks = [*self._tasks, *self._background]
        for task in tasks:  # what is left of them waits for supervisors that are now stopped
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_ready(self, timeout: float) -> bool:
        results = await asyncio.gather(*(s.wait_ready(timeout) for s in self.supervisors.values()))
        return all(results)

    # -- reloads -------------------------------------------------------------------------

    def prepare(self, policy: GatewayPolicy) -> list[str]:
        """Start a supervisor for every server of ``policy`` that is new or must restart, without
        listing its tools yet (`adopt` does, with the policy). Returns their names."""
        self.discard_prepared()
        for config in _enabled(policy.mcp.servers):
            current = self.supervisors.get(config.name)
            if current is None or (current.config != config and server_needs_restart(current.config, config)):
                incoming = self._supervisor(config)
                if current is not None:
                    incoming.lists = dict(current.lists)  # as after a restart: listed until it answers
                self._incoming[config.name] = incoming
                if self._started:
                    incoming.start()
        return list(self._incoming)

    async def wait_prepared(self, timeout: float) -> bool:
        """Wait until every prepared server listed its tools (or ``timeout``)."""
        if not self._incoming or timeout <= 0:
            return not self._incoming
        results = await asyncio.gather(*(s.wait_ready(timeout) for s in self._incoming.values()))
        return all(results)

    def prepared_not_ready(self) -> list[str]:
        return [name for name, supervisor in self._incoming.items() if supervisor.state != "ready"]

    def discard_prepared(self) -> None:
        """A reload that will not be applied: stop what `prepare` started."""
        for supervisor in self._incoming.values():
            self._retire(supervisor, 0.0, 0.0)
        self._incoming.clear()

    def adopt(self, policy: GatewayPolicy) -> ServerChanges:
        """Make ``policy``'s servers the live ones, at once (no await): prepared supervisors replace
        or join the others, removed servers leave the catalogue, unchanged ones keep their connection
        and tools. Replaced and removed servers finish their calls in flight, then stop."""
        changes = ServerChanges()
        wanted = {config.name: config for config in _enabled(policy.mcp.servers)}
        supervisors: dict[str, UpstreamSupervisor] = {}
        for name, config in wanted.items():
            current = self.supervisors.get(name)
            incoming = self._incoming.pop(name, None)
            if incoming is None and (
                current is None or (current.config != config and server_needs_restart(current.config, config))
            ):
                incoming = self._supervisor(config)  # not prepared: start it now
                if current is not None:
                    incoming.lists = dict(current.lists)
                if self._started:
                    incoming.start()
            if incoming is not None:
                supervisors[name] = incoming
                (changes.added if current is None else changes.restarted).append(name)
                if current is not None:
                    self._retire(current, RETIRE_GRACE_SECONDS, policy.call_timeout(current.config))
            elif current is not None:  # the same connection: only live fields may differ
                if current.config != config:
                    current.config = config
                    changes.updated.append(name)
                supervisors[name] = current
        for name, current in self.supervisors.items():
            if name not in wanted:
                changes.removed.append(name)
                self._retire(current, RETIRE_GRACE_SECONDS, policy.call_timeout(current.config))
        self.discard_prepared()
        before, self.policy = self.policy, policy
        self.supervisors = supervisors
        if (
            changes.to_json()
            or before.naming_rules() != policy.naming_rules()
            or before.mcp.call_timeout_seconds != policy.mcp.call_timeout_seconds
        ):
            self.rebuild()
        return changes

    def _retire(self, supervisor: UpstreamSupervisor, grace: float, limit: float) -> None:
        """Stop ``supervisor`` in the background once its calls in flight are answered."""
        self._retiring.add(supervisor)

        async def retire() -> None:
            try:
                await supervisor.retire(grace, max(limit, grace))
            finally:
                self._retiring.discard(supervisor)

        task = asyncio.create_task(retire(), name=f"retire-{supervisor.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- catalogue -----------------------------------------------------------------------

    def _changed(self) -> None:
        self.rebuild()

    def rebuild(self) -> None:
        known = {name: s for name, s in self.supervisors.items() if s.answered}
        rules = self.policy.naming_rules()
        index = build_catalogue(
            {name: [t["name"] for t in s.tools] for name, s in known.items()},
            {name: s.config.allowed_tools for name, s in known.items()},
            rules,
        )
        prompt_index = build_catalogue(
            {name: [p["name"] for p in s.lists["prompts"].items] for name, s in known.items()},
            {name: s.config.allowed_prompts for name, s in known.items()},
            rules,
            "prompts",
        )
        self._report(index)
        self._report(prompt_index)
        built: dict[ListKind, dict[str, Any]] = {
            "tools": self._tool_bindings(index, known),
            "prompts": self._prompt_bindings(prompt_index, known),
            "resources": self._resource_bindings(known, "resources", "uri"),
            "resource_templates": self._resource_bindings(known, "resource_templates", "uriTemplate"),
        }
        self.index, self.prompt_index = index, prompt_index
        self.bindings = built["tools"]
        self.prompts, self.resources = built["prompts"], built["resources"]
        self.templates = built["resource_templates"]
        self.capabilities = self._offered(known)
        changed = False
        for kind, bindings in built.items():
            signature = orjson.dumps(sorted((name, b.server, b.definition) for name, b in bindings.items()))
            if signature != self._signatures[kind]:
                self._signatures[kind] = signature
                self._versions[kind] += 1
                changed = True
        if changed:
            self.version += 1
            self._change.set()
            self._change = asyncio.Event()

    def _tool_bindings(self, index: CatalogueIndex, known: dict[str, UpstreamSupervisor]) -> dict[str, Any]:
        definitions = {(name, t["name"]): t for name, s in known.items() for t in s.tools}
        bindings: dict[str, Any] = {}
        for exposed, entry in index.entries.items():
            original = definitions[(entry.server, entry.tool)]
            definition = dict(original)
            definition["name"] = exposed
            schema = original.get("inputSchema")
            headers = None
            if isinstance(schema, dict) and find_invalid_x_mcp_header(schema) is None:
                headers = x_mcp_header_map(schema) or None
            supervisor = known[entry.server]
            timeout = self.policy.call_timeout(supervisor.config)
            bindings[exposed] = ToolBinding(
                exposed, entry.server, entry.tool, definition, supervisor, timeout, headers
            )
        return bindings

    def _prompt_bindings(self, index: CatalogueIndex, known: dict[str, UpstreamSupervisor]) -> dict[str, Any]:
        definitions = {(name, p["name"]): p for name, s in known.items() for p in s.lists["prompts"].items}
        bindings: dict[str, Any] = {}
        for exposed, entry in index.entries.items():
            definition = dict(definitions[(entry.server, entry.tool)])
            definition["name"] = exposed
            supervisor = known[entry.server]
            timeout = self.policy.call_timeout(supervisor.config)
            bindings[exposed] = Binding(exposed, entry.server, entry.tool, definition, supervisor, timeout)
        return bindings

    def _resource_bindings(
        self, known: dict[str, UpstreamSupervisor], kind: ListKind, field: str
    ) -> dict[str, Any]:
        bindings: dict[str, Any] = {}
        for name, supervisor in known.items():
            ceiling = supervisor.config.allowed_resources
            timeout = self.policy.call_timeout(supervisor.config)
            for item in supervisor.lists[kind].items:
                original = item[field]
                exposed = expose_uri(name, original)
                if exposed in bindings or not within_ceiling(original, ceiling):
                    continue  # a server listing one URI twice: the first wins
                definition = dict(item)
                definition[field] = exposed
                bindings[exposed] = Binding(exposed, name, original, definition, supervisor, timeout)
        return bindings

    @staticmethod
    def _offered(known: dict[str, UpstreamSupervisor]) -> JsonObject:
        def offers(capability: str) -> list[JsonObject]:
            return [c for s in known.values() if isinstance(c := s.offered.get(capability), dict)]

        capabilities: JsonObject = {"tools": {"listChanged": True}}
        if resources := offers("resources"):
            subscribe = any(r.get("subscribe") is True for r in resources)
            capabilities["resources"] = {"subscribe": subscribe, "listChanged": True}
        if offers("prompts"):
            capabilities["prompts"] = {"listChanged": True}
        if offers("completions"):
            capabilities["completions"] = {}
        return capabilities

    def _report(self, index: CatalogueIndex) -> None:
        """Log each collision and naming warning once, loudly: they hide tools from everyone."""
        for collision in index.collisions:
            text = collision.describe()
            if text not in self._reported:
                self._reported.add(text)
                logger.error("name collision: %s; none of these is exposed", text)
        for warning in index.warnings:
            if warning not in self._reported:
                self._reported.add(warning)
                logger.warning("%s", warning)

    # -- per caller ----------------------------------------------------------------------

    def lookup(self, exposed_name: str, grant: Grant) -> tuple[ToolBinding | None, bool]:
        """The binding behind a tool name (None if no tool has it) and whether ``grant`` may call it.

        A hidden tool's binding is returned too, so the audit row can name its server and tool;
        the caller answers a hidden tool exactly like a missing one.
        """
        binding = self.bindings.get(exposed_name)
        if binding is None:
            return None, False
        return binding, self.index.resolve(exposed_name, grant) is not None

    def lookup_prompt(self, exposed_name: str, grant: Grant) -> tuple[Binding | None, bool]:
        """Like `lookup`, for prompts."""
        binding = self.prompts.get(exposed_name)
        if binding is None:
            return None, False
        return binding, grant.allows_prompt(binding.server, binding.name)

    def lookup_resource(self, exposed_uri: str, grant: Grant) -> tuple[Binding | None, bool]:
        """The server and upstream URI behind a gateway URI (a listed resource, a URI filled in from
        a template, or any other URI of the server) and whether ``grant`` may read it.

        None when it names no server that has answered, or its server's ``allowed_resources``
        excludes it: such a URI does not exist for anyone.
        """
        listed = self.resources.get(exposed_uri)
        if listed is not None:
            return listed, grant.allows_resource(listed.server, listed.name)
        parts = split_uri(exposed_uri)
        if parts is None:
            return None, False
        server, uri = parts
        supervisor = self.supervisors.get(server)
        if supervisor is None or not supervisor.answered:
            return None, False
        if not within_ceiling(uri, supervisor.config.allowed_resources):
            return None, False
        timeout = self.policy.call_timeout(supervisor.config)
        return Binding(exposed_uri, server, uri, {}, supervisor, timeout), grant.allows_resource(server, uri)

    def view(self, kind: ListKind, grant: Grant) -> ListView:
        """What ``grant`` sees of one list, memoized per grant and catalogue version."""
        version = self._versions[kind]
        view = self._views.get(grant, kind, version)
        if view is not None:
            return view
        if kind == "tools":
            entries = [
                (e.exposed_name, e.server, self.bindings[e.exposed_name].definition)
                for e in self.index.visible(grant)
            ]
        else:
            bindings = {"prompts": self.prompts, "resources": self.resources}.get(kind, self.templates)
            allowed = grant.allows_prompt if kind == "prompts" else grant.allows_resource
            entries = [
                (b.exposed_name, b.server, b.definition)
                for b in bindings.values()
                if allowed(b.server, b.name)
            ]
        supervisors = self.supervisors
        view = build_view(
            entries, lambda server: supervisors[server].lists[kind].expires_at(), time.monotonic()
        )
        return self._views.put(grant, kind, version, view)

    def visible_tools(self, grant: Grant) -> tuple[list[JsonObject], bytes]:
        """Tool definitions a grant may see, in name order, plus a signature to notice changes."""
        view = self.view("tools", grant)
        return view.items, view.signature

    # -- resource subscriptions ----------------------------------------------------------

    def new_surface(self) -> ClientSurface:
        return ClientSurface(self.release)

    async def subscribe(self, surface: ClientSurface, exposed_uris: list[str], grant: Grant) -> bool:
        """Subscribe ``surface`` to gateway URIs. Every URI is accepted (one the key may not see, or
        that does not exist, simply never gets an update); only a permitted URI of a server that
        offers subscriptions is subscribed upstream, once per server whatever the number of URIs.
        False, and nothing more subscribed, once ``surface`` holds `MAX_SUBSCRIPTIONS`."""
        servers: dict[str, UpstreamSupervisor] = {}
        for uri in exposed_uris:
            if uri in surface.requested:
                continue
            if len(surface.requested) >= MAX_SUBSCRIPTIONS:
                await self._sync(servers.values())
                return False
            surface.requested.add(uri)
            binding, permitted = self.lookup_resource(uri, grant)
            if binding is None or not permitted or not binding.supervisor.offers_subscriptions():
                continue
            if self.subscriptions.add(surface, binding.server, binding.name):
                servers[binding.server] = binding.supervisor
        await self._sync(servers.values())
        return True

    @staticmethod
    async def _sync(supervisors: Iterable[UpstreamSupervisor]) -> None:
        await asyncio.gather(*(supervisor.sync_subscriptions() for supervisor in supervisors))

    async def unsubscribe(self, surface: ClientSurface, exposed_uri: str) -> None:
        surface.requested.discard(exposed_uri)
        parts = split_uri(exposed_uri)
        if parts is not None and self.subscriptions.remove(surface, *parts):
            supervisor = self.supervisors.get(parts[0])
            if supervisor is not None:
                await supervisor.sync_subscriptions()

    def release(self, surface: ClientSurface) -> None:
        """Drop every subscription of a closed session or ended listen stream (upstream, in the
        background)."""
        surface.requested.clear()
        servers = self.subscriptions.remove_all(surface)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the process is ending, and the upstreams with it
            return
        for server in servers:
            supervisor = self.supervisors.get(server)
            if supervisor is not None:
                task = loop.create_task(supervisor.sync_subscriptions())
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _updater(self, server: str) -> Callable[[str], None]:
        def updated(uri: str) -> None:
            self.subscriptions.deliver(server, uri)

        return updated

    def _wanted(self, server: str) -> Callable[[], frozenset[str]]:
        return lambda: self.subscriptions.wanted(server)

    # -- for admins ----------------------------------------------------------------------

    def explain_empty(self, grant: Grant) -> str:
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
        return [c.describe() for c in [*self.index.collisions, *self.prompt_index.collisions]]


def _enabled(servers: Iterable[ServerConfig]) -> list[ServerConfig]:
    return [server for server in servers if server.enabled]
