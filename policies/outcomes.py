"""The one closed vocabulary of outcomes for audit rows (tool calls) and ledger rows (model requests).

Every row's ``status`` is one of these values, so that a refusal can be asked for by
what refused it (``status = 'rate_limited'``) instead of by searching error texts.
Metrics use the same values as label values.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    OK = "ok"
    """Answered. A tool call whose tool reported an error is `TOOL_ERROR` instead."""
    TOOL_ERROR = "tool_error"
    """The tool ran and returned ``isError: true`` (tool calls only)."""
    PROVIDER_ERROR = "provider_error"
    """The model provider answered with an error that belongs to the client, e.g. HTTP 400 for a bad
    request; relayed as it is (model requests only)."""
    DENIED = "denied"
    """Not permitted, or does not exist: a tool outside the key's catalogue, a model the key may not use,
    an unknown model. The two are one answer on the wire; the row's server and tool tell them apart."""
    INVALID_REQUEST = "invalid_request"
    """The request itself was malformed (bad params, bad body)."""
    RATE_LIMITED = "rate_limited"
    """Refused by a rate limit of the gateway (``blocked_by`` names which)."""
    BUDGET_EXCEEDED = "budget_exceeded"
    """Refused by a budget: spent, or fully committed by requests in flight (``blocked_by`` names which)."""
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    """The upstream server or provider was down, restarting or unreachable; nothing was sent to it."""
    UPSTREAM_ERROR = "upstream_error"
    """The upstream failed during the call: a JSON-RPC error, a broken connection or stream, a malformed
    answer, or a provider that answered 5xx/429 on every target."""
    TIMEOUT = "timeout"
    """The upstream did not answer within the configured time."""
    CANCELLED = "cancelled"
    """The client went away or cancelled, or the gateway stopped before the answer."""
    GATEWAY_ERROR = "gateway_error"
    """An unexpected failure inside the gateway (a bug; its log has the traceback)."""


OUTCOMES: tuple[str, ...] = tuple(outcome.value for outcome in Outcome)
REFUSALS = frozenset({Outcome.DENIED, Outcome.RATE_LIMITED, Outcome.BUDGET_EXCEEDED, Outcome.INVALID_REQUEST})
"""Outcomes decided by the gateway before anything reached an upstream."""


def parse_outcome(text: str) -> Outcome:
    """An outcome from user input, case-insensitively (``Rate_Limited``, ``RATE-LIMITED``)."""
    normalised = text.strip().lower().replace("-", "_")
    try:
        return Outcome(normalised)
    except ValueError:
        raise ValueError(f"unknown status {text!r}; one of: {', '.join(OUTCOMES)}") from None
