"""The key form's fields, both ways: what an admin typed, as key settings in the policy file's
shapes (`keys_admin.parse_settings` validates them), and a key's settings as the text the edit
form shows. An empty field means "inherit", as a setting left out of the policy file does.

Tools take ``*``, a comma-separated list of servers, or a JSON object ``{server: [tool globs] or
"*"}`` (the policy file's three shapes), so every key the API or the CLI made can be shown and
edited here without losing what the form has no field of its own for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway_app.keys_admin import KeyRequestError
from policies.keys import KeySettings

RATE_FIELDS = ("requests_per_minute", "tokens_per_minute", "concurrent_requests", "tool_calls_per_minute")
BUDGET_FIELDS = ("daily_limit_usd", "weekly_limit_usd", "monthly_limit_usd", "alert_threshold")
TEXT_FIELDS = ("name", "team", "allowed_models", "tools", "expires_at", *RATE_FIELDS, *BUDGET_FIELDS)
"""Every field of the edit form (the create form has a subset, and ``expires_in_days``)."""
MAX_TOOLS_CHARS = 20_000

Field = Callable[[str], str]
"""A form field's stripped text ('' when absent)."""


def _number(field: Field, name: str, kind: type[int] | type[float]) -> int | float | None:
    text = field(name)
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise KeyRequestError(f"{name.replace('_', ' ')}: {text[:40]!r} is not a number") from None


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _tools(text: str) -> object:
    if text == "*":
        return "*"
    if text.startswith("{"):
        if len(text) > MAX_TOOLS_CHARS:
            raise KeyRequestError(f"tools: at most {MAX_TOOLS_CHARS} characters")
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            raise KeyRequestError('tools: not a JSON object such as {"github": ["search_*"]}') from None
    return _list(text)


def form_values(field: Field) -> dict[str, Any]:
    """The settings the form's fields give (absent or empty fields are left out: inherited)."""
    values: dict[str, Any] = {}
    if field("name"):
        values["name"] = field("name")[:200]
    if field("team"):
        values["team"] = field("team")
    if field("allowed_models"):
        values["allowed_models"] = _list(field("allowed_models"))
    if field("tools"):
        values["tool_permissions"] = _tools(field("tools"))
    rate = {name: value for name in RATE_FIELDS if (value := _number(field, name, int)) is not None}
    if rate:
        values["rate_limit"] = rate
    budget = {name: value for name in BUDGET_FIELDS if (value := _number(field, name, float)) is not None}
    if budget:
        values["budget"] = budget
    if field("expires_at"):
        values["expires_at"] = field("expires_at")[:64]
    return values


def _number_text(value: float) -> str:
    """Exactly the number (saving the form unchanged must not round it): ``20`` for 20.0, else the
    shortest text that reads back as the same float."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def shown(settings: KeySettings) -> dict[str, str]:
    """A key's settings as the edit form's fields."""
    text: dict[str, str] = dict.fromkeys(TEXT_FIELDS, "")
    text["name"] = settings.name or ""
    text["team"] = settings.team or ""
    text["allowed_models"] = ", ".join(settings.allowed_models or [])
    tools = settings.tool_permissions
    if isinstance(tools, str):
        text["tools"] = tools
    elif isinstance(tools, list):
        text["tools"] = ", ".join(tools)
    elif tools is not None:
        text["tools"] = orjson.dumps(settings.model_dump(mode="json")["tool_permissions"]).decode()
    for group, names in (("rate_limit", RATE_FIELDS), ("budget", BUDGET_FIELDS)):
        given = getattr(settings, group)
        for name in names:
            value = getattr(given, name) if given is not None else None
            text[name] = "" if value is None else _number_text(value)
    if settings.expires_at is not None:
        text["expires_at"] = settings.expires_at.isoformat()
    return text
