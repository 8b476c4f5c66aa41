"""Upstream MCP servers as written in a policy file: stdio children, streamable-HTTP endpoints, or
servers on the older HTTP+SSE transport (protocol 2024-11-05: a GET event stream plus a POST endpoint)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from policies.http_client import (
    HTTP2_DESCRIPTION,
    HTTP_CLIENT_DESCRIPTION,
    TLS_DESCRIPTION,
    HttpClientKind,
    TlsFiles,
    check_client_fields,
    check_headers,
)
from policies.urls import check_http_url

SERVER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
TRANSPORT_DESCRIPTION = (
    "stdio, http or sse. stdio and http are implied by `command` (stdio) or `url` (http, streamable "
    "HTTP), so rarely written; sse (the older HTTP+SSE transport of protocol 2024-11-05: an event "
    "stream at `url` that names the endpoint to POST messages to) must be written."
)
URL_DESCRIPTION = (
    "Where the server is (http:// or https://): with http its streamable-HTTP endpoint "
    "(e.g. https://host/mcp); with transport: sse its event stream (e.g. https://host/sse)."
)
LEGACY_PROTOCOL = "2024-11-05"
TRANSPORTS = ("stdio", "http", "sse")

RedactionKind = Literal[
    "field",
    "private_key",
    "aws_access_key",
    "aws_secret_key",
    "github_token",
    "slack_token",
    "google_api_key",
    "stripe_key",
    "anthropic_key",
    "openai_key",
    "jwt",
    "bearer",
    "gateway_key",
    "url_password",
    "assignment",
]
REDACTION_KINDS: tuple[str, ...] = get_args(RedactionKind)
"""The audit log's built-in redactions (`mcp_gateway.audit.redaction` has one detector per name):
``field`` is a value under a secret-looking name (password, token, api_key, ...), ``assignment`` a
``password=...``-style pair inside text; the others are credential shapes found in any string."""
MAX_REDACT_RULES = 64
MAX_REDACT_PATTERN_CHARS = 500


def check_redact_patterns(patterns: list[str]) -> list[str]:
    """Extra value patterns must compile (Python ``re``) and stay few and short."""
    if len(patterns) > MAX_REDACT_RULES:
        raise ValueError(f"at most {MAX_REDACT_RULES} patterns")
    for pattern in patterns:
        if not pattern or len(pattern) > MAX_REDACT_PATTERN_CHARS:
            raise ValueError(f"a pattern must have 1 to {MAX_REDACT_PATTERN_CHARS} characters")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
        if compiled.match(""):
            raise ValueError(f"pattern {pattern!r} matches the empty string")
    return patterns


def check_redact_keys(names: list[str]) -> list[str]:
    if len(names) > MAX_REDACT_RULES:
        raise ValueError(f"at most {MAX_REDACT_RULES} names")
    if any(not name or len(name) > 128 for name in names):
        raise ValueError("a name must have 1 to 128 characters")
    return names


REDACT_KEYS_DESCRIPTION = (
    "More field names whose values the audit log replaces with [redacted:field], on top of the built-in "
    "secret-looking ones (password, token, api_key, authorization, cookie, ...): names or globs, matched "
    "case-insensitively against every object key at any depth of arguments and results."
)
REDACT_PATTERNS_DESCRIPTION = (
    "More regular expressions (Python syntax) for secrets inside any string of arguments, results and "
    "error texts, on top of the built-in credential shapes; a match (or its group named 'secret', if the "
    "pattern has one) becomes [redacted:pattern]. They run on every string of every audited call: keep "
    "them simple."
)


class ServerAuditSettings(BaseModel):
    """What the audit log keeps of this server's calls (README: Audit hygiene)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log_content: bool = Field(
        default=True,
        description=(
            "false: the audit log stores no arguments and no result of this server's calls (a marker says "
            "why); everything else about the call is still recorded."
        ),
    )
    redact_keys: list[str] = Field(default_factory=list, description=REDACT_KEYS_DESCRIPTION)
    redact_patterns: list[str] = Field(default_factory=list, description=REDACT_PATTERNS_DESCRIPTION)
    skip_kinds: list[RedactionKind] = Field(
        default_factory=list,
        description=(
            "Built-in redactions not applied to this server's calls, by the name their marker shows "
            "([redacted:jwt] is jwt), e.g. [jwt] for a server whose job is decoding tokens."
        ),
    )

    @field_validator("redact_keys")
    @classmethod
    def _redact_keys(cls, value: list[str]) -> list[str]:
        return check_redact_keys(value)

    @field_validator("redact_patterns")
    @classmethod
    def _redact_patterns(cls, value: list[str]) -> list[str]:
        return check_redact_patterns(value)


