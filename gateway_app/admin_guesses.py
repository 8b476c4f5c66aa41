"""Wrong admin tokens, counted per client address, so that guessing one goes no faster than a trickle.

An admin token opens the admin API, the dashboard and the operational detail. One the gateway or
`openssl rand` made cannot be guessed, but one an operator chose may be short (`check` warns about
those: `policies.secrets.weak_secret`). So each client address may present `LIMIT` wrong tokens
per `WINDOW_SECONDS`; past that it is answered 429, with ``Retry-After``, until its window ends,
before the token it sends is even looked at (a right one included: otherwise guessing would go on
at full speed, each wrong answer merely turned into a 429). A right token does not reset the count,
or one auditor token would let its holder guess the admin one without limit.

Counted by the address the connection comes from: behind a reverse proxy every client shares the
proxy's, and wrong tokens from anyone there count against all of them (the admin API with a right
token included, for the rest of the window). Held in memory, per process, for at most
`MAX_ADDRESSES` addresses (the oldest forgotten first).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from starlette.requests import Request

logger = logging.getLogger("gateway_app.admin")

LIMIT = 10
"""Wrong admin tokens an address may send per window."""
WINDOW_SECONDS = 300.0
MAX_ADDRESSES = 10_000


class TooManyWrongTokens(Exception):
    """This address sent `LIMIT` wrong admin tokens in its current window; ``retry_after`` seconds remain."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many wrong admin tokens from this address; retry in {retry_after} s")
        self.retry_after = retry_after


class AdminGuesses:
    """Each address's wrong admin tokens in its current window (a fixed window from its first)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        limit: int = LIMIT,
        window: float = WINDOW_SECONDS,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._windows: dict[str, tuple[float, int]] = {}
        """address -> (when its window began, wrong tokens in it)"""

    def check(self, address: str) -> None:
        """Raise `TooManyWrongTokens` while ``address`` is past its limit."""
        entry = self._windows.get(address)
        if entry is None:
            return
        began, wrong = entry
        remaining = began + self.window - self.clock()
        if remaining <= 0:
            del self._windows[address]
        elif wrong >= self.limit:
            raise TooManyWrongTokens(max(1, math.ceil(remaining)))

    def wrong(self, address: str) -> None:
        """``address`` sent a token that is not an admin token."""
        now = self.clock()
        entry = self._windows.pop(address, None)
        if entry is None or now - entry[0] >= self.window:
            entry = (now, 0)
            while len(self._windows) >= self.max_addresses:
                del self._windows[next(iter(self._windows))]
        self._windows[address] = (entry[0], entry[1] + 1)
        if entry[1] + 1 == self.limit:
            logger.warning(
                "%d wrong admin tokens from %s within %.0f s: it is refused until its window ends",
                self.limit,
                address[:64],
                self.window,
            )


def client_address(request: Request) -> str:
    client = request.client
    return client.host if client is not None else "unknown"


def guesses_of(request: Request) -> AdminGuesses | None:
    """The app's `AdminGuesses` (lifespan state), if it has one."""
    guesses = request.scope.get("state", {}).get("admin_guesses")
    return guesses if isinstance(guesses, AdminGuesses) else None
