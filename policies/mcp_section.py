"""The `mcp` section of a policy file: the upstream servers, who may use what of them, and how
tools are named and called through /mcp."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from policies.naming import NamingRules, PrefixMode
from policies.permissions import PermissionSpec
from policies.servers import UpstreamServerConfig


class ToolNaming(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    separator: str = Field(
        default="__",
        min_length=1,
        max_length=8,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Between the server name and the tool name in exposed names.",
    )
    prefix: PrefixMode = Field(
        default=PrefixMode.ALWAYS,
        description=(
            "always: every tool is <server><separator><tool>; never: bare tool names; "
            "on_conflict: bare unless two servers share a name."
        ),
    )
    client_server_name: str = Field(
        default="gateway",
        description="The name clients register the gateway under (for name-length warnings).",
    )

    def rules(self) -> NamingRules:
        return NamingRules(self.separator, self.prefix, self.client_server_name)


class McpSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    servers: list[UpstreamServerConfig] = Field(
        default_factory=list,
        description=(
            "Upstream MCP servers: stdio children (`command`), streamable-HTTP servers (`url`) or, with "
            "`transport: sse`, servers on the older HTTP+SSE transport (`url` at their event stream)."
        ),
    )
    virtual_key_permissions: dict[str, PermissionSpec] = Field(
        default_factory=dict,
        description=(
            'Per key id: "*" (everything of every server), a list of servers (everything of each), or a map '
            'per server of "*" (everything of it), a list of tool globs (those tools only: no resources or '
            'prompts), or {tools, resources, prompts} each "*" or a list of globs (resource globs match the '
            "server's own URIs; a kind left out grants none of it); replaces the team's entry."
        ),
    )
    team_permissions: dict[str, PermissionSpec] = Field(
        default_factory=dict,
        description="Per team, in the same shapes: what its keys see unless they have their own entry.",
    )
    tool_naming: ToolNaming = Field(
        default_factory=ToolNaming, description="How tools are named for clients (decided once for everyone)."
    )
    call_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Per tools/call (and resources/read, prompts/get, completion/complete) timeout for servers that "
            "set none."
        ),
    )
    list_page_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description=(
            "Most items in one page of tools/list, resources/list, resources/templates/list or prompts/list; "
            "longer lists carry a nextCursor."
        ),
    )
    instructions: str | None = Field(default=None, description="Sent to clients as the server instructions.")
    anonymous_key: str | None = Field(
        default=None,
        description=(
            "Off by default. The id of a key in virtual_keys: requests to /mcp that carry no credentials at "
            "all are served as that key (for local tools that cannot send a header, such as the conformance "
            "runner). A request with wrong credentials is still refused; the model API and the admin API "
            "never accept anonymous requests. Anyone who can reach /mcp gets that key's tools."
        ),
    )
    client_request_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description=(
            "How long an upstream's request to the client (elicitation, sampling, roots) may wait for the "
            "client's answer; for a 2026-07-28 client, how long the upstream call is kept waiting for the "
            "retry that carries the answers. Past it the upstream gets an error (and the call is "
            "cancelled). The call's own timeout still bounds the whole call."
        ),
    )
    startup_wait_seconds: float = Field(
        default=10.0,
        ge=0,
        description=(
            "At start, how long the gateway waits for its upstream servers to list their tools before it "
            "accepts requests (0: not at all). Until a server has answered once its tools are unknown, so a "
            "call to one would be answered 'Unknown tool'; a server still not up after this long comes in "
            "later by itself."
        ),
    )
