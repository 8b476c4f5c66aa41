"""Budgets as written in a policy file.

Accepts the common shape (``org_level.monthly_limit_usd``, ``teams[]`` with
``alert_threshold``, ``virtual_key_overrides[].daily_limit_usd``) and
generalises it: org, team, key and provider budgets, each with daily, weekly
and monthly limits over calendar-aligned UTC periods.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.urls import check_http_url


class BudgetLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_limit_usd: float | None = Field(
        default=None, ge=0, description="USD per UTC calendar day (from midnight)."
    )
    weekly_limit_usd: float | None = Field(
        default=None, ge=0, description="USD per ISO week (from Monday 00:00 UTC)."
    )
    monthly_limit_usd: float | None = Field(
        default=None, ge=0, description="USD per calendar month (from the 1st, 00:00 UTC)."
    )
    alert_threshold: float | None = Field(
        default=None, gt=0, le=1, description="Fraction of a limit at which an alert fires once per period."
    )

    def limits(self) -> dict[str, float]:
        """Period name -> limit in USD, for the periods that have one."""
        pairs = {
            "daily": self.daily_limit_usd,
            "weekly": self.weekly_limit_usd,
            "monthly": self.monthly_limit_usd,
        }
        return {period: limit for period, limit in pairs.items() if limit is not None}

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetLimits:
        if not self.limits():
            raise ValueError(
                "a budget needs at least one of daily_limit_usd, weekly_limit_usd, monthly_limit_usd"
            )
        return self


class TeamBudget(BudgetLimits):
    name: str = Field(min_length=1, description="The team it applies to (shared by all its keys).")


class KeyBudget(BudgetLimits):
    id: str = Field(min_length=1, description="The virtual key it applies to.")


class ProviderBudget(BudgetLimits):
    name: str = Field(
        min_length=1,
        description="The provider it applies to; a spent provider is skipped like a failing one.",
    )


class BudgetsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    org: BudgetLimits | None = Field(
        default=None, alias="org_level", description="Budget for all model traffic through the gateway."
    )
    teams: list[TeamBudget] = Field(default_factory=list, description="Budgets per team.")
    keys: list[KeyBudget] = Field(
        default_factory=list, alias="virtual_key_overrides", description="Budgets per virtual key."
    )
    providers: list[ProviderBudget] = Field(default_factory=list, description="Budgets per provider.")
    default_alert_threshold: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="alert_threshold for budgets that set none (none: no early alert).",
    )
    alert_webhook: str | None = Field(
        default=None, description="http(s) URL that receives a JSON POST per alert."
    )

    @field_validator("alert_webhook")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, "alert_webhook")

    @model_validator(mode="before")
    @classmethod
    def _aliases_not_both(cls, data: object) -> object:
        if isinstance(data, dict):
            for canonical, alias in (("org", "org_level"), ("keys", "virtual_key_overrides")):
                if canonical in data and alias in data:
                    raise ValueError(f"give either {canonical} or {alias}, not both")
        return data
