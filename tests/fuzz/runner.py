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


def fuzz(gateway: LiveGateway, cases: st.SearchStrategy[Case], share: float = 1.0) -> None:
    """Every example must pass `run_case`; the gateway must be healthy every so often and at the end.

    ``share``: the fraction of the profile's examples this test runs (for the narrower tests), so
    HYPOTHESIS_PROFILE=deep scales them all.

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
    if share != 1.0:
        test = settings(max_examples=max(1, round(settings().max_examples * share)))(test)
    try:
        test()
    finally:
        client.close()
    assert_healthy(gateway)
