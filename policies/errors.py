"""Errors raised by the governance model.

Everything here is plain Python: adapters (the MCP gateway, the LLM proxy, the
CLI) decide how an error reaches the wire or the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PolicyError(Exception):
    """Base class for every error raised by `policies`."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a policy document, located as precisely as we can."""

    path: str
    """Dotted path inside the document, e.g. ``virtual_keys[0].rate_limit``."""
    message: str
    line: int | None = None

    def render(self, source: str | None) -> str:
        where = source or "<policy>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        location = f" {self.path}:" if self.path else ""
        return f"{where}:{location} {self.message}"


class ConfigError(PolicyError):
    """A policy document that cannot be used; names the file, the location and the reason."""

    def __init__(self, issues: Sequence[ConfigIssue], source: str | None = None) -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        lines = [issue.render(self.source) for issue in self.issues]
        if len(lines) == 1:
            return lines[0]
        return f"{len(lines)} problems in {self.source or 'the policy'}:\n" + "\n".join(
            f"  {line}" for line in lines
        )
