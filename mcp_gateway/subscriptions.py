"""Resource subscriptions: which client streams want updates of which upstream resource.

A client subscribes with a gateway URI (2025: ``resources/subscribe`` on its session; 2026:
``resourceSubscriptions`` of a ``subscriptions/listen``). The gateway subscribes upstream once
per (server, upstream URI), however many clients want it, and drops the upstream subscription
when the last one goes. An upstream's ``notifications/resources/updated`` lands in the
`ClientSurface` of every subscriber (deduplicated: an update is a level trigger, "read it
again"); each client's stream sends it on, after checking that its key may still see the
resource.

Everything here is bounded: a client holds at most `MAX_SUBSCRIPTIONS` subscriptions and at
most `MAX_PENDING` waiting updates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from mcp_gateway.upstream.listing import ListKind
from policies.resource_uris import expose_uri

MAX_SUBSCRIPTIONS = 256
"""Resource subscriptions per 2025 session or 2026 listen stream."""
MAX_PENDING = 1000
"""Updates waiting for one client's stream; beyond, the oldest is dropped."""

Target = tuple[str, str]
"""(server, upstream URI)."""


class ClientSurface:
    """What the gateway keeps for one client (a 2025 session or a 2026 listen stream) besides its
    tools: the resources it subscribed to, the updates waiting for its stream, and the list
    signatures it last saw. Every container is made on first use (most sessions never subscribe);
    `close` drops its subscriptions."""

    __slots__ = ("_event", "_pending", "_release", "_requested", "_targets", "listed")

    def __init__(self, release: Callable[[ClientSurface], None]) -> None:
        self.listed: dict[ListKind, bytes] = {}
        """Per list kind, the signature of the list the client last fetched (2025 sessions)."""
        self._requested: set[str] | None = None
        self._targets: set[Target] | None = None
        self._pending: dict[str, None] | None = None
        self._event: asyncio.Event | None = None
        self._release: Callable[[ClientSurface], None] | None = release

    @property
    def requested(self) -> set[str]:
        """Gateway URIs the client subscribed to, whether or not they resolve (bounded)."""
        if self._requested is None:
            self._requested = set()
        return self._requested

    @property
    def targets(self) -> set[Target]:
        """The subscriptions that reached the registry (resolved and permitted)."""
        if self._targets is None:
            self._targets = set()
        return self._targets

    @property
    def pending(self) -> bool:
        """Whether updates are waiting for the stream."""
        return bool(self._pending)

    @property
    def updated(self) -> asyncio.Event:
        """Set while updates are pending; created on first use (by a stream waiting on it)."""
        if self._event is None:
            self._event = asyncio.Event()
            if self._pending:
                self._event.set()
        return self._event

    def put(self, exposed_uri: str) -> None:
        """Queue an update (gateway URI) for the stream, oldest first, each URI once."""
        pending = self._pending
        if pending is None:
            pending = self._pending = {}
        if exposed_uri not in pending:
            if len(pending) >= MAX_PENDING:
                del pending[next(iter(pending))]
            pending[exposed_uri] = None
        if self._event is not None:
            self._event.set()

    def take(self) -> list[str]:
        updates = list(self._pending or ())
        self._pending = None
        if self._event is not None:
            self._event.clear()
        return updates

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release(self)


class SubscriptionRegistry:
    """Subscribers per (server, upstream URI)."""

    def __init__(self) -> None:
        self._by_server: dict[str, dict[str, set[ClientSurface]]] = {}

    def add(self, surface: ClientSurface, server: str, uri: str) -> bool:
        """Subscribe; True when (server, uri) got its first subscriber (subscribe upstream)."""
        per_uri = self._by_server.setdefault(server, {})
        subscribers = per_uri.get(uri)
        first = subscribers is None
        if subscribers is None:
            subscribers = per_uri[uri] = set()
        subscribers.add(surface)
        surface.targets.add((server, uri))
        return first

    def remove(self, surface: ClientSurface, server: str, uri: str) -> bool:
        """Unsubscribe; True when (server, uri) lost its last subscriber (unsubscribe upstream)."""
        surface.targets.discard((server, uri))
        per_uri = self._by_server.get(server)
        subscribers = per_uri.get(uri) if per_uri is not None else None
        if per_uri is None or subscribers is None or surface not in subscribers:
            return False
        subscribers.discard(surface)
        if subscribers:
            return False
        del per_uri[uri]
        if not per_uri:
            del self._by_server[server]
        return True

    def remove_all(self, surface: ClientSurface) -> set[str]:
        """Drop every subscription of ``surface``; the servers that lost a subscribed URI."""
        servers = set()
        for server, uri in list(surface.targets):
            if self.remove(surface, server, uri):
                servers.add(server)
        return servers

    def wanted(self, server: str) -> frozenset[str]:
        """The upstream URIs of ``server`` some client is subscribed to."""
        return frozenset(self._by_server.get(server, ()))

    def deliver(self, server: str, uri: str) -> int:
        """An upstream's update: queue it for every subscriber; how many there were."""
        subscribers = self._by_server.get(server, {}).get(uri)
        if not subscribers:
            return 0
        exposed = expose_uri(server, uri)
        for surface in subscribers:
            surface.put(exposed)
        return len(subscribers)
