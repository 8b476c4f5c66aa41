"""Property tests for the pure decisions: permission matching, rate windows, budget arithmetic.

Examples per test and the seed come from the hypothesis profile in tests/conftest.py (fixed in
CI; ``HYPOTHESIS_PROFILE=deep`` explores more). The store methods are coroutines that never await (the in-memory store is atomic
because of that), so they are driven to completion synchronously here; hypothesis
then explores many inputs per test without an event loop per example.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from hypothesis import assume, given
from hypothesis import strategies as st

from policies import GatewayPolicy, Principal, ToolGrant
from policies.budgeting import (
    PERIODS,
    BudgetBlock,
    BudgetBook,
    BudgetScope,
    BudgetScopes,
    Reservation,
    period_bounds,
    period_label,
)
from policies.catalogue import build_catalogue
from policies.counters import SlotCheck, WindowCheck
from policies.memory_counters import MemoryCounterStore
from policies.naming import NamingRules, PrefixMode
from policies.permissions import matches_any

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (the in-memory store's methods) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the coroutine suspended; the in-memory store must not await")


names = st.from_regex(r"[a-h][a-h_]{0,5}", fullmatch=True)
globs = st.one_of(
    names, st.builds(lambda n: n[:2] + "*", names), st.just("*"), st.builds(lambda n: "?" + n, names)
)
servers = st.lists(names, min_size=1, max_size=4, unique=True)


# -- permissions ------------------------------------------------------------------------------


@given(name=names, patterns=st.lists(globs, max_size=4))
def test_matches_any_is_case_sensitive_glob_matching(name: str, patterns: list[str]) -> None:
    expected = any(p == "*" or fnmatchcase(name, p) for p in patterns)
    assert matches_any(name, patterns) is expected
    assert matches_any(name.upper(), [name]) is (name.upper() == name or fnmatchcase(name.upper(), name))


@given(server=names, tool=names)
def test_no_entry_denies_everything(server: str, tool: str) -> None:
    grant = ToolGrant.from_spec(None, "none")
    assert grant.is_empty
    assert not grant.allows(server, tool)
    assert not grant.allows_server(server)


@given(
    spec=st.dictionaries(names, st.one_of(st.just("*"), st.lists(globs, max_size=3)), max_size=4),
    server=names,
    tool=names,
)
def test_per_server_globs_allow_exactly_what_they_match(spec: dict[str, Any], server: str, tool: str) -> None:
    grant = ToolGrant.from_spec(spec, "key:k")
    patterns = spec.get(server)
    wildcard = spec.get("*")

    def matched(entry: Any) -> bool:
        return entry == "*" or (isinstance(entry, list) and matches_any(tool, entry))

    assert grant.allows(server, tool) is (matched(patterns) or matched(wildcard))


@given(listed=servers, server=names, tool=names)
def test_a_list_of_servers_grants_their_whole_tool_sets_and_nothing_else(
    listed: list[str], server: str, tool: str
) -> None:
    grant = ToolGrant.from_spec(listed, "team:t")
    assert grant.allows(server, tool) is (server in listed)


def _policy(server_names: list[str], key_spec: Any, team_spec: Any) -> GatewayPolicy:
    mcp: dict[str, Any] = {
        "servers": [{"name": s, "command": "true"} for s in server_names],
        "virtual_key_permissions": {},
        "team_permissions": {},
    }
    if key_spec is not None:
        mcp["virtual_key_permissions"]["k1"] = key_spec
    if team_spec is not None:
        mcp["team_permissions"]["eng"] = team_spec
    return GatewayPolicy.model_validate(
        {"teams": [{"name": "eng"}], "virtual_keys": [{"id": "k1", "team": "eng"}], "mcp": mcp}
    )


spec_over = st.builds(
    lambda chosen, tools: dict(zip(chosen, tools, strict=False)),
    servers,
    st.lists(st.one_of(st.just("*"), st.lists(globs, min_size=1, max_size=2)), min_size=4, max_size=4),
)


@given(
    server_names=servers,
    data=st.data(),
    tool=names,
)
def test_a_key_entry_replaces_its_team_entry_and_neither_means_nothing(
    server_names: list[str], data: st.DataObject, tool: str
) -> None:
    def spec() -> Any:
        chosen = data.draw(st.lists(st.sampled_from(server_names), unique=True, max_size=len(server_names)))
        shape = data.draw(st.sampled_from(["none", "star", "list", "dict"]))
        if shape == "none":
            return None
        if shape == "star":
            return "*"
        if shape == "list":
            return chosen
        return {
            name: data.draw(st.one_of(st.just("*"), st.lists(globs, min_size=1, max_size=2)))
            for name in chosen
        }

    key_spec, team_spec = spec(), spec()
    policy = _policy(server_names, key_spec, team_spec)
    grant = policy.tool_grant(Principal("k1", "k1", "eng", "file"))
    effective = key_spec if key_spec is not None else team_spec
    expected = ToolGrant.from_spec(effective, "x")
    for server in server_names:
        assert grant.allows(server, tool) is expected.allows(server, tool)
    if effective is None:
        assert grant.is_empty
    # A key of another team inherits nothing from this one.
    other = policy.tool_grant(Principal("k2", "k2", "ops", "database"))
    assert other.is_empty


@given(
    tools=st.dictionaries(
        names, st.lists(names, min_size=1, max_size=5, unique=True), min_size=1, max_size=4
    ),
    spec=st.dictionaries(names, st.one_of(st.just("*"), st.lists(globs, min_size=1, max_size=2)), max_size=4),
    guess=st.text(max_size=20),
)
def test_the_catalogue_resolves_only_what_a_grant_may_see(
    tools: dict[str, list[str]], spec: dict[str, Any], guess: str
) -> None:
    index = build_catalogue(tools, {}, NamingRules("__", PrefixMode.ALWAYS, "gateway"))
    grant = ToolGrant.from_spec(spec, "key:k")
    visible = {entry.exposed_name for entry in index.visible(grant)}
    for exposed, entry in index.entries.items():
        resolved = index.resolve(exposed, grant)
        assert (resolved is not None) is grant.allows(entry.server, entry.tool)
        assert (resolved is not None) is (exposed in visible)
    if guess not in index.entries:
        assert index.resolve(guess, ToolGrant.from_spec("*", "all")) is None


# -- rate windows -----------------------------------------------------------------------------

WINDOW = 60.0
WIDTH = WINDOW / 60  # one slice


@given(
    limit=st.integers(min_value=1, max_value=8),
    gaps=st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), min_size=1, max_size=80),
)
def test_a_sliding_window_admits_at_most_its_limit_and_never_refuses_with_room(
    limit: int, gaps: list[float]
) -> None:
    store = MemoryCounterStore()
    check = (WindowCheck("rl:key:k:rpm", limit, WINDOW, 1.0),)
    now = 1_700_000_000.0
    admitted: list[float] = []
    for gap in gaps:
        now += gap
        recent = [t for t in admitted if t > now - WINDOW]
        denial = run(store.window_hit(check, now))
        if denial is None:
            admitted.append(now)
        else:
            assert denial.used >= 0
            assert 0 <= denial.retry_after <= WINDOW
            # Refused only when the hits of the last full window leave no room.
            assert len(recent) >= limit
        used = run(store.window_used("rl:key:k:rpm", WINDOW, now))
        assert 0 <= used <= limit
    # Never more than the limit inside any span the window surely covers.
    span = WINDOW - WIDTH
    for i, start in enumerate(admitted):
        inside = [t for t in admitted[i:] if t < start + span]
        assert len(inside) <= limit


@given(limit=st.integers(min_value=1, max_value=5), start=st.floats(min_value=0, max_value=59.99))
def test_retry_after_is_enough_to_be_admitted(limit: int, start: float) -> None:
    store = MemoryCounterStore()
    check = (WindowCheck("rl:w", limit, WINDOW, 1.0),)
    now = 1_700_000_000.0 + start
    for _ in range(limit):
        assert run(store.window_hit(check, now)) is None
    denial = run(store.window_hit(check, now))
    assert denial is not None
    assert run(store.window_hit(check, now + denial.retry_after)) is None


@given(
    limit=st.integers(min_value=1, max_value=4),
    ops=st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=7)), max_size=60),
)
def test_concurrency_slots_never_exceed_the_limit(limit: int, ops: list[tuple[bool, int]]) -> None:
    store = MemoryCounterStore()
    checks = (SlotCheck("rl:key:k:concurrent", limit),)
    held: set[str] = set()
    now = 1_700_000_000.0
    for acquire, lease_no in ops:
        lease = f"lease-{lease_no}"
        if acquire:
            full = run(store.slots_acquire(checks, lease, now, 3600.0))
            if full is None:
                held.add(lease)
            else:
                assert len(held) >= limit and lease not in held
        else:
            run(store.slots_release(["rl:key:k:concurrent"], lease))
            held.discard(lease)
        assert len(held) <= limit


# -- budgets ----------------------------------------------------------------------------------

timestamps = st.floats(min_value=946_684_800, max_value=4_102_444_800, allow_nan=False)  # 2000..2100


@given(now=timestamps)
def test_periods_contain_now_and_follow_each_other(now: float) -> None:
    for period in PERIODS:
        start, end = period_bounds(period, now)
        assert start.tzinfo is UTC
        assert start.timestamp() <= now < end.timestamp()
        following, _ = period_bounds(period, end.timestamp())
        assert following == end
        assert period_label(period, start) != period_label(period, following)
        assert start.hour == start.minute == start.second == 0
        if period == "daily":
            assert end - start == timedelta(days=1)
        elif period == "weekly":
            assert start.weekday() == 0 and end - start == timedelta(days=7)
        else:
            assert start.day == 1 and end.day == 1 and 28 <= (end - start).days <= 31


def _book(limit: float, clock: list[float]) -> tuple[BudgetBook, tuple[BudgetScope, ...]]:
    """A budget book and the scopes of a key of team eng, whose daily budget is ``limit``."""
    policy = GatewayPolicy.model_validate(
        {"budgets": {"teams": [{"name": "eng", "daily_limit_usd": limit}]}, "teams": [{"name": "eng"}]}
    )
    scopes = BudgetScopes(policy).caller_scopes(Principal("k", "k", "eng", "file"))
    return BudgetBook(MemoryCounterStore(), lambda: clock[0]), scopes


requests = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=2.0, allow_nan=False),  # estimate
        st.floats(min_value=0.0, max_value=1.0, allow_nan=False),  # actual, as a fraction of the estimate
    ),
    min_size=1,
    max_size=40,
)


@given(
    limit=st.floats(min_value=0.01, max_value=10.0, allow_nan=False),
    batch=requests,
    concurrency=st.integers(min_value=1, max_value=10),
)
def test_spend_overshoots_a_budget_by_at_most_one_request(
    limit: float, batch: list[tuple[float, float]], concurrency: int
) -> None:
    """Estimates that bound the real cost keep the spend under limit + the largest estimate,
    however many requests are in flight at once."""
    clock = [datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()]
    book, scopes = _book(limit, clock)
    in_flight: list[tuple[Reservation, float]] = []
    largest = 0.0
    for number, (estimate, fraction) in enumerate(batch):
        reserved = run(book.reserve(scopes, estimate, f"req-{number}"))
        if isinstance(reserved, BudgetBlock):
            assert reserved.spent + reserved.reserved >= limit - 1e-9
        else:
            largest = max(largest, estimate)
            in_flight.append((reserved, estimate * fraction))
        if len(in_flight) >= concurrency or number == len(batch) - 1:
            for reservation, actual in reversed(in_flight):
                run(book.settle(reservation, actual))
            in_flight.clear()
        state = run(book.store.spend_state(book.counters(scopes)[0].key, clock[0]))
        assert state.spent >= 0 and state.reserved >= -1e-9
        assert state.spent <= limit + largest + 1e-9


@given(limit=st.floats(min_value=0.01, max_value=5.0, allow_nan=False), cost=st.floats(0.001, 1.0))
def test_a_spent_daily_budget_opens_again_at_the_next_utc_day(limit: float, cost: float) -> None:
    clock = [datetime(2026, 11, 20, 23, 59, tzinfo=UTC).timestamp()]
    book, scopes = _book(limit, clock)
    number = 0
    while True:
        reserved = run(book.reserve(scopes, cost, f"r{number}"))
        number += 1
        if isinstance(reserved, BudgetBlock):
            assert not reserved.committed
            assert reserved.retry_after <= 60.0 + 1e-6
            break
        run(book.settle(reserved, cost))
        assume(number < 10_000)
    clock[0] = datetime(2026, 11, 21, tzinfo=UTC).timestamp()
    assert isinstance(run(book.reserve(scopes, cost, "next-day")), Reservation)
