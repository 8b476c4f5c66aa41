"""A model request's counter work in two store calls: `admit` before forwarding, `finish` after.

Rate limits (`ratelimit`) and the caller's budgets (`budgeting`) used to take three calls
before a request was forwarded (concurrency slots, rate windows, budget reservation) and
three after (slot release, tokens, settlement). Against a shared store each call is a round
trip, so they are made as one `CounterStore.admit` and one `CounterStore.finish`, each atomic.

Admission is all or nothing: checked in the order the separate calls had (slots, windows,
budgets), the first refusal is reported with the message and retry-after it always had, and
a refused request takes no slot, counts in no window and reserves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from policies.budgeting import RESERVATION_TTL, BudgetAlert, BudgetBlock, BudgetBook, BudgetScope, Reservation
from policies.counters import SpendDenial
from policies.ratelimit import MINUTE, SLOT_TTL, RateDecision, RateLimiter, RatePlan, RequestTicket


@dataclass(slots=True)
class Admitted:
    ticket: RequestTicket
    """What `finish` releases and charges for the rate limits."""
    reservation: Reservation | None
    """The caller's budgets held (None when none apply)."""


async def admit(
    limiter: RateLimiter,
    book: BudgetBook,
    plan: RatePlan,
    scopes: tuple[BudgetScope, ...],
    amount: float,
    lease: str,
) -> Admitted | RateDecision | BudgetBlock:
    """Admit one model request under its rate ``plan`` and reserve ``amount`` on ``scopes``.

    Returns the refusal (a `RateDecision` not allowed, or a `BudgetBlock`) or what was taken.
    """
    store = limiter.store
    if store is not book.store:  # two stores (tests build them apart): one call each
        decision = await limiter.acquire_request(plan, lease)
        if not decision.allowed or decision.ticket is None:
            return decision
        if not scopes:
            return Admitted(decision.ticket, None)
        reserved = await book.reserve(scopes, amount, lease)
        if isinstance(reserved, BudgetBlock):
            await limiter.finish(decision.ticket, 0)
            return reserved
        return Admitted(decision.ticket, reserved)
    ticket = RequestTicket(lease, plan.slot_keys, plan.token_keys)
    if plan.empty and not scopes:
        return Admitted(ticket, None)
    now = limiter.clock()
    budget = book.plan(scopes, now) if scopes else None
    denial = await store.admit(
        lease,
        now,
        slots=plan.slot_checks,
        slot_ttl=SLOT_TTL,
        windows=plan.window_checks,
        spend=budget.checks if budget is not None else (),
        amount=amount,
        spend_ttl=RESERVATION_TTL,
    )
    if denial is None:
        reservation = Reservation(lease, budget.counters, amount, budget.keys) if budget is not None else None
        return Admitted(ticket, reservation)
    if isinstance(denial, SpendDenial):
        assert budget is not None
        return budget.block(denial, now)
    return RateLimiter.refusal(plan, denial)


async def finish(
    limiter: RateLimiter,
    book: BudgetBook,
    ticket: RequestTicket | None,
    tokens: int,
    reservations: Sequence[Reservation],
    actual: float,
) -> list[BudgetAlert]:
    """Release the request's slots, count its tokens and settle every reservation to ``actual``.

    Returns the budget alerts the settlement fires. Reservations of another lease than the
    ticket's (never the case for one request) are settled one call each.
    """
    store = limiter.store
    if store is not book.store:  # two stores (tests build them apart): one call each
        if ticket is not None:
            await limiter.finish(ticket, tokens)
        return [alert for r in reservations for alert in await book.settle(r, actual)]
    if ticket is not None:
        lease, slot_keys = ticket.lease, ticket.slot_keys
        token_keys = ticket.token_keys if tokens > 0 else ()
    else:
        lease, slot_keys, token_keys = (reservations[0].lease if reservations else ""), (), ()
    together: list[Reservation] = []
    apart: list[Reservation] = []
    for reservation in reservations:
        if reservation.counters:
            (together if reservation.lease == lease else apart).append(reservation)
    alerts: list[BudgetAlert] = []
    if slot_keys or token_keys or together:
        now = limiter.clock()
        if len(together) == 1:
            spend_keys: Sequence[str] = together[0].keys
        else:
            spend_keys = [key for r in together for key in r.keys]
        states = await store.finish(
            lease,
            now,
            slot_keys=slot_keys,
            token_keys=token_keys,
            tokens=float(tokens),
            window=MINUTE,
            spend_keys=spend_keys,
            actual=actual,
        )
        if actual > 0:
            start = 0
            for reservation in together:
                end = start + len(reservation.keys)
                alerts += await book.alerts(reservation, states[start:end], actual, now)
                start = end
    for reservation in apart:
        alerts += await book.settle(reservation, actual)
    return alerts
