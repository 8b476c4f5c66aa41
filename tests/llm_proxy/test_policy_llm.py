"""The model-proxy parts of the policy: seed shapes, routing, prices (checked against genai-prices), errors."""

from __future__ import annotations

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from policies import ConfigError, Principal, load_policy_text
from policies.budgeting import BudgetScopes
from policies.pricing import MAX_CACHED_RATES, PriceBook, Usage, genai_prices_lookup
from policies.ratelimit import build_rate_plan
from policies.routing import ModelRouter, Target
from tests.llm_proxy.conftest import FakeClock

SEED = """
providers:
  - name: anthropic_prod
    kind: anthropic
    base_url: https://api.anthropic.com
    api_key_env: ANTHROPIC_PROD_KEY
    timeout: 300
virtual_keys:
  - id: "vk_team_frontend"
    name: "Frontend Team"
    provider_config: "anthropic_prod"
    allowed_models:
      - "claude-sonnet-4-20250514"
    rate_limit:
      requests_per_minute: 60
      tokens_per_minute: 100000
  - id: "vk_dev_rahul"
    name: "Rahul - Backend"
    provider_config: "anthropic_prod"
    allowed_models:
      - "claude-sonnet-4-20250514"
    rate_limit:
      requests_per_minute: 30
      tokens_per_minute: 50000
      concurrent_requests: 3
budgets:
  org_level:
    monthly_limit_usd: 10000
  teams:
    - name: "frontend"
      monthly_limit_usd: 2000
      alert_threshold: 0.8
    - name: "backend"
      monthly_limit_usd: 4000
      alert_threshold: 0.8
  virtual_key_overrides:
    - id: "vk_dev_rahul"
      daily_limit_usd: 50
"""