class _ServerBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("transport", mode="before", check_fields=False)
    @classmethod
    def _known_transport(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in TRANSPORTS:
            raise ValueError(f"unknown transport {value[:40]!r}: stdio, http (streamable HTTP) or sse")
        return value

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
    audit: ServerAuditSettings = Field(
        default_factory=ServerAuditSettings,
        description="What the audit log keeps of this server's calls: content on or off, extra redactions.",
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


class _HttpServerBase(_ServerBase):
    """What every server reached over HTTP has: where it is, its headers and how the client reaches it."""

    url: str = Field(min_length=1, description=URL_DESCRIPTION)
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers sent with every request to it (e.g. its own token)."
    )
    http_client: HttpClientKind = Field(default="auto", description=HTTP_CLIENT_DESCRIPTION)
    http2: bool = Field(default=False, description=HTTP2_DESCRIPTION)
    tls: TlsFiles | None = Field(default=None, description=TLS_DESCRIPTION)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_http_url(value, "url")

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str]) -> dict[str, str]:
        check_headers(value)
        return value

    @model_validator(mode="after")
    def _client_fields(self) -> _HttpServerBase:
        check_client_fields(self.url, self.http_client, self.http2, self.tls)
        return self


class HttpServerConfig(_HttpServerBase):
    """A server reached over streamable HTTP."""

    transport: Literal["http"] = Field(default="http", description=TRANSPORT_DESCRIPTION)
    protocol: Literal["auto", "2025-11-25", "2026-07-28"] = Field(
        default="auto",
        description=(
            "Protocol era to speak upstream; auto tries server/discover, then initialize. "
            "A server on the older HTTP+SSE transport (2024-11-05) is declared with transport: sse."
        ),
    )

    @field_validator("protocol", mode="before")
    @classmethod
    def _legacy_transport(cls, value: Any) -> Any:
        if value == LEGACY_PROTOCOL:
            raise ValueError(
                f"{LEGACY_PROTOCOL} is the older HTTP+SSE transport: declare the server with "
                "`transport: sse` and `url` at its event stream (e.g. https://host/sse)"
            )
        return value


class SseServerConfig(_HttpServerBase):
    """A server on the older HTTP+SSE transport (protocol 2024-11-05): the gateway keeps a GET on its
    event stream open, which names the endpoint it POSTs messages to and carries every answer."""

    transport: Literal["sse"] = Field(default="sse", description=TRANSPORT_DESCRIPTION)


def _server_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return getattr(value, "transport", None)
    if not isinstance(value, dict):
        return None
    explicit = value.get("transport")
    if explicit in TRANSPORTS:
        return str(explicit)
    if "command" in value and "url" not in value:
        return "stdio"
    if "url" in value and "command" not in value:
        return "http"
    return None


UpstreamServerConfig = Annotated[
    Annotated[StdioServerConfig, Tag("stdio")]
    | Annotated[HttpServerConfig, Tag("http")]
    | Annotated[SseServerConfig, Tag("sse")],
    Discriminator(
        _server_kind,
        custom_error_type="server_transport",
        custom_error_message=(
            "a server needs exactly one of `command` (a stdio server the gateway spawns) "
            "or `url` (a streamable-HTTP server; with `transport: sse`, a server on the older HTTP+SSE "
            "transport)"
        ),
    ),
]

ServerConfig = StdioServerConfig | HttpServerConfig | SseServerConfig
"""Any one upstream server's settings, once validated."""
