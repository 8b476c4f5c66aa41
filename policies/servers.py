"""Upstream MCP servers as written in a policy file: stdio children or streamable-HTTP endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from policies.urls import check_http_url

SERVER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
TRANSPORT_DESCRIPTION = "stdio or http: implied by `command` (stdio) or `url` (http), so rarely written."


class _ServerBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=SERVER_NAME_PATTERN,
        description=(
            "Unique server name (letters, digits, _ and -; up to 48): the prefix of its tools' and "
            "prompts' names, the authority of its resources' URIs (mcpgw://<name>/...) and what "
            "permissions refer to."
        ),
    )
    description: str | None = Field(default=None, description="Free text for people reading the file.")
    enabled: bool = Field(
        default=True, description="false keeps the entry in the file but never starts or lists the server."
    )
    allowed_tools: list[str] | None = Field(
        default=None,
        description="Tool names or glob patterns this server may expose at all; absent means every tool.",
    )
    allowed_resources: list[str] | None = Field(
        default=None,
        description=(
            "Resource URI globs (the server's own URIs, and its templates' uriTemplate texts) this server "
            "may expose at all; absent means every resource."
        ),
    )
    allowed_prompts: list[str] | None = Field(
        default=None,
        description="Prompt names or glob patterns this server may expose at all; absent means every prompt.",
    )
    timeout_seconds: float | None = Field(
        default=None, gt=0, description="Per-call timeout; defaults to mcp.call_timeout_seconds."
    )
    startup_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long starting and listing the tools may take before a retry."
    )
    max_restart_delay_seconds: float = Field(
        default=30.0, gt=0, description="Reconnect backoff doubles from 0.5 s up to this."
    )
    health_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often an idle connection is probed for liveness."
    )


class StdioServerConfig(_ServerBase):
    """A server the gateway spawns and supervises, speaking MCP over stdin/stdout."""

    transport: Literal["stdio"] = Field(default="stdio", description=TRANSPORT_DESCRIPTION)
    command: str = Field(
        min_length=1,
        description="Program to run (looked up on PATH; `python` is the gateway's own interpreter).",
    )
    args: list[str] = Field(default_factory=list, description="Its command-line arguments.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables set for the child, on top of a minimal environment (PATH, HOME, locale...).",
    )
    inherit_env: bool = Field(
        default=False,
        description=(
            "Pass the gateway's whole environment to the child. Off by default so that provider "
            "keys and other secrets of the gateway never reach a tool server."
        ),
    )
    cwd: str | None = Field(
        default=None, description="Working directory of the child; default: the gateway's own."
    )


class HttpServerConfig(_ServerBase):
    """A server reached over streamable HTTP."""

    transport: Literal["http"] = Field(default="http", description=TRANSPORT_DESCRIPTION)
    url: str = Field(
        min_length=1,
        description="The server's streamable-HTTP endpoint (http:// or https://), e.g. https://host/mcp.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every request to it (e.g. its own token)."
    )
    protocol: Literal["auto", "2025-11-25", "2026-07-28"] = Field(
        default="auto",
        description="Protocol era to speak upstream; auto tries server/discover, then initialize.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "url")


def _server_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "transport", None)
    if not isinstance(value, dict):
        return None
    explicit = value.get("transport")
    if explicit in ("stdio", "http"):
        return str(explicit)
    if "command" in value and "url" not in value:
        return "stdio"
    if "url" in value and "command" not in value:
        return "http"
    return None


UpstreamServerConfig = Annotated[
    Annotated[StdioServerConfig, Tag("stdio")] | Annotated[HttpServerConfig, Tag("http")],
    Discriminator(
        _server_kind,
        custom_error_type="server_transport",
        custom_error_message=(
            "a server needs exactly one of `command` (a stdio server the gateway spawns) "
            "or `url` (a streamable-HTTP server)"
        ),
    ),
]
