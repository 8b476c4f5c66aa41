"""Upstream resource URIs inside results, given their gateway URIs (`policies.resource_uris`).

A resource link or embedded resource in a tool result or prompt message, or the contents of a
read, names the upstream's own URI; the client could not read it back through the gateway.
These helpers copy only what they change and leave everything else as it came.
"""

from __future__ import annotations

from typing import Any

from policies.resource_uris import expose_uri

JsonObject = dict[str, Any]
_LINK_TYPES = frozenset({"resource_link", "resource"})


def expose_item_uri(item: Any, server: str) -> Any:
    """A resource contents item or resource link with its gateway URI."""
    if isinstance(item, dict) and isinstance(uri := item.get("uri"), str):
        item = dict(item)
        item["uri"] = expose_uri(server, uri)
    return item


def expose_content_uris(content: Any, server: str) -> Any:
    """A content block (of a prompt message or tool result) with the URIs it carries made the gateway's."""
    if not isinstance(content, dict):
        return content
    kind = content.get("type")
    if kind == "resource_link":
        return expose_item_uri(content, server)
    if kind == "resource" and isinstance(content.get("resource"), dict):
        content = dict(content)
        content["resource"] = expose_item_uri(content["resource"], server)
    return content


def has_links(content: list[Any]) -> bool:
    """Whether a tool result's content holds a resource link or embedded resource (cheap: the
    tools/call hot path asks it of every result)."""
    for item in content:  # noqa: SIM110  (a loop costs 0.2 µs here, any() over a generator 0.5)
        if type(item) is dict and item.get("type") in _LINK_TYPES:
            return True
    return False


def expose_result_links(result: JsonObject, server: str) -> JsonObject:
    """A tool result whose resource links and embedded resources name gateway URIs."""
    result = dict(result)
    result["content"] = [expose_content_uris(item, server) for item in result["content"]]
    return result
