"""How deep a parsed JSON document nests, checked at C speed on both hot paths.

Deep nesting is legal JSON, but everything that walks a document recursively
afterwards breaks on it: orjson refuses to encode more than 254 levels (so an
audit row or a re-encoded body could not be written), Python's own json and
``repr`` raise RecursionError near 1,000. Both readers (/mcp and the model API)
therefore refuse documents deeper than ``gateway.max_json_depth`` right after
parsing, before anything else looks at them.

The walk goes level by level with `gc.get_referents`, which lists the items of
any number of lists and the values of any number of dicts in one C call.
Strings and numbers have no referents, so brackets inside strings never count,
and the loop stops at the document's real depth: a tools/call body costs about
1 µs, a 230 KB Claude Code request with 8,400 values about 65 µs (parsing it
takes 430-800 µs); see ``benchmarks/json_depth.py``.
"""

from __future__ import annotations

import gc

_referents = gc.get_referents


def nesting_exceeds(document: object, limit: int) -> bool:
    """True when ``document`` (as parsed from JSON) nests objects and arrays more than ``limit`` deep.

    ``{}`` and ``[1, "[["]`` are one level deep, ``{"a": [{}]}`` three.
    """
    level: list[object] = [document]
    for _ in range(limit):
        level = _referents(*level)
        if not level:
            return False
    # ``level`` holds what sits below ``limit`` levels of containers: one more container is too many.
    return any(type(item) is dict or type(item) is list for item in level)


def is_depth_refusal(message: str) -> bool:
    """Whether an orjson decode error is its own nesting limit (1,024 levels), not a syntax error."""
    return "depth" in message
