"""How upstream resource URIs become URIs the gateway owns, and back.

Every resource (and resource template) of server ``S`` with the upstream URI ``U`` is shown to
clients as ``mcpgw://S/U``: the gateway's scheme, the server as the authority, and the
upstream's URI, verbatim, as the path. So

* it is a valid URI for any server name (letters, digits, ``_`` and ``-``) and any upstream URI,
  and names its server plainly in Claude Code's @-mentions (``mcpgw://filesystem/file:///notes.md``);
* it is unambiguous across servers (two servers may both have ``file:///notes.md``) and stable
  (the same resource keeps its URI whatever key lists it and across restarts);
* it is reversible without any table: the server is the text up to the first ``/`` after
  ``mcpgw://``, the upstream URI everything after it, so a URI filled in from a template maps
  back as well as a listed one (``mcpgw://fs/file:///{path}`` filled in is ``mcpgw://fs/file:///a.txt``,
  which is ``file:///a.txt`` of ``fs``).

The scheme is matched case-insensitively (URI schemes are); the server name is not.
"""

from __future__ import annotations

SCHEME = "mcpgw"
PREFIX = f"{SCHEME}://"
_PREFIX_LENGTH = len(PREFIX)


def expose_uri(server: str, uri: str) -> str:
    """The gateway's URI for the upstream URI ``uri`` of ``server``."""
    return f"{PREFIX}{server}/{uri}"


def split_uri(exposed: str) -> tuple[str, str] | None:
    """(server, upstream URI) of a gateway URI, or None if it is not one."""
    head = exposed[:_PREFIX_LENGTH]
    if head != PREFIX and head.lower() != PREFIX:
        return None
    server, slash, uri = exposed[_PREFIX_LENGTH:].partition("/")
    if not slash or not server or not uri:
        return None
    return server, uri
