"""What the gateway keeps of a 2025-11-25 client's ``initialize``: a few bounded facts, never the payload.

A client may send megabytes of ``capabilities`` or ``clientInfo``; a session keeps
the client's name and version (clipped, for audit rows), the negotiated protocol
version and which of the capabilities the gateway can act on it declared, as flags.
"""

from __future__ import annotations

import enum
from typing import Any

from policies.bounds import MAX_ID_CHARS, clip


class ClientCapability(enum.IntFlag):
    """Capabilities a client declared that matter to the gateway (server-to-client requests)."""

    NONE = 0
    ROOTS = enum.auto()
    ROOTS_LIST_CHANGED = enum.auto()
    SAMPLING = enum.auto()
    SAMPLING_CONTEXT = enum.auto()
    SAMPLING_TOOLS = enum.auto()
    ELICITATION = enum.auto()
    ELICITATION_FORM = enum.auto()
    ELICITATION_URL = enum.auto()


def summarize_capabilities(declared: dict[str, Any]) -> ClientCapability:
    """Flags for the ``roots``, ``sampling`` and ``elicitation`` a client declared (objects only).

    An empty ``elicitation`` object means form mode, as the 2025-11-25 specification says.
    """
    flags = ClientCapability.NONE
    roots = declared.get("roots")
    if isinstance(roots, dict):
        flags |= ClientCapability.ROOTS
        if roots.get("listChanged") is True:
            flags |= ClientCapability.ROOTS_LIST_CHANGED
    sampling = declared.get("sampling")
    if isinstance(sampling, dict):
        flags |= ClientCapability.SAMPLING
        if isinstance(sampling.get("context"), dict):
            flags |= ClientCapability.SAMPLING_CONTEXT
        if isinstance(sampling.get("tools"), dict):
            flags |= ClientCapability.SAMPLING_TOOLS
    elicitation = declared.get("elicitation")
    if isinstance(elicitation, dict):
        flags |= ClientCapability.ELICITATION
        if not elicitation or isinstance(elicitation.get("form"), dict):
            flags |= ClientCapability.ELICITATION_FORM
        if isinstance(elicitation.get("url"), dict):
            flags |= ClientCapability.ELICITATION_URL
    return flags


def client_string(info: dict[str, Any], field: str) -> str | None:
    """``clientInfo[field]`` when it is a string, clipped to `MAX_ID_CHARS`."""
    value = info.get(field)
    return clip(value, MAX_ID_CHARS) if isinstance(value, str) else None
