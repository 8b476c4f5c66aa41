"""Reading a bearer credential from an ``Authorization`` header (keys themselves: `policy_state`)."""

from __future__ import annotations


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
