"""Run a strategy's examples against the live gateway, checking the gateway's health as it goes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from .cases import Case
from .checks import assert_healthy, run_case
from .live import LiveGateway
from .wire import WireClient

HEALTH_EVERY = 50
"""Examples between two health checks (tools/list, /readyz, rows in the database)."""


def fuzz(gateway: LiveGateway, cases: st.SearchStrategy[Case], max_examples: int | None = None) -> None:
    """Every example must pass `run_case`; the gateway must be healthy every so often and at the end.

    Examples run one at a time on one kept-alive connection (reopened when the server closes it),
    so a request that breaks the connection for the next one shows up too.
    """
    client = WireClient(gateway.host, gateway.port)
    ran = 0

    def example(case: Case) -> None:
        nonlocal ran
        run_case(case, client, gateway)
        ran += 1
        if ran % HEALTH_EVERY == 0:
            assert_healthy(gateway)

    test = given(case=cases)(example)
    if max_examples is not None:
        test = settings(max_examples=max_examples)(test)
    try:
        test()
    finally:
        client.close()
    assert_healthy(gateway)
