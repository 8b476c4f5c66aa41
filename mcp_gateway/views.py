"""One key's view of a merged list (tools, resources, resource templates or prompts), memoized.

A view is what ``*/list`` answers a key: the items its grant may see, in a stable order
(by exposed name or URI, whatever order the upstreams listed them in, so prompt caches that
hash the list stay warm), a signature to notice that the key's view changed (a list_changed
for this key and nobody else), and until when its sources said it is fresh (the smallest
``ttlMs`` of the upstreams that contributed, 0 for an upstream that gave none).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from mcp_gateway.upstream.listing import ListKind
from policies.permissions import Grant

JsonObject = dict[str, Any]
_MEMO_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class ListView:
    items: list[JsonObject]
    """Item definitions as clients see them, sorted by `keys`."""
    keys: list[str]
    """The exposed name (or URI, or URI template) of each item, ascending: cursors bisect it."""
    signature: bytes
    """Changes whenever the items do."""
    expires_at: float
    """``time.monotonic()`` until which every contributing upstream said its list is fresh."""
    encoded: orjson.Fragment
    """`items` as JSON, encoded once: a whole-list answer embeds it instead of encoding 1,000 tools
    (about 0.8 ms) on every call. Views with the same items share one copy (`ViewCache`)."""

    def ttl_ms(self, now: float) -> int:
        return max(0, int((self.expires_at - now) * 1000))


def build_view(
    entries: Iterable[tuple[str, str, JsonObject]], expiry: Callable[[str], float], now: float
) -> ListView:
    """A view of ``(key, server, definition)`` entries; ``expiry(server)`` is that server's list's."""
    ordered = sorted(entries, key=lambda entry: entry[0])
    items = [definition for _, _, definition in ordered]
    servers = {server for _, server, _ in ordered}
    expires_at = min((expiry(server) for server in servers), default=now)
    encoded = orjson.dumps(items)
    signature = hashlib.blake2b(encoded, digest_size=16).digest()
    return ListView(items, [key for key, _, _ in ordered], signature, expires_at, orjson.Fragment(encoded))


class ViewCache:
    """Views memoized per grant object, list kind and catalogue version of that kind.

    Snapshots memoize one grant per key, so this is one entry per key and kind; a grant of a
    replaced snapshot simply stops being asked for (and the memo is emptied when it fills up).
    """

    def __init__(self) -> None:
        self._views: dict[tuple[int, ListKind], tuple[Grant, int, ListView]] = {}
        self._encoded: dict[ListKind, tuple[int, dict[bytes, orjson.Fragment]]] = {}
        """Per kind, the catalogue version and its views' encodings by signature (keys with the same
        view, e.g. of one team, share one encoding)."""

    def get(self, grant: Grant, kind: ListKind, version: int) -> ListView | None:
        cached = self._views.get((id(grant), kind))
        if cached is not None and cached[0] is grant and cached[1] == version:
            return cached[2]
        return None

    def put(self, grant: Grant, kind: ListKind, version: int, view: ListView) -> ListView:
        """Remember ``view``; returns it, sharing the encoding of an equal view of the same version."""
        if len(self._views) >= _MEMO_LIMIT:
            self._views.clear()
            self._encoded.clear()
        known = self._encoded.get(kind)
        if known is None or known[0] != version:
            known = self._encoded[kind] = (version, {})
        shared = known[1].setdefault(view.signature, view.encoded)
        if shared is not view.encoded:
            view = dataclasses.replace(view, encoded=shared)
        self._views[(id(grant), kind)] = (grant, version, view)
        return view
