"""The budget routes' request and response bodies (camelCase like the rest of the settings area)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, StrictInt, field_validator

from llmtally.budgets import (
    DEFAULT_THRESHOLDS,
    MAX_THRESHOLD_PERCENT,
    MAX_THRESHOLDS,
    Budget,
    BudgetAction,
    SwitchTarget,
    check_timezone,
)
from llmtally.money import nanos_to_usd, usd_to_nanos

MAX_LIMIT_USD = Decimal(1_000_000)


class BudgetUpdate(BaseModel):
    """PUT /api/llm-settings/{userId}/budget: the whole budget (replaced), and optionally the Slack webhook."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    monthlyLimitUsd: Annotated[
        Decimal,
        Field(gt=0, le=MAX_LIMIT_USD, decimal_places=9, allow_inf_nan=False, description="USD per local month."),
    ]
    timezone: Annotated[
        str, Field(min_length=1, max_length=64, description="IANA zone; the month resets at its midnight.")
    ]
    thresholds: Annotated[
        list[Annotated[StrictInt, Field(ge=1, le=MAX_THRESHOLD_PERCENT)]],
        Field(min_length=1, max_length=MAX_THRESHOLDS, description="Alert thresholds in percent of the limit."),
    ] = list(DEFAULT_THRESHOLDS)
    action: BudgetAction = BudgetAction.NOTIFY
    switchTo: SwitchTarget | None = None
    strict: StrictBool = False
    slackWebhookUrl: Annotated[
        SecretStr | None,
        Field(max_length=512, description="A Slack incoming-webhook URL; stored as a secret, never returned."),
    ] = None
    removeSlackWebhook: StrictBool = False

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    def budget(self, updated_at: datetime) -> Budget:
        """The domain budget (ValueError with a message for an inconsistent combination)."""
        return Budget(
            limit_nanos=usd_to_nanos(self.monthlyLimitUsd),
            timezone=self.timezone,
            thresholds=tuple(self.thresholds),
            action=self.action,
            switch_to=self.switchTo,
            strict=self.strict,
            updated_at=updated_at,
        )


class BudgetOut(BaseModel):
    monthlyLimitUsd: Decimal
    timezone: str
    thresholds: list[int]
    action: BudgetAction
    switchTo: SwitchTarget | None
    strict: bool
    updatedAt: datetime | None

    @classmethod
    def of(cls, budget: Budget) -> BudgetOut:
        return cls(
            monthlyLimitUsd=nanos_to_usd(budget.limit_nanos),
            timezone=budget.timezone,
            thresholds=list(budget.thresholds),
            action=budget.action,
            switchTo=budget.switch_to,
            strict=budget.strict,
            updatedAt=budget.updated_at,
        )


class BudgetStatusOut(BaseModel):
    period: str = Field(description="The local month, e.g. 2026-11.")
    periodStart: datetime
    periodEnd: datetime
    spentUsd: Decimal
    reservedUsd: Decimal = Field(description="Strict reservations in flight and settled calls not yet in the rollups.")
    remainingUsd: Decimal
    percentUsed: Decimal
    state: str = Field(description="ok, warning (a threshold below 100% reached) or exhausted (100% reached).")
    crossedThresholds: list[int]


class BudgetResponse(BaseModel):
    budget: BudgetOut | None
    hasSlackWebhook: bool
    status: BudgetStatusOut | None


class BudgetDeletedResponse(BaseModel):
    deleted: bool


class BudgetAlertOut(BaseModel):
    alertId: str
    period: str
    thresholdPercent: int
    limitUsd: Decimal
    spentUsd: Decimal
    percentUsed: Decimal
    action: BudgetAction
    crossedAt: datetime


class BudgetAlertsResponse(BaseModel):
    alerts: list[BudgetAlertOut]


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="python")
