"""What a model request costs: token usage times per-model prices, and the estimate reserved up front.

Prices come from the ``genai-prices`` package unless the policy file overrides a
model under ``pricing.models``. ``genai-prices`` prices a request in about 80 µs,
too slow for every request, so a model's prices are looked up once (and again
every hour, for dated price changes) and the arithmetic is done here with the
same rules: uncached input, cache reads, cache writes (5-minute and 1-hour) and
output are priced separately, and a tier (long-context pricing) applies to the
whole request once the total input passes its threshold.

Anthropic's ``usage.input_tokens`` excludes cache reads and writes, while
``genai-prices`` wants the total; `Usage` keeps the provider's split and
`Usage.total_input` adds it up, so nothing is counted twice.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from policies.providers import ModelPrice, PricingConfig

logger = logging.getLogger("policies.pricing")

PER_MTOK = 1_000_000
RATES_TTL = 3600.0
ESTIMATE_BYTES_PER_TOKEN = 3
"""Reservation estimate: one input token per 3 bytes of request body (real text runs 3.5-4.5)."""
DEFAULT_MAX_TOKENS = 4096
"""Output tokens assumed for the estimate when a request sets no ``max_tokens``."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one response used, in the provider's own split (Anthropic's: input excludes cache)."""

    input_tokens: int = 0
    """Uncached input."""
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    """All cache writes, including the 1-hour ones."""
    cache_write_1h_tokens: int = 0
    """The part of ``cache_write_tokens`` written with a one-hour lifetime."""

    @property
    def total_input(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def rate_limited_tokens(self) -> int:
        """What ``tokens_per_minute`` counts: uncached input, cache writes and output (not cache reads)."""
        return self.input_tokens + self.cache_write_tokens + self.output_tokens


ZERO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens, with optional tiers ``((threshold, price), ...)`` ascending."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()

    def at(self, total_input: int) -> float:
        for start, price in reversed(self.tiers):
            if total_input > start:
                return price
        return self.base


@dataclass(frozen=True, slots=True)
class Rates:
    """A model's prices, ready for arithmetic."""

    model: str
    source: str
    """``genai-prices:<provider>/<model id>`` or ``policy:<pattern>``."""
    input: Price
    output: Price
    cache_read: Price
    cache_write: Price
    cache_write_1h: Price

    def cost(self, usage: Usage) -> float:
        total = usage.total_input
        write_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        usd = (
            usage.input_tokens * self.input.at(total)
            + usage.output_tokens * self.output.at(total)
            + usage.cache_read_tokens * self.cache_read.at(total)
            + (usage.cache_write_tokens - write_1h) * self.cache_write.at(total)
            + write_1h * self.cache_write_1h.at(total)
        )
        return usd / PER_MTOK

    def estimate(self, body_bytes: int, max_tokens: int | None) -> float:
        """An upper-end guess of a request's cost before it is sent (what budgets reserve).

        Input: every ``ESTIMATE_BYTES_PER_TOKEN`` bytes of the request body counted as one
        uncached input token (cached input is cheaper, so this errs high); output: the
        request's own ``max_tokens``, the most the provider will generate.
        """
        input_tokens = body_bytes // ESTIMATE_BYTES_PER_TOKEN + 1
        output_tokens = max_tokens if max_tokens is not None and max_tokens > 0 else DEFAULT_MAX_TOKENS
        return self.cost(Usage(input_tokens=input_tokens, output_tokens=output_tokens))


def _price(value: Any) -> Price | None:
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return Price(float(value))
    base = getattr(value, "base", None)
    tiers = getattr(value, "tiers", None)
    if base is None or tiers is None:
        return None
    return Price(float(base), tuple((int(t.start), float(t.price)) for t in tiers))


def rates_from_override(model: str, pattern: str, price: ModelPrice) -> Rates:
    input_price = Price(price.input_per_mtok)
    cache_write = Price(price.cache_write_per_mtok) if price.cache_write_per_mtok is not None else input_price
    return Rates(
        model=model,
        source=f"policy:{pattern}",
        input=input_price,
        output=Price(price.output_per_mtok),
        cache_read=Price(price.cache_read_per_mtok) if price.cache_read_per_mtok is not None else input_price,
        cache_write=cache_write,
        cache_write_1h=cache_write,
    )


def genai_prices_lookup(model: str, provider_id: str | None, api_url: str | None) -> Rates | None:
    """Prices from the ``genai-prices`` data bundled with the package (no network)."""
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    attempts: list[tuple[str | None, str | None]] = []
    if provider_id is not None:
        attempts.append((provider_id, None))
    if api_url is not None:
        attempts.append((None, api_url))
    attempts.append((None, None))
    for pid, url in attempts:
        try:
            provider, info = snapshot.find_provider_model(model, None, pid, url)
        except LookupError:
            continue
        prices = info.get_prices(datetime.now(UTC))
        input_price = _price(getattr(prices, "input_mtok", None))
        output_price = _price(getattr(prices, "output_mtok", None))
        if input_price is None or output_price is None:
            return None
        cache_read = _price(getattr(prices, "cache_read_mtok", None)) or input_price
        cache_write = _price(getattr(prices, "cache_write_mtok", None)) or input_price
        cache_write_1h = _price(getattr(prices, "cache_write_1h_mtok", None)) or cache_write
        return Rates(
            model=model,
            source=f"genai-prices:{provider.id}/{info.id}",
            input=input_price,
            output=output_price,
            cache_read=cache_read,
            cache_write=cache_write,
            cache_write_1h=cache_write_1h,
        )
    return None


Lookup = Callable[[str, str | None, str | None], Rates | None]


MAX_CACHED_RATES = 4096
"""Most (model, provider) price lookups remembered; real deployments use a few dozen."""


class PriceBook:
    """Per-model prices: the policy's overrides first (exact name, then globs), then genai-prices."""

    def __init__(
        self,
        config: PricingConfig,
        clock: Callable[[], float],
        lookup: Lookup = genai_prices_lookup,
    ) -> None:
        self.config = config
        self.clock = clock
        self._lookup = lookup
        self._cache: dict[tuple[str, str | None, str | None], tuple[float, Rates | None]] = {}

    @property
    def blocks_unknown(self) -> bool:
        return self.config.unknown_model == "block"

    def rates(self, model: str, provider_id: str | None = None, api_url: str | None = None) -> Rates | None:
        """Prices for ``model`` as served by a provider, or None when nothing knows them."""
        key = (model, provider_id, api_url)
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        rates = self._resolve(model, provider_id, api_url)
        if len(self._cache) >= MAX_CACHED_RATES:
            self._cache.clear()  # model names come from clients: a glob route must not grow this for ever
        self._cache[key] = (now + RATES_TTL, rates)
        return rates

    def _resolve(self, model: str, provider_id: str | None, api_url: str | None) -> Rates | None:
        overrides = self.config.models
        exact = overrides.get(model)
        if exact is not None:
            return rates_from_override(model, model, exact)
        for pattern, price in overrides.items():
            if fnmatch.fnmatchcase(model, pattern):
                return rates_from_override(model, pattern, price)
        try:
            return self._lookup(model, provider_id, api_url)
        except Exception:  # a pricing-data bug must not take requests down
            logger.exception("genai-prices failed for model %r", model)
            return None
