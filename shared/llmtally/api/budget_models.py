"""The budget routes' request and response bodies (camelCase like the rest of the settings area)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, StrictInt, field_validator

from llmtally.budgets import (
    DEFAULT_THRESHOLDS,
    MAX_TAG_BUDGETS,
    MAX_THRESHOLD_PERCENT,
    MAX_THRESHOLDS,
    Budget,
    BudgetAction,
    SwitchTarget,
    TagScope,
    check_timezone,
)
from llmtally.events import TAG_KEY_PATTERN, TAG_VALUE_PATTERN
from llmtally.money import nanos_to_usd, usd_to_nanos

MAX_LIMIT_USD = Decimal(1_000_000)


#: A budget's strict switch (tenant and tag budgets alike).
StrictMode = Annotated[
    StrictBool,
    Field(
        description="With block or switch: reserve each call's worst-case cost before it runs "
        "(docs/budgets.md, strict mode); refused with notify."
    ),
]


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
    strict: StrictMode = False
    slackWebhookUrl: Annotated[
        SecretStr | None,
        Field(max_length=512, description="A Slack incoming-webhook URL; stored as a secret, never returned."),
    ] = None
    removeSlackWebhook: StrictBool = False
    alertEmail: Annotated[
        str | None,
        Field(
            max_length=254,
            description="An address for this user's alert e-mails (theirs only). SNS e-mails it a confirmation "
            "link first: nothing is delivered until it is followed.",
        ),
    ] = None
    removeAlertEmail: StrictBool = False

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


class TagBudgetUpdate(BaseModel):
    """PUT /api/llm-settings/{userId}/budget/tags: one tag value's budget (created or replaced whole)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tagKey: Annotated[str, Field(pattern=TAG_KEY_PATTERN, description="The tag key, e.g. customer.")]
    tagValue: Annotated[str, Field(pattern=TAG_VALUE_PATTERN, description="The tag value, e.g. c-42.")]
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
    strict: StrictMode = False

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    def scope(self) -> TagScope:
        return TagScope(key=self.tagKey, value=self.tagValue)

    def budget(self, updated_at: datetime) -> Budget:
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


class AlertEmailOut(BaseModel):
    address: str
    status: str = Field(
        description="pending_confirmation (SNS sent a confirmation link: no e-mail until it is followed), "
        "confirmed, or unknown (SNS could not be asked)"
    )
    subscribedAt: datetime


class BudgetResponse(BaseModel):
    budget: BudgetOut | None
    hasSlackWebhook: bool
    status: BudgetStatusOut | None
    alertEmail: AlertEmailOut | None = Field(default=None, description="Where this user's alert e-mails go, if set.")
    alertEmailAvailable: bool = Field(
        default=False, description="Whether this deployment can e-mail users their alerts."
    )


class BudgetDeletedResponse(BaseModel):
    deleted: bool


class TagBudgetOut(BaseModel):
    """One tag value's budget and where it stands this period."""

    tagKey: str
    tagValue: str
    budget: BudgetOut
    status: BudgetStatusOut


class TagBudgetsResponse(BaseModel):
    budgets: list[TagBudgetOut] = Field(description="By tag key, then value.")
    maxTagBudgets: int = Field(default=MAX_TAG_BUDGETS, description="How many tag budgets a tenant may keep.")


class BudgetAlertOut(BaseModel):
    alertId: str
    period: str
    thresholdPercent: int
    limitUsd: Decimal
    spentUsd: Decimal
    percentUsed: Decimal
    action: BudgetAction
    crossedAt: datetime
    tagKey: str | None = Field(default=None, description="A tag budget's alert: its tag key (else null).")
    tagValue: str | None = Field(default=None, description="A tag budget's alert: its tag value (else null).")


class BudgetAlertsResponse(BaseModel):
    alerts: list[BudgetAlertOut]


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="python")
