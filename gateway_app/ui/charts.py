"""Daily spend as an SVG bar chart, drawn here on the server (no script, no library).

Bars are each UTC day's spend, or, against a weekly or monthly budget, the spend so far in that
budget's period (it restarts when the period does), so the bars meet the budget line exactly when
the budget is used up. A dashed line marks the alert threshold. Sizes are in the view box; CSS
scales the picture to the page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from markupsafe import Markup, escape

from gateway_app.cli_common import usd

WIDTH, HEIGHT = 720.0, 240.0
LEFT, RIGHT, TOP, BOTTOM = 64.0, 12.0, 12.0, 28.0
MAX_DAYS = 400


@dataclass(frozen=True, slots=True)
class BudgetLine:
    label: str
    """e.g. ``team:backend monthly``."""
    period: str
    """``daily``, ``weekly`` or ``monthly``: what the bars accumulate over."""
    limit_usd: float
    alert_threshold: float | None


def days_between(first: date, last: date) -> list[date]:
    count = min((last - first).days + 1, MAX_DAYS)
    return [last - timedelta(days=count - 1 - n) for n in range(max(count, 0))]


def _period_key(day: date, period: str) -> tuple[int, int]:
    if period == "monthly":
        return day.year, day.month
    if period == "weekly":
        iso = day.isocalendar()
        return iso.year, iso.week
    return day.toordinal(), 0


def bar_values(days: Sequence[date], spend: dict[date, float], budget: BudgetLine | None) -> list[float]:
    """Each day's bar: that day's spend, or the running total within the budget's period."""
    if budget is None or budget.period == "daily":
        return [spend.get(day, 0.0) for day in days]
    values, running, current = [], 0.0, None
    for day in days:
        key = _period_key(day, budget.period)
        if key != current:
            current, running = key, 0.0
        running += spend.get(day, 0.0)
        values.append(running)
    return values


def nice_top(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (an axis' top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value))


def _short(value: float) -> str:
    return f"${value:,.0f}" if value >= 10 else f"${value:,.2f}"


def spend_chart(days: Sequence[date], spend: dict[date, float], budget: BudgetLine | None) -> Markup:
    values = bar_values(days, spend, budget)
    top = nice_top(max([*values, budget.limit_usd if budget else 0.0, 0.0]) * 1.04)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(days), 1)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    kind = "spent so far this " + {"weekly": "week", "monthly": "month"}.get(
        budget.period if budget else "daily", "day"
    )
    label = "Daily spend" if budget is None or budget.period == "daily" else f"Spend ({kind})"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH:g} {HEIGHT:g}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{LEFT:g}" y1="{y(0):.1f}" x2="{WIDTH - RIGHT:g}" y2="{y(0):.1f}"/>',
        f'<text class="tick" x="{LEFT - 6:g}" y="{y(0):.1f}" text-anchor="end">{_short(0)}</text>',
        f'<text class="tick" x="{LEFT - 6:g}" y="{TOP + 10:g}" text-anchor="end">{_short(top)}</text>',
    ]
    for index, (day, value) in enumerate(zip(days, values, strict=True)):
        width = min(max(step * 0.76, 0.5), 48.0)
        x = LEFT + index * step + (step - width) / 2
        height = max(y(0) - y(value), 0.0)
        tip = f"{day.isoformat()}: {usd(value)}"
        parts.append(
            f'<rect class="bar" x="{x:.2f}" y="{y(value):.2f}" width="{width:.2f}" '
            f'height="{height:.2f}" data-day="{day.isoformat()}" data-value="{value:.6f}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    if days:
        parts.append(
            f'<text class="tick" x="{LEFT:g}" y="{HEIGHT - 8:g}">{days[0].isoformat()}</text>'
            f'<text class="tick" x="{WIDTH - RIGHT:g}" y="{HEIGHT - 8:g}" text-anchor="end">'
            f"{days[-1].isoformat()}</text>"
        )
    if budget is not None:
        at = y(budget.limit_usd)
        parts.append(
            f'<line class="limit" x1="{LEFT:g}" y1="{at:.1f}" x2="{WIDTH - RIGHT:g}" y2="{at:.1f}">'
            f"<title>{escape(budget.label)} limit {escape(usd(budget.limit_usd))}</title></line>"
        )
        if budget.alert_threshold is not None:
            alert = y(budget.limit_usd * budget.alert_threshold)
            parts.append(
                f'<line class="threshold" x1="{LEFT:g}" y1="{alert:.1f}" x2="{WIDTH - RIGHT:g}" '
                f'y2="{alert:.1f}"><title>alert at {budget.alert_threshold:.0%}</title></line>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text part above is escaped
