"""Jinja2 templates of the dashboard, and the filters they format figures with.

Every time is shown in UTC inside a ``<time datetime=...>`` element; the dashboard's one script
(static/ui.js) adds the viewer's local time beside it. Amounts of money are the CLI's (`usd`), so a
figure reads the same on a page and in ``mcp-gateway report``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from starlette.templating import Jinja2Templates

from gateway_app.cli_common import usd
from gateway_app.ui.periods import url

HERE = Path(__file__).resolve().parent
DASH = "\u2013"
NAV = [
    ("overview", "/ui/", "Overview"),
    ("spend", "/ui/spend", "Spend"),
    ("budgets", "/ui/budgets", "Budgets"),
    ("limits", "/ui/limits", "Limits"),
    ("tool-calls", "/ui/tool-calls", "Tool calls"),
    ("upstreams", "/ui/upstreams", "Upstreams"),
    ("keys", "/ui/keys", "Keys"),
    ("policy", "/ui/policy", "Policy"),
]


def when(moment: datetime | str | None) -> Markup:
    """A moment in UTC as ``<time>`` (the script adds the local time)."""
    if moment is None:
        return Markup("&ndash;")
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return escape(moment)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    stamp = moment.isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}">{} UTC</time>').format(stamp, moment.strftime("%Y-%m-%d %H:%M:%S"))


def number(value: int | float | None) -> str:
    if value is None:
        return DASH
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f} %"


def money(value: float | None) -> str:
    return DASH if value is None else usd(value)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.autoescape = True
    env.trim_blocks = True
    env.lstrip_blocks = True
    env.filters.update(when=when, number=number, percent=percent, usd=money)
    env.globals["nav"] = NAV
    env.globals["url"] = url
    return templates


def context_defaults(**context: Any) -> dict[str, Any]:
    context.setdefault("active", "")
    context.setdefault("notice", None)
    context.setdefault("error", None)
    return context
