"""Which upstream tools, resources and prompts a virtual key may see and use.

A permission entry in the policy file takes one of these shapes:

* ``"*"`` - everything (tools, resources and prompts) of every server;
* ``[filesystem, database]`` - everything of the named servers;
* ``{filesystem: "*"}`` - everything of that server;
* ``{filesystem: [read_file, "list_*"]}`` - those tools (name globs) of that server, and none of
  its resources or prompts: an entry that narrows a server's tools narrows the server;
* ``{filesystem: {tools: [...], resources: [...], prompts: [...]}}`` - each kind separately,
  ``"*"`` or a list of globs; a kind left out grants nothing of that kind.

Tool and prompt globs match the upstream's own names; resource globs match the upstream's own
resource URIs (and, for resource templates, the ``uriTemplate`` text). A server key ``"*"``
stands for every server. Deny by default: a key with no entry (and no team entry to inherit)
sees nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

ALL: Literal["*"] = "*"

Kind = Literal["tools", "resources", "prompts"]
KINDS: tuple[Kind, ...] = ("tools", "resources", "prompts")


def _kind_shape(value: Any) -> str | None:
    if value == ALL:
        return "shape-all"
    return "shape-globs" if isinstance(value, list) else None


KindSpec = Annotated[
    Annotated[Literal["*"], Tag("shape-all")] | Annotated[list[str], Tag("shape-globs")],
    Discriminator(
        _kind_shape, custom_error_type="kind_permission", custom_error_message='"*" or a list of globs'
    ),
]


class ServerPermissions(BaseModel):
    """What a key may use of one server, per kind (the explicit shape of a permission entry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: KindSpec | None = Field(
        default=None, description='Tool name globs, or "*" for every tool; absent: no tools.'
    )
    resources: KindSpec | None = Field(
        default=None,
        description=(
            "Resource URI globs (matched against the upstream's own URIs and template texts), "
            'or "*"; absent: no resources.'
        ),
    )
    prompts: KindSpec | None = Field(
        default=None, description='Prompt name globs, or "*" for every prompt; absent: no prompts.'
    )


def _server_shape(value: Any) -> str | None:
    if value == ALL:
        return "shape-all"
    if isinstance(value, list):
        return "shape-tools"
    if isinstance(value, dict | ServerPermissions):
        return "shape-kinds"
    return None


def _entry_shape(value: Any) -> str | None:
    if value == ALL:
        return "shape-all"
    if isinstance(value, list):
        return "shape-servers"
    if isinstance(value, dict):
        return "shape-per-server"
    return None


ServerSpec = Annotated[
    Annotated[Literal["*"], Tag("shape-all")]
    | Annotated[list[str], Tag("shape-tools")]
    | Annotated[ServerPermissions, Tag("shape-kinds")],
    Discriminator(
        _server_shape,
        custom_error_type="server_permission",
        custom_error_message='a server\'s entry is "*", a list of tool globs, or {tools, resources, prompts}',
    ),
]
PermissionSpec = Annotated[
    Annotated[Literal["*"], Tag("shape-all")]
    | Annotated[list[str], Tag("shape-servers")]
    | Annotated[dict[str, ServerSpec], Tag("shape-per-server")],
    Discriminator(
        _entry_shape,
        custom_error_type="permission_entry",
        custom_error_message='a permission entry is "*", a list of servers, or a map of server to its entry',
    ),
]
"""One key's or team's entry. Validation tags (``shape-...``) never appear in a reported path."""


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Case-sensitive glob match of ``name`` against any pattern."""
    return any(pattern == ALL or fnmatchcase(name, pattern) for pattern in patterns)


def _globs(spec: KindSpec | None) -> tuple[str, ...] | None:
    if spec is None:
        return None
    if spec == ALL:
        return (ALL,)
    return tuple(spec)


def _server_entry(
    spec: object,
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None, tuple[str, ...] | None]:
    """(tools, resources, prompts) globs one server entry grants (None: nothing of that kind)."""
    if spec == ALL:
        return (ALL,), (ALL,), (ALL,)
    if isinstance(spec, list):
        return tuple(spec), None, None
    if isinstance(spec, dict):  # the explicit shape, not validated (a grant built in code or a test)
        spec = ServerPermissions.model_validate(spec)
    if isinstance(spec, ServerPermissions):
        return _globs(spec.tools), _globs(spec.resources), _globs(spec.prompts)
    raise TypeError(f"not a permission entry for a server: {spec!r}")


def _allows(per_server: Mapping[str, tuple[str, ...]], server: str, name: str) -> bool:
    patterns = per_server.get(server)
    if patterns is not None and matches_any(name, patterns):
        return True
    wildcard = per_server.get(ALL)
    return wildcard is not None and matches_any(name, wildcard)


@dataclass(frozen=True)
class Grant:
    """The decision "may this key use tool, resource or prompt X of server S", independent of any
    transport. Snapshots memoize one per key, so callers may memoize per grant object."""

    per_server: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Tools: server name (or ``*`` for any server) to tool globs."""
    source: str = "none"
    """Where the grant came from, for admins: ``key:<id>``, ``team:<name>`` or ``none``."""
    resources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Resources: server name (or ``*``) to URI globs."""
    prompts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Prompts: server name (or ``*``) to prompt name globs."""

    @classmethod
    def from_spec(cls, spec: PermissionSpec | None, source: str) -> Grant:
        if spec is None:
            return cls(source="none")
        if spec == ALL:
            everything: dict[str, tuple[str, ...]] = {ALL: (ALL,)}
            return cls(everything, source, everything, everything)
        if isinstance(spec, list):
            whole = {server: (ALL,) for server in spec}
            return cls(whole, source, whole, whole)
        tools: dict[str, tuple[str, ...]] = {}
        resources: dict[str, tuple[str, ...]] = {}
        prompts: dict[str, tuple[str, ...]] = {}
        for server, entry in spec.items():
            server_tools, server_resources, server_prompts = _server_entry(entry)
            if server_tools is not None:
                tools[server] = server_tools
            if server_resources is not None:
                resources[server] = server_resources
            if server_prompts is not None:
                prompts[server] = server_prompts
        return cls(tools, source, resources, prompts)

    @property
    def is_empty(self) -> bool:
        return not (self.per_server or self.resources or self.prompts)

    def allows_server(self, server: str) -> bool:
        """Whether the grant names ``server`` (or every server) for any kind."""
        return any(server in m or ALL in m for m in (self.per_server, self.resources, self.prompts))

    def allows(self, server: str, tool: str) -> bool:
        """May the key see and call ``tool`` of ``server`` (the tools/call hot path)."""
        patterns = self.per_server.get(server)
        if patterns is not None and matches_any(tool, patterns):
            return True
        wildcard = self.per_server.get(ALL)
        return wildcard is not None and matches_any(tool, wildcard)

    def allows_resource(self, server: str, uri: str) -> bool:
        """May the key see and read the resource (or template) ``uri`` of ``server`` (upstream URI)."""
        return _allows(self.resources, server, uri)

    def allows_prompt(self, server: str, prompt: str) -> bool:
        return _allows(self.prompts, server, prompt)

    def allows_kind(self, kind: Kind, server: str, name: str) -> bool:
        if kind == "tools":
            return self.allows(server, name)
        return _allows(self.resources if kind == "resources" else self.prompts, server, name)

    def servers(self) -> list[str]:
        return sorted({*self.per_server, *self.resources, *self.prompts})


ToolGrant = Grant
"""The former name, when a grant covered tools only."""

NO_TOOLS = Grant()
