"""Where rate windows, concurrency leases and budget counters live: this process, or a shared Redis.

Memory is the embedded default and is exact for one process. Several replicas, or
several worker processes, must share one store or every limit multiplies by
their number; ``backend: redis`` is that shared store. When the store cannot be
reached, what happens is a choice per concern, made here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator


class WhenUnavailable(StrEnum):
    """What a request gets while the shared counter store cannot be reached."""

    REFUSE = "refuse"
    """Fail closed: the request is refused with a clear, retryable error."""
    ALLOW = "allow"
    """Fail open: the request goes through uncounted (logged, visible at readiness)."""


class OnUnavailable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: WhenUnavailable = Field(
        default=WhenUnavailable.REFUSE,
        description="Budget checks while the store is unreachable: 'refuse' (default) or 'allow'.",
    )
    rate_limits: WhenUnavailable = Field(
        default=WhenUnavailable.ALLOW,
        description="Rate windows and concurrency limits while the store is unreachable: "
        "'allow' (default) or 'refuse'.",
    )


class CountersSettings(BaseModel):
    """The counter store shared by rate limits and budgets (and, with Redis, by replicas)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="'memory' (one process; the default) or 'redis' (shared by every replica and worker).",
    )
    url: str | None = Field(
        default=None,
        description="Redis URL (redis://, rediss:// or unix://) when backend is 'redis'; "
        "use ${VAR} to keep a password out of the file.",
    )
    key_prefix: str = Field(
        default="mcpgw:",
        min_length=1,
        max_length=64,
        description="Prefix of every Redis key and channel this gateway uses (several gateways may share "
        "one Redis).",
    )
    timeout_ms: int = Field(
        default=250,
        ge=10,
        le=10_000,
        description="Longest wait for one Redis operation before the store counts as unavailable.",
    )
    on_unavailable: OnUnavailable = Field(
        default_factory=OnUnavailable,
        description="What requests get while the store cannot be reached, per concern.",
    )

    @model_validator(mode="after")
    def _url_for_redis(self) -> CountersSettings:
        if self.backend == "redis":
            if not self.url:
                raise ValueError("backend 'redis' needs a url (redis://host:port/db)")
            if not self.url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("url must start with redis://, rediss:// or unix://")
            _check_url(self.url)
        elif self.url is not None:
            raise ValueError("url is only used with backend 'redis'")
        return self


def _check_url(url: str) -> None:
    """Reject what no Redis client could connect to (a typo found by `check`, not at the first request)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("url has a port that is not a number from 0 to 65535") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// url needs a socket path (unix:///run/redis.sock)")
        return
    if not parts.hostname:
        raise ValueError("url needs a host (redis://host:port/db)")
    if port == 0:
        raise ValueError("url has port 0")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError("url's path must be a database number (redis://host:port/0)")
