"""Upstream MCP servers as written in a policy file: stdio children or streamable-HTTP endpoints."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

SERVER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingEnvironmentVariable(LookupError):
    """A ``${VAR}`` reference whose variable is not set and has no default."""

    def __init__(self, name: str) -> None:
        super().__init__(f"environment variable {name} is not set")
        self.name = name


def interpolate(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` with values from the environment."""
    env = os.environ if environ is None else environ

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise MissingEnvironmentVariable(name)

    return _ENV_REF.sub(substitute, value)


def referenced_env_vars(value: str) -> list[str]:
    """Variables a string needs that have no default."""
    return [m.group(1) for m in _ENV_REF.finditer(value) if m.group(2) is None]


class _ServerBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=SERVER_NAME_PATTERN)]
    description: str | None = None
    enabled: bool = True
    allowed_tools: list[str] | None = Field(
        default=None,
        description="Tool names or glob patterns this server may expose at all; absent means every tool.",
    )
    timeout_seconds: float | None = Field(
        default=None, gt=0, description="Per-call timeout; defaults to mcp.call_timeout_seconds."
    )
    startup_timeout_seconds: float = Field(default=30.0, gt=0)
    max_restart_delay_seconds: float = Field(
        default=30.0, gt=0, description="Reconnect backoff doubles from 0.5 s up to this."
    )
    health_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often an idle connection is probed for liveness."
    )


class StdioServerConfig(_ServerBase):
    """A server the gateway spawns and supervises, speaking MCP over stdin/stdout."""

    transport: Literal["stdio"] = "stdio"
    command: Annotated[str, Field(min_length=1)]
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    inherit_env: bool = Field(
        default=False,
        description=(
            "Pass the gateway's whole environment to the child. Off by default so that provider "
            "keys and other secrets of the gateway never reach a tool server."
        ),
    )
    cwd: str | None = None


class HttpServerConfig(_ServerBase):
    """A server reached over streamable HTTP."""

    transport: Literal["http"] = "http"
    url: Annotated[str, Field(min_length=1)]
    headers: dict[str, str] = Field(default_factory=dict)
    protocol: Literal["auto", "2025-11-25", "2026-07-28"] = Field(
        default="auto",
        description="Protocol era to speak upstream; auto tries server/discover, then initialize.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "${")):
            raise ValueError("url must start with http:// or https://")
        return value


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
