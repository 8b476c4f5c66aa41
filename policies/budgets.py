"""Budgets as written in a policy file.

Accepts the common shape (``org_level.monthly_limit_usd``, ``teams[]`` with
``alert_threshold``, ``virtual_key_overrides[].daily_limit_usd``) and
generalises it: org, team, key and provider budgets, each with daily, weekly
and monthly limits over calendar-aligned UTC periods.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BudgetLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_limit_usd: float | None = Field(default=None, ge=0)
    weekly_limit_usd: float | None = Field(default=None, ge=0)
    monthly_limit_usd: float | None = Field(default=None, ge=0)
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
    name: Annotated[str, Field(min_length=1)]


class KeyBudget(BudgetLimits):
    id: Annotated[str, Field(min_length=1)]


class ProviderBudget(BudgetLimits):
    name: Annotated[str, Field(min_length=1)]


class BudgetsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    org: BudgetLimits | None = Field(default=None, alias="org_level")
    teams: list[TeamBudget] = Field(default_factory=list)
    keys: list[KeyBudget] = Field(default_factory=list, alias="virtual_key_overrides")
    providers: list[ProviderBudget] = Field(default_factory=list)
    default_alert_threshold: float | None = Field(default=None, gt=0, le=1)
    alert_webhook: str | None = Field(default=None, description="URL that receives a JSON POST per alert.")

    @model_validator(mode="before")
    @classmethod
    def _aliases_not_both(cls, data: object) -> object:
        if isinstance(data, dict):
            for canonical, alias in (("org", "org_level"), ("keys", "virtual_key_overrides")):
                if canonical in data and alias in data:
                    raise ValueError(f"give either {canonical} or {alias}, not both")
        return data