def test_the_seed_shapes_drive_routing_limits_and_budgets() -> None:
    policy = load_policy_text(SEED).policy
    assert policy.providers[0].timeout_seconds == 300
    rahul = Principal("vk_dev_rahul", "Rahul - Backend", "backend", "file")
    router = ModelRouter(policy)
    routed = router.route("claude-sonnet-4-20250514", rahul)
    assert routed is not None and routed.targets == (
        Target("anthropic_prod", "anthropic", "claude-sonnet-4-20250514"),
    )
    assert router.allows(rahul, "claude-sonnet-4-20250514")
    assert not router.allows(rahul, "claude-opus-4-20250514")
    assert [(s.ident, s.limits, s.alert_threshold) for s in BudgetScopes(policy).caller_scopes(rahul)] == [
        ("org", (("monthly", 10000.0),), None),
        ("team:backend", (("monthly", 4000.0),), 0.8),
        ("key:vk_dev_rahul", (("daily", 50.0),), None),
    ]
    plan = build_rate_plan(policy, rahul)
    assert [(x.metric, x.value) for x in (*plan.windows, *plan.slots)] == [
        ("requests_per_minute", 30),
        ("tokens_per_minute", 50000),
        ("concurrent_requests", 3),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "budgets:\n  teams:\n    - name: eng\n      monthly_limt_usd: 5\n",
            "<text>:4: budgets.teams[0].monthly_limt_usd: unknown field",
        ),
        ("budgets:\n  teams:\n    - name: eng\n", "a budget needs at least one of daily_limit_usd"),
        (
            "budgets:\n  org: {daily_limit_usd: 1}\n  org_level: {daily_limit_usd: 1}\n",
            "give either org or org_level",
        ),
        (
            "providers:\n  - {name: a, kind: anthropic, base_url: http://x}\nroutes:\n  - {match: x, provider: b}\n",
            "<text>:4: routes[0].provider: provider 'b' is not defined under providers",
        ),
        (
            "providers:\n  - {name: a, kind: anthropic, base_url: http://x}\nroutes:\n  - {match: x, provider: '${NO_SUCH_VAR_X}'}\n",
            "environment variable NO_SUCH_VAR_X is not set",
        ),
        (
            "virtual_keys:\n  - id: k\n    rate_limit: {requests_per_minut: 5}\n",
            "requests_per_minut: unknown field",
        ),
        ("providers:\n  - {name: a, kind: bedrock, base_url: http://x}\n", "providers[0].kind"),
        ("budgets:\n  alert_webhook: ftp://x\n", "alert_webhook must be an http:// or https:// URL"),
    ],
)
def test_policy_errors_are_located(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_policy_text(text, "<text>")
    assert expected in raised.value.render()


def test_route_targets_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
providers:
  - {name: real, kind: anthropic, base_url: https://api.anthropic.com}
  - {name: mock, kind: anthropic, base_url: http://127.0.0.1:8100}
routes:
  - match: "claude-*"
    provider: ${CLAUDE_PROVIDER:-mock}
"""
    assert load_policy_text(text).policy.routes[0].provider == "mock"
    monkeypatch.setenv("CLAUDE_PROVIDER", "real")
    assert load_policy_text(text).policy.routes[0].provider == "real"
    monkeypatch.setenv("CLAUDE_PROVIDER", "typo")
    with pytest.raises(ConfigError, match="provider 'typo' is not defined"):
        load_policy_text(text)


def test_routing_prefers_exact_aliases_then_globs_in_order() -> None:
    policy = load_policy_text(
        """
providers:
  - {name: a, kind: anthropic, base_url: http://a}
  - {name: b, kind: anthropic, base_url: http://b}
  - {name: o, kind: openai-compatible, base_url: http://o/v1}
routes:
  - {match: "claude-*", provider: a, fallbacks: [{provider: b, model: claude-haiku-4-5}]}
  - {match: claude-special, provider: b}
  - {match: "gpt-*", provider: o}
"""
    ).policy
    router = ModelRouter(policy)
    special = router.route("claude-special")
    assert special is not None and [t.provider for t in special.targets] == ["b"]
    general = router.route("claude-sonnet-4-5")
    assert general is not None and general.targets == (
        Target("a", "anthropic", "claude-sonnet-4-5"),
        Target("b", "anthropic", "claude-haiku-4-5"),
    )
    assert router.route("llama") is None


CASES = [
    ("claude-sonnet-4-5", "anthropic", Usage(1200, 800, 30_000, 2_000)),
    ("claude-sonnet-4-5", "anthropic", Usage(150_000, 900, 60_000, 10_000)),  # over the 200k tier
    ("claude-haiku-4-5-20251001", "anthropic", Usage(10, 20, 0, 0, 0)),
    ("claude-opus-4-8", "anthropic", Usage(100, 5000, 9000, 4000, 1000)),
    ("gpt-4o", None, Usage(1000, 100, 500, 0)),
]


@pytest.mark.parametrize(("model", "provider", "usage"), CASES)
def test_fast_pricing_matches_genai_prices(model: str, provider: str | None, usage: Usage) -> None:
    rates = genai_prices_lookup(model, provider, None)
    assert rates is not None
    reference = calc_price(
        GenaiUsage(
            input_tokens=usage.total_input,  # genai-prices wants the total, cache included
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cache_write_1h_tokens=usage.cache_write_1h_tokens or None,
        ),
        model,
        provider_id=provider,
    )
    assert rates.cost(usage) == pytest.approx(float(reference.total_price), rel=1e-9)


def test_price_overrides_and_unknown_models() -> None:
    policy = load_policy_text(
        """
pricing:
  unknown_model: zero
  models:
    claude-sonnet-4-5: {input_per_mtok: 1, output_per_mtok: 2, cache_read_per_mtok: 0.5}
    "house-*": {input_per_mtok: 10, output_per_mtok: 10}
"""
    ).policy
    book = PriceBook(policy.pricing, FakeClock())
    sonnet = book.rates("claude-sonnet-4-5", "anthropic")
    assert sonnet is not None and sonnet.source == "policy:claude-sonnet-4-5"
    assert sonnet.cost(Usage(1_000_000, 1_000_000, 1_000_000, 1_000_000)) == pytest.approx(1 + 2 + 0.5 + 1)
    house = book.rates("house-7")
    assert house is not None and house.source == "policy:house-*"
    assert book.rates("no-such-model-anywhere") is None and not book.blocks_unknown
    haiku = book.rates("claude-haiku-4-5", "anthropic")
    assert haiku is not None and haiku.source == "genai-prices:anthropic/claude-haiku-4-5"


def test_the_reservation_estimate_bounds_a_real_request() -> None:
    rates = genai_prices_lookup("claude-sonnet-4-5", "anthropic", None)
    assert rates is not None
    body_bytes, max_tokens = 40_000, 32_000
    estimate = rates.estimate(body_bytes, max_tokens)
    # real usage: at most ~1 token per 3.5 bytes of input, at most max_tokens of output
    worst_real = rates.cost(Usage(input_tokens=body_bytes * 2 // 7, output_tokens=max_tokens))
    assert estimate >= worst_real
    assert rates.estimate(1000, None) == pytest.approx(rates.cost(Usage(334, 4096)))


def test_price_lookups_for_many_client_chosen_model_names_stay_bounded() -> None:
    """A glob route lets clients name any model: the price cache must not grow with them."""
    policy = load_policy_text(
        """
pricing:
  models:
    "house-*": {input_per_mtok: 10, output_per_mtok: 10}
"""
    ).policy
    book = PriceBook(policy.pricing, FakeClock())
    for n in range(MAX_CACHED_RATES * 2 + 10):
        rates = book.rates(f"house-{n}")
        assert rates is not None and rates.source == "policy:house-*"
    assert len(book._cache) <= MAX_CACHED_RATES
    assert book.rates("house-1") is not None  # still answers after the cache was emptied
