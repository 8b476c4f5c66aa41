"""Guessing an admin token goes no faster than `LIMIT` wrong tokens per address per window: past
that, the admin API, /readyz, /metrics and the dashboard's login answer 429 with ``Retry-After``
to that address, whatever token it sends, until its window ends. Other addresses are not affected,
and a request that sends no token is not a guess."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from gateway_app.admin_guesses import LIMIT, WINDOW_SECONDS, AdminGuesses, TooManyWrongTokens
from tests.admin_api.conftest import ADMIN, ALICE, AUDITOR, admin_gateway, from_address
from tests.ui.harness import dashboard, login

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def get_keys(http: httpx2.AsyncClient, token: str | None) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await http.get("/admin/keys", headers=headers)


async def test_an_address_past_its_wrong_tokens_is_refused_everywhere_admin_tokens_open(
    tmp_path: Path,
) -> None:
    async with (
        admin_gateway(tmp_path) as gw,
        from_address(gw, "203.0.113.7") as guesser,
        from_address(gw, "198.51.100.2") as other,
    ):
        for n in range(LIMIT):  # wrong guesses, a virtual key's secret among them
            answer = await get_keys(guesser, ALICE if n == 0 else f"guess-{n}")
            assert answer.status_code == 401, (n, answer.text)
        refused = await get_keys(guesser, ADMIN)  # the right token too: no faster guessing
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_wrong_tokens"
        assert 0 < int(refused.headers["retry-after"]) <= WINDOW_SECONDS
        for path in ("/readyz", "/metrics"):
            blocked = await guesser.get(path, headers={"Authorization": f"Bearer {AUDITOR}"})
            assert blocked.status_code == 429 and "retry-after" in blocked.headers, path
        assert (await guesser.get("/readyz")).status_code == 200  # no token: no admin door asked for
        assert (await get_keys(other, ADMIN)).status_code == 200  # another address is not affected
        assert (await get_keys(other, "wrong")).status_code == 401
        document = (
            await other.get("/admin/openapi.json", headers={"Authorization": f"Bearer {AUDITOR}"})
        ).json()
        assert "429" in document["paths"]["/admin/keys"]["get"]["responses"]
        assert "429" not in document["paths"]["/v1/quota"]["get"]["responses"]  # a virtual key's door


async def test_requests_without_a_token_and_right_tokens_are_not_counted(tmp_path: Path) -> None:
    async with admin_gateway(tmp_path) as gw, from_address(gw, "203.0.113.8") as http:
        for _ in range(3 * LIMIT):
            assert (await get_keys(http, None)).status_code == 401
            assert (await get_keys(http, AUDITOR)).status_code == 200
        for _ in range(LIMIT - 1):
            assert (await get_keys(http, "wrong")).status_code == 401
        assert (await get_keys(http, ADMIN)).status_code == 200


async def test_the_dashboard_login_counts_and_refuses_the_same_way(tmp_path: Path) -> None:
    async with dashboard(tmp_path, seeded=False) as ui:
        for n in range(LIMIT):
            assert (await login(ui.http, f"guess-{n}")).status_code == 401
        answer = await login(ui.http, ADMIN)
        assert answer.status_code == 429 and "Too many wrong tokens" in answer.text
        assert "mcpgw_ui=" not in answer.headers.get("set-cookie", "")
        assert int(answer.headers["retry-after"]) > 0
        assert len(ui.app.state.dashboard.sessions) == 0


def test_a_window_ends_and_the_address_may_try_again(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    guesses = AdminGuesses(clock, limit=3, window=60)
    for _ in range(3):
        guesses.check("a")
        guesses.wrong("a")
    assert [r.getMessage() for r in caplog.records if r.name == "gateway_app.admin"] == [
        "3 wrong admin tokens from a within 60 s: it is refused until its window ends"
    ]
    with pytest.raises(TooManyWrongTokens) as refused:
        guesses.check("a")
    assert refused.value.retry_after == 60
    clock.now += 59.5
    with pytest.raises(TooManyWrongTokens) as refused:
        guesses.check("a")
    assert refused.value.retry_after == 1
    clock.now += 0.5
    guesses.check("a")  # a new window
    guesses.wrong("a")
    guesses.check("a")


def test_a_wrong_token_late_in_a_window_does_not_extend_it() -> None:
    clock = Clock()
    guesses = AdminGuesses(clock, limit=2, window=60)
    guesses.wrong("a")
    clock.now += 50
    guesses.wrong("a")
    with pytest.raises(TooManyWrongTokens) as refused:
        guesses.check("a")
    assert refused.value.retry_after == 10  # the window began at the first wrong token


def test_memory_is_bounded_and_the_least_recent_address_goes_first() -> None:
    clock = Clock()
    guesses = AdminGuesses(clock, limit=1, window=60, max_addresses=3)
    for address in ("a", "b", "c"):
        guesses.wrong(address)
    guesses.wrong("a")  # "a" is the most recent now
    guesses.wrong("d")  # over the bound: "b" is forgotten
    guesses.check("b")
    for address in ("a", "c", "d"):
        with pytest.raises(TooManyWrongTokens):
            guesses.check(address)
