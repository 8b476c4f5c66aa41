"""Virtual-key secrets: generation, hashing and constant-time comparison.

Secrets are 256-bit random tokens, so a single SHA-256 is the right hash: a
slow password hash buys nothing against a search space of 2**256 and would put
milliseconds on every request. Only the hex digest is ever stored or logged.
A secret an operator chose (an environment variable) may be far weaker: one
shorter than `WEAK_SECRET_CHARS` draws a warning (`weak_secret`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

SECRET_PREFIX = "mgw_"  # noqa: S105 - a public marker, not a secret
WEAK_SECRET_CHARS = 24
"""A secret shorter than this can be guessed: 24 random URL-safe characters are 144 bits, while a
word, a name or a short PIN-like token falls to a dictionary. Generated secrets have 47."""
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def generate_secret() -> str:
    """A new random key secret, e.g. ``mgw_Xy3...`` (47 characters)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def weak_secret(secret: str) -> bool:
    """Whether an operator-chosen secret is short enough to be guessed (`WEAK_SECRET_CHARS`)."""
    return len(secret.strip()) < WEAK_SECRET_CHARS


def hash_secret(secret: str) -> str:
    """Lower-case hex SHA-256 of a secret: what the gateway stores and looks keys up by."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def digests_equal(a: str, b: str) -> bool:
    """Compare two digests in constant time."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def is_sha256_hex(value: str) -> bool:
    return bool(_SHA256_HEX.match(value))


def normalised_sha256(value: str | None) -> str | None:
    """A configured ``secret_sha256``, trimmed and lower-cased; ValueError unless it is one."""
    if value is None:
        return None
    value = value.strip().lower()
    if not is_sha256_hex(value):
        raise ValueError("secret_sha256 must be 64 hex characters (sha256 of the secret)")
    return value


def display_prefix(secret: str) -> str:
    """The first characters of a secret, enough for a human to tell keys apart in a listing."""
    return secret[: len(SECRET_PREFIX) + 6]
