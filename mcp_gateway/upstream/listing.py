"""What an upstream lists: tools, resources, resource templates and prompts, page by page.

Each list is fetched whole (following ``nextCursor``) when the server connects and again
when it says that list changed; the gateway answers its clients from these copies. A 2026
upstream's ``ttlMs`` is kept with its copy, so the gateway's merged lists never promise more
freshness than their sources did.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_gateway.upstream.base import JsonObject, UpstreamConnection, UpstreamError

logger = logging.getLogger("mcp_gateway.upstream")

ListKind = Literal["tools", "resources", "resource_templates", "prompts"]
LIST_KINDS: tuple[ListKind, ...] = ("tools", "resources", "resource_templates", "prompts")
MAX_PAGES = 100


@dataclass(frozen=True, slots=True)
class ListSpec:
    method: str
    field: str
    """The result member holding the items."""
    key: str
    """The member every item must have as a string (its identity)."""
    capability: str
    """The server capability that says it offers the list."""


SPECS: dict[ListKind, ListSpec] = {
    "tools": ListSpec("tools/list", "tools", "name", "tools"),
    "resources": ListSpec("resources/list", "resources", "uri", "resources"),
    "resource_templates": ListSpec(
        "resources/templates/list", "resourceTemplates", "uriTemplate", "resources"
    ),
    "prompts": ListSpec("prompts/list", "prompts", "name", "prompts"),
}

CHANGED_LISTS: dict[str, tuple[ListKind, ...]] = {
    "notifications/tools/list_changed": ("tools",),
    "notifications/resources/list_changed": ("resources", "resource_templates"),
    "notifications/prompts/list_changed": ("prompts",),
}
"""Which lists an upstream's list_changed notification makes the gateway fetch again."""


@dataclass(frozen=True, slots=True)
class Listing:
    """One list as the upstream last answered it."""

    items: list[JsonObject] = field(default_factory=list)
    ttl_ms: int | None = None
    """The upstream's ``ttlMs`` (smallest over the pages); None when it gave none."""
    fetched_at: float = 0.0
    """``time.monotonic()`` when it was fetched."""

    def expires_at(self) -> float:
        """Until when the upstream said the list is fresh (now, for a list with no ``ttlMs``)."""
        return self.fetched_at + (self.ttl_ms or 0) / 1000


EMPTY = Listing()


def _ttl(result: JsonObject) -> int | None:
    ttl = result.get("ttlMs")
    return ttl if type(ttl) is int and ttl >= 0 else None


async def fetch_list(
    conn: UpstreamConnection,
    kind: ListKind,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> Listing:
    """The whole list of ``kind`` (empty if the server does not offer it).

    A transport failure raises `UpstreamError`. A JSON-RPC error raises it too for tools (the
    gateway's core); for the other lists it is logged and the list is empty, so a server whose
    resources or prompts misbehave still serves its tools.
    """
    spec = SPECS[kind]
    if spec.capability not in conn.capabilities:
        return Listing(fetched_at=clock())
    items: list[JsonObject] = []
    ttl: int | None = None
    cursor: Any = None
    for _ in range(MAX_PAGES):
        params = {"cursor": cursor} if cursor else None
        reply = await conn.request(spec.method, params, timeout=timeout)
        error = reply.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            if kind == "tools":
                raise UpstreamError(f"{spec.method} failed: {message}")
            logger.warning("[%s] %s failed: %.300s; listing none", conn.server, spec.method, message)
            return Listing(fetched_at=clock())
        result = reply.get("result")
        if not isinstance(result, dict):
            raise UpstreamError(f"{spec.method}: the result is not a JSON object")
        page = result.get(spec.field)
        if isinstance(page, list):
            items.extend(i for i in page if isinstance(i, dict) and isinstance(i.get(spec.key), str))
        page_ttl = _ttl(result)
        if page_ttl is not None:
            ttl = page_ttl if ttl is None else min(ttl, page_ttl)
        cursor = result.get("nextCursor")
        if not cursor or not isinstance(cursor, str):
            break
    return Listing(items, ttl, clock())
