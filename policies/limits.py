"""Rate limits as written in a policy file (per key and per team)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RateLimit(BaseModel):
    """Limits over a sliding one-minute window; absent fields mean "no limit"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_minute: int | None = Field(default=None, ge=1, description="Model requests per minute.")
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Input plus output tokens per minute, counted from real usage."
    )
    concurrent_requests: int | None = Field(
        default=None, ge=1, description="Model requests in flight at once."
    )
    tool_calls_per_minute: int | None = Field(default=None, ge=1, description="MCP tools/call per minute.")

    def is_empty(self) -> bool:
        return all(
            value is None
            for value in (
                self.requests_per_minute,
                self.tokens_per_minute,
                self.concurrent_requests,
                self.tool_calls_per_minute,
            )
        )
