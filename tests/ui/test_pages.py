"""Every page over the seeded database (tests/reports/seed.py): 200, and each figure it shows is
the one `gateway_app.queries` returns (the functions behind ``mcp-gateway report``), with links
from a number to the rows behind it, paging, filters and empty states that say what to do."""

from __future__ import annotations

import re
from datetime import date
from html import unescape
from pathlib import Path

import pytest

from gateway_app.queries import (
    ToolCallFilter,
    budget_status,
    count_tool_calls,
    limits,
    list_tool_calls,
    parse_period,
    spend,
)
from gateway_app.ui.charts import BudgetLine, bar_values, nice_top, spend_chart
from gateway_app.ui.periods import today
from policies.outcomes import Outcome
from tests.ui.harness import NOW, PAGES, dashboard, figures, logged_in

pytestmark = pytest.mark.anyio


def tool_call_ids(html: str) -> list[str]:
    return [row for row in figures(html) if row.startswith("tc")]


async def test_every_page_answers(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as ui:
        await logged_in(ui.http)
        for path in PAGES:
            page = await ui.http.get(path)
            assert page.status_code == 200, path
            assert 'aria-current="page"' in page.text, path


async def test_overview_figures_are_the_queries(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as ui:
        await logged_in(ui.http)
        shown = figures((await ui.http.get("/ui/")).text)
        day = today(NOW)
        counts = count_tool_calls(ui.engine, ToolCallFilter(period=day))
        requests = spend(ui.engine, day)
        assert int(shown["tool_calls"]["value"]) == sum(c.calls for c in counts)
        assert int(shown["model_requests"]["value"]) == sum(r.requests for r in requests.rows)
        assert float(shown["model_requests"]["cost"]) == pytest.approx(requests.total_usd)
        budgets = budget_status(ui.engine, ui.runtime.state.current.budget_scopes, now=NOW)
        for row in budgets.rows:
            if row.budget == "org" or row.budget.startswith("team:"):
                assert float(shown[f"{row.budget}/{row.period}"]["spent"]) == pytest.approx(row.spent_usd)
        assert float(shown["team:backend/monthly"]["spent"]) > 0, "the seed spends in backend this month"
        for team in {c.team for c in counts if c.team}:
            assert int(shown[team]["calls"]) == sum(c.calls for c in counts if c.team == team)


async def test_spend_figures_chart_and_links(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as ui:
        await logged_in(ui.http)
        for by in ("team", "key", "model", "provider"):
            page = await ui.http.get(f"/ui/spend?by={by}&month=last")
            shown = figures(page.text)
            report = spend(ui.engine, parse_period(now=NOW, month="last"), by=by)
            assert report.rows
            for row in report.rows:
                cells = shown["" if row.group is None else row.group]
                assert float(cells["cost"]) == pytest.approx(row.cost_usd)
                assert int(cells["requests"]) == row.requests
                assert int(cells["input_tokens"]) == row.input_tokens
            assert float(shown["total"]["cost"]) == pytest.approx(report.total_usd)
        page = await ui.http.get("/ui/spend?team=backend&since=30d")
        report = spend(ui.engine, parse_period(now=NOW, since="30d"), team="backend", daily=True)
        bars = re.findall(r'data-day="([0-9-]+)" data-value="([0-9.]+)"', page.text)
        assert len(bars) == 31, "one bar a day, days without spend included"
        assert 'class="limit"' in page.text and 'class="threshold"' in page.text, "team:backend's budget"
        # Monthly budget: the bars are the spend so far in each month.
        by_day: dict[str, float] = {}
        for daily in report.daily or []:
            by_day[daily.day] = by_day.get(daily.day, 0.0) + daily.cost_usd
        this_month = [value for day, value in bars if day >= NOW.strftime("%Y-%m-01")]
        assert float(this_month[-1]) == pytest.approx(
            sum(v for d, v in by_day.items() if d >= NOW.strftime("%Y-%m-01"))
        )
        assert 'href="/ui/spend?by=key&amp;team=backend' in (await ui.http.get("/ui/spend")).text
        bad = await ui.http.get("/ui/spend?since=yesterday")
        assert bad.status_code == 400 and "neither a duration" in unescape(bad.text)


async def test_budgets_and_limits_figures(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as ui:
        await logged_in(ui.http)
        page = await ui.http.get("/ui/budgets")
        shown = figures(page.text)
        report = budget_status(ui.engine, ui.runtime.state.current.budget_scopes, now=NOW)
        assert len(report.rows) == 3
        for row in report.rows:
            cells = shown[f"{row.budget}/{row.period}"]
            assert float(cells["spent"]) == pytest.approx(row.spent_usd)
            assert float(cells["limit"]) == row.limit_usd
            assert cells["percent"] == ("" if row.percent is None else str(row.percent))
        assert "threshold 50 %" in page.text, "the alert team:backend raised this month"
        assert "an earlier month" not in page.text

        for by in ("key", "team"):
            shown = figures((await ui.http.get(f"/ui/limits?by={by}")).text)
            hits = limits(ui.engine, parse_period(now=NOW, default="30d"), by=by)
            assert hits.rows
            for hit in hits.rows:
                key = f"{hit.key_id or hit.team or ''}/{hit.surface}/{hit.status}/{hit.blocked_by or ''}"
                assert int(shown[key]["refusals"]) == hit.refusals
        listing = (await ui.http.get("/ui/limits")).text
        assert "/ui/tool-calls?key=vk_bob&amp;status=rate_limited&amp;since=" in listing


async def test_tool_calls_filter_page_and_detail(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as ui:
        await logged_in(ui.http)
        everything = list_tool_calls(ui.engine, limit=50)
        assert tool_call_ids((await ui.http.get("/ui/tool-calls")).text) == [c.id for c in everything.items]
        filters = [
            ("team=frontend", ToolCallFilter(team="frontend")),
            (
                "key=vk_bob&status=rate_limited",
                ToolCallFilter(key="vk_bob", statuses=(Outcome.RATE_LIMITED,)),
            ),
            ("server=database&tool=query", ToolCallFilter(server="database", tool="query")),
            ("since=7d", ToolCallFilter(period=parse_period(now=NOW, since="7d"))),
        ]
        for query, expected in filters:
            ids = tool_call_ids((await ui.http.get(f"/ui/tool-calls?{query}")).text)
            wanted = [c.id for c in list_tool_calls(ui.engine, expected, limit=50).items]
            assert ids == wanted and 0 < len(ids) < len(everything.items), query
        nothing = await ui.http.get("/ui/tool-calls?team=nobody")
        assert tool_call_ids(nothing.text) == [] and "No tool call matches these filters" in nothing.text
        bad = await ui.http.get("/ui/tool-calls?status=bogus")
        assert bad.status_code == 400 and "unknown status" in unescape(bad.text)
        # Paging follows the query's cursors.
        from gateway_app.ui import pages_audit

        pages_audit.PAGE_SIZE, old = 4, pages_audit.PAGE_SIZE
        try:
            seen: list[str] = []
            link = "/ui/tool-calls"
            while link:
                page = await ui.http.get(unescape(link))
                seen += tool_call_ids(page.text)
                found = re.search(r'rel="next" href="([^"]+)"', page.text)
                link = found.group(1) if found else ""
            assert seen == [c.id for c in everything.items]
        finally:
            pages_audit.PAGE_SIZE = old
        assert (await ui.http.get("/ui/tool-calls?cursor=garbage")).status_code == 400
        detail = await ui.http.get("/ui/tool-calls/tc0006")
        assert detail.status_code == 200
        assert "rate_limit:key:vk_bob:tool_calls_per_minute" in detail.text
        assert "src/6.ts" in detail.text and "result 6" in detail.text
        assert (await ui.http.get("/ui/tool-calls/tc9999")).status_code == 404


async def test_empty_states_say_what_to_do(tmp_path: Path) -> None:
    from tests.ui.harness import config

    async with dashboard(tmp_path, config(budgets={}), seeded=False) as ui:
        await logged_in(ui.http)
        expected = {
            "/ui/": "No org or team budget is defined",
            "/ui/spend": "No model requests in this period",
            "/ui/budgets": "The policy defines no budgets",
            "/ui/limits": "Nobody was refused",
            "/ui/tool-calls": "The audit log is empty",
            "/ui/upstreams": "No MCP server is configured",
            "/ui/keys": "No key is kept in the database yet",
            "/ui/policy": "No reload yet",
        }
        for path, text in expected.items():
            page = await ui.http.get(path)
            assert page.status_code == 200 and text in page.text, path


def test_chart_bars_and_budget_lines() -> None:
    days = [date(2026, 10, 30), date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
    spent = {days[0]: 1.0, days[1]: 2.0, days[3]: 0.5}
    assert bar_values(days, spent, None) == [1.0, 2.0, 0.0, 0.5]
    monthly = BudgetLine("team:x monthly", "monthly", 4.0, 0.5)
    assert bar_values(days, spent, monthly) == [1.0, 3.0, 0.0, 0.5], "restarts with the month"
    svg = str(spend_chart(days, spent, monthly))
    assert svg.count("<rect") == 4 and 'class="limit"' in svg and 'class="threshold"' in svg
    assert "<script" not in svg
    assert [nice_top(v) for v in (0.0, 0.3, 2.4, 3.2, 104.0)] == pytest.approx([1.0, 0.5, 2.5, 5.0, 200.0])
